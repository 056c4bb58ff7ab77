/**
 * Push: a snapshot, read front to back as events (from a file, a pipe, or
 * straight from save), into the store. Each grid chunk is named by its
 * content (tenant-keyed); a chunk the store already holds, from this push or
 * any earlier one of the tenant, is not uploaded again. The manifest is
 * written last, once every chunk it names is stored and the whole input was
 * read and checked: an interrupted push leaves only unreferenced chunks
 * (which a second push reuses, and gc removes), never a manifest that names a
 * missing chunk. Chunks are hashed, encoded and uploaded with a bounded
 * number in flight: memory follows the chunk size, not the guest size.
 */
import type { ChunkKind, RamChunk, SnapshotHeader, SnapshotMetadata, TagChunk, VmmBlob } from '../format/model.js';
import type { VcpuState } from '../format/registers.js';
import { jsonResult } from '../json.js';
import type { EncodedChunk } from '../parallel/chunk-jobs.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import { ChainError, snapshotIdHex } from '../reader/chain.js';
import type { SnapshotEvent } from '../reader/events.js';
import { type ChunkGeometry, nameChunk, sealChunk } from './chunk-object.js';
import type { ChunkStore } from './chunk-store.js';
import { StoreError } from './errors.js';
import { beginPush } from './locks.js';

export interface PushOptions {
  /** zstd level of the chunks stored, 1..9, 0 for none (default 1). */
  level?: number;
  /** Replace a snapshot of the same name (default: refuse). */
  force?: boolean;
  /** Chunks in flight (hashing, encoding, uploading); default 16. */
  parallel?: number;
  threads?: number;
  /** How long to wait for a running gc to end (default 60 s). */
  waitMs?: number;
  /** The size of the snapshot as a file, known when the input has ended. */
  fileBytes: () => bigint;
  onProgress?: (progress: { guestBytesDone: bigint; guestBytesTotal: bigint }) => void;
}

export interface PushSummary {
  readonly store: string;
  readonly name: string;
  readonly guestBytes: bigint;
  readonly fileBytes: bigint;
  readonly chunks: number;
  /** Chunks uploaded by this push, and their bytes as stored (encrypted). */
  readonly chunksUploaded: number;
  readonly bytesUploaded: bigint;
  /** Chunks the store already had (or this push had already uploaded). */
  readonly chunksReused: number;
  readonly manifestBytes: number;
  readonly durationMs: number;
}

/** The content a chunk is named by: all its RAM bytes, or its tags one byte per granule. */
function chunkContent(chunk: RamChunk | TagChunk): { kind: ChunkKind; content: Uint8Array } {
  return 'data' in chunk ? { kind: 'ram', content: chunk.data } : { kind: 'tags', content: chunk.tags };
}

class ChunkUploader {
  readonly names: Uint8Array[] = [];
  private readonly seen = new Map<string, Promise<void>>();
  private readonly inFlight: Promise<void>[] = [];
  uploaded = 0;
  reused = 0;
  bytesUploaded = 0n;

  constructor(
    private readonly store: ChunkStore,
    private readonly executor: ChunkExecutor,
    private readonly level: number,
    private readonly parallel: number,
  ) {}

  /** Queues one chunk; waits while too many are in flight. */
  async add(chunk: RamChunk | TagChunk, pageSize: number): Promise<void> {
    const { kind, content } = chunkContent(chunk);
    const geometry: ChunkGeometry = { kind, pageSize, pageCount: chunk.pageCount };
    const name = nameChunk(this.store.keys, geometry, content);
    this.names.push(name);
    const hex = name.toString('hex');
    const earlier = this.seen.get(hex);
    if (earlier) {
      this.reused++;
      return;
    }
    const done = this.upload(geometry, name, content);
    done.catch(() => {});
    this.seen.set(hex, done);
    this.inFlight.push(done);
    if (this.inFlight.length >= this.parallel) await this.inFlight.shift();
  }

  private async upload(geometry: ChunkGeometry, name: Buffer, content: Uint8Array): Promise<void> {
    const key = this.store.chunkKey(name);
    if ((await this.store.engine.size(key)) !== null) {
      this.reused++;
      return;
    }
    const range = { region: 0, firstPage: 0, pageCount: geometry.pageCount, pageSize: geometry.pageSize };
    const encoded = (await this.executor.run({
      op: 'encode',
      kind: geometry.kind,
      range,
      input: content,
      level: this.level,
    })) as EncodedChunk;
    const object = sealChunk(this.store.keys, geometry, name, encoded.payload);
    await this.store.engine.put(key, object);
    this.uploaded++;
    this.bytesUploaded += BigInt(object.length);
  }

  async finish(): Promise<void> {
    while (this.inFlight.length) await this.inFlight.shift();
    // Every distinct chunk must be stored before the manifest names it.
    await Promise.all(this.seen.values());
  }
}

/** Pushes the snapshot `events` describe into `store` as `name`. */
export async function pushSnapshot(
  events: AsyncIterable<SnapshotEvent>,
  store: ChunkStore,
  name: string,
  options: PushOptions,
): Promise<PushSummary> {
  const started = performance.now();
  if (!options.force && (await store.hasSnapshot(name)))
    throw new StoreError('snapshot-exists', `${store.description}: a snapshot named ${name} exists (--force replaces it)`);
  const level = options.level ?? 1;
  const marker = await beginPush(store.engine, options.waitMs ?? 60_000);
  const executor = createChunkExecutor(options.threads);
  try {
    const uploader = new ChunkUploader(store, executor, level, options.parallel ?? 16);
    let header: SnapshotHeader | undefined;
    let metadata: SnapshotMetadata | undefined;
    const vcpus: VcpuState[] = [];
    const blobs: VmmBlob[] = [];
    let guestBytesTotal = 0n;
    let guestBytesDone = 0n;
    for await (const event of events) {
      if (event.type === 'start') {
        header = event.header;
        metadata = event.metadata;
        guestBytesTotal = metadata.regions.reduce((sum, region) => sum + region.size, 0n);
      } else if (event.type === 'diff') {
        // A diff's chunks hold only its changed pages: stored alone it would restore a guest with holes.
        throw new ChainError(
          'missing-parent',
          `a diff snapshot (of ${snapshotIdHex(event.parentId)}) cannot be pushed alone: push its chain flattened (vmsnap flatten)`,
        );
      } else if (event.type === 'chunk') {
        await uploader.add(event.chunk, header!.pageSize);
        if ('data' in event.chunk) {
          guestBytesDone += BigInt(event.chunk.pageCount * header!.pageSize);
          options.onProgress?.({ guestBytesDone, guestBytesTotal });
        }
      } else if (event.type === 'vcpu') vcpus.push(event.vcpu);
      else if (event.type === 'blob') blobs.push(event.blob);
    }
    if (!header || !metadata) throw new StoreError('bad-manifest', 'the snapshot ended before its metadata');
    await uploader.finish();
    const manifestBytes = await store.writeManifest(name, {
      pageSize: header.pageSize,
      pagesPerChunk: header.pagesPerChunk,
      metadata,
      vcpus,
      blobs,
      chunkNames: uploader.names,
      fileBytes: options.fileBytes(),
    });
    return jsonResult({
      store: store.description,
      name,
      guestBytes: guestBytesTotal,
      fileBytes: options.fileBytes(),
      chunks: uploader.names.length,
      chunksUploaded: uploader.uploaded,
      bytesUploaded: uploader.bytesUploaded,
      chunksReused: uploader.reused,
      manifestBytes,
      durationMs: performance.now() - started,
    });
  } finally {
    await executor.close();
    await marker.release();
  }
}
