/**
 * Push: a snapshot, read front to back as events (from a file, a pipe, or
 * straight from save), into the store. Each grid chunk is named by its
 * content (tenant-keyed); a chunk the store already holds, from this push or
 * any earlier one of the tenant, is not uploaded again. The manifest is
 * written last, once every chunk it names is stored and the whole input was
 * read and checked: an interrupted push leaves only unreferenced chunks
 * (which a second push reuses, and gc removes), never a manifest that names a
 * missing chunk. Chunks are hashed, encoded and uploaded with a bounded
 * number in flight: memory follows the chunk size, not the guest size. The
 * events may be transient (a file read into reused memory, with payloads):
 * each chunk is released once what its upload needs is copied.
 *
 * A diff snapshot is stored as a diff (spec/STORE.md, "Manifests"): its
 * parent must be in the store already (found by snapshot id, or named), and
 * is checked when the DIFF section arrives, before any chunk is uploaded; the
 * manifest keeps the changed-page maps and names only the chunks of the
 * positions where the diff gives pages.
 */

import { equalBytes } from '../format/bytes.js';
import { bitmapLength } from '../format/chunk.js';
import { CODEC } from '../format/constants.js';
import type { ChunkKind, RamChunk, SnapshotHeader, SnapshotMetadata, TagChunk, VmmBlob } from '../format/model.js';
import type { VcpuState } from '../format/registers.js';
import { jsonResult } from '../json.js';
import type { EncodedChunk } from '../parallel/chunk-jobs.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import { ChainError } from '../reader/chain.js';
import type { SnapshotEvent } from '../reader/events.js';
import { type ChunkGeometry, chunkContentPieces, nameChunk, sealChunk } from './chunk-object.js';
import type { ChunkStore } from './chunk-store.js';
import { StoreError } from './errors.js';
import { beginPush } from './locks.js';
import { type ManifestDiff, NAME_LENGTH } from './manifest.js';
import { diffsOf, findParent } from './stored-chain.js';

export interface PushOptions {
  /**
   * zstd level of the chunks stored, 1..9, 0 for none. Default: each chunk keeps the encoding it has in the
   * snapshot (no second compression); a chunk that comes without its payload is compressed at level 1.
   */
  level?: number;
  /** Replace a snapshot of the same name (default: refuse); never one that diffs in the store depend on, unless it is the same snapshot. */
  force?: boolean;
  /** For a diff: its parent's name in the store (default: the snapshot of the store with the diff's parent id). */
  parent?: string;
  /** Chunks in flight (hashing, encoding, uploading); default: the store's (ChunkStore.parallel: 4 for a directory, 16 for S3). */
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
  /** For a diff, the name of its parent in the store; null for a full snapshot. */
  readonly parent: string | null;
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

/** Where a chunk payload (spec/FORMAT.md section 6) keeps its region (u32), first page (u64) and encoding (u8). */
const PAYLOAD_REGION_OFFSET = 0;
const PAYLOAD_FIRST_PAGE_OFFSET = 8;
const PAYLOAD_ENCODING_OFFSET = 16;

/**
 * A copy of a checked chunk payload with region 0 and first page 0: the plaintext of its chunk object
 * (spec/STORE.md section 4). Nothing else in a payload depends on where the chunk is, so the encoding the
 * snapshot already has is kept and the chunk is not compressed a second time.
 */
function positionFree(payload: Uint8Array): Uint8Array {
  const plaintext = payload.slice();
  const view = new DataView(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
  view.setUint32(PAYLOAD_REGION_OFFSET, 0, true);
  view.setBigUint64(PAYLOAD_FIRST_PAGE_OFFSET, 0n, true);
  return plaintext;
}

/**
 * The chunk names of a push, in grid order, packed in one growing buffer: a
 * buffer of its own per 32-byte name cost some 300 bytes of heap per chunk,
 * 10 MiB for a 16 GiB guest (issue 10).
 */
class ChunkNameList {
  private packed = new Uint8Array(NAME_LENGTH * 1024);
  length = 0;

  push(name: Uint8Array): void {
    if ((this.length + 1) * NAME_LENGTH > this.packed.length) {
      const grown = new Uint8Array(this.packed.length * 2);
      grown.set(this.packed);
      this.packed = grown;
    }
    this.packed.set(name, this.length++ * NAME_LENGTH);
  }

  /** Every name, as views of the packed buffer (the manifest's form). */
  views(): Uint8Array[] {
    return Array.from({ length: this.length }, (_, i) => this.packed.subarray(i * NAME_LENGTH, (i + 1) * NAME_LENGTH));
  }
}

class ChunkUploader {
  readonly names = new ChunkNameList();
  /**
   * Every distinct name queued, keyed by its bytes as a latin1 string (half the
   * heap of hex): its upload while in flight, null once stored.
   */
  private readonly seen = new Map<string, Promise<void> | null>();
  private readonly inFlight: Promise<void>[] = [];
  uploaded = 0;
  reused = 0;
  bytesUploaded = 0n;

  constructor(
    private readonly store: ChunkStore,
    private readonly executor: ChunkExecutor,
    /** Undefined: keep each chunk's own encoding where its payload is known. */
    private readonly level: number | undefined,
    private readonly parallel: number,
  ) {}

  /**
   * Queues one chunk (`stored`: its payload as the snapshot holds it, if known); waits while too many are in
   * flight. What the upload needs is copied before the first wait: the caller may release the chunk's memory
   * (a transient read) once this returns.
   */
  async add(chunk: RamChunk | TagChunk, pageSize: number, stored?: Uint8Array): Promise<void> {
    const kind: ChunkKind = 'tags' in chunk ? 'tags' : 'ram';
    const geometry: ChunkGeometry = { kind, pageSize, pageCount: chunk.pageCount };
    // Named from the packed present pages when the reader kept them so: no expansion to the chunk's size.
    const name = nameChunk(this.store.keys, geometry, chunkContentPieces(chunk, pageSize));
    this.names.push(name);
    const key = name.toString('latin1');
    if (this.seen.has(key)) {
      this.reused++;
      return;
    }
    // Where the stored payload is kept as it is, only its position-free copy (the compressed size) waits for the
    // upload, not the decoded content: `parallel` decoded chunks (16 MiB at 16) stay out of memory.
    const keepsPayload = stored !== undefined && this.level === undefined;
    const plaintext = keepsPayload ? positionFree(stored) : null;
    const content = plaintext ? null : ('tags' in chunk ? chunk.tags : chunk.data).slice();
    const done = this.upload(geometry, name, plaintext, content);
    // A failed upload stays in `seen`, so that finish() rejects with its error.
    done.then(() => this.seen.set(key, null)).catch(() => {});
    this.seen.set(key, done);
    this.inFlight.push(done);
    if (this.inFlight.length >= this.parallel) await this.inFlight.shift();
  }

  /** Either `plaintext` (the stored payload, position-free) or `content` to encode anew at the level given. */
  private async upload(geometry: ChunkGeometry, name: Buffer, plaintext: Uint8Array | null, content: Uint8Array | null): Promise<void> {
    const key = this.store.chunkKey(name);
    if ((await this.store.engine.size(key)) !== null) {
      this.reused++;
      return;
    }
    plaintext ??= await this.encode(geometry, content!);
    const object = sealChunk(this.store.keys, geometry, name, plaintext);
    await this.store.engine.put(key, object);
    this.uploaded++;
    this.bytesUploaded += BigInt(object.length);
  }

  /** The chunk payload for `content` at region 0, page 0, compressed anew. */
  private async encode(geometry: ChunkGeometry, content: Uint8Array): Promise<Uint8Array> {
    const range = { region: 0, firstPage: 0, pageCount: geometry.pageCount, pageSize: geometry.pageSize };
    const encoded = (await this.executor.run({
      op: 'encode',
      kind: geometry.kind,
      range,
      input: content,
      level: this.level ?? 1,
    })) as EncodedChunk;
    return encoded.payload;
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
  const exists = await store.hasSnapshot(name);
  if (!options.force && exists)
    throw new StoreError('snapshot-exists', `${store.description}: a snapshot named ${name} exists (--force replaces it)`);
  // Replacing a parent would leave its diffs on a snapshot they are not diffs of: only the same snapshot again may.
  const dependents = exists ? await diffsOf(store, name) : [];
  const replaced = dependents.length ? (await store.readManifest(name)).metadata.snapshotId : null;
  const marker = await beginPush(store.engine, options.waitMs ?? 60_000);
  const executor = createChunkExecutor(options.threads);
  try {
    const uploader = new ChunkUploader(store, executor, options.level, options.parallel ?? store.parallel);
    let header: SnapshotHeader | undefined;
    let metadata: SnapshotMetadata | undefined;
    const vcpus: VcpuState[] = [];
    const blobs: VmmBlob[] = [];
    let guestBytesTotal = 0n;
    let guestBytesDone = 0n;
    let diff: { parentName: string; changed: Uint8Array[] } | null = null;
    // In a diff, whether the position being read gives any page (else its empty chunks are not stored).
    let carrying = true;
    for await (const event of events) {
      if (event.type === 'start') {
        header = event.header;
        metadata = event.metadata;
        guestBytesTotal = metadata.regions.reduce((sum, region) => sum + region.size, 0n);
        if (replaced && !equalBytes(replaced, metadata.snapshotId)) {
          throw new StoreError(
            'snapshot-has-diffs',
            `${store.description}: ${name} is the parent of ${dependents.join(', ')}: replacing it with another snapshot would break them`,
          );
        }
      } else if (event.type === 'diff') {
        const parentName = await findParent(
          store,
          { name, pageSize: header!.pageSize, pagesPerChunk: header!.pagesPerChunk, metadata: metadata!, parentId: event.parentId },
          options.parent,
        );
        diff = { parentName, changed: [] };
      } else if (event.type === 'changed') {
        diff!.changed.push(event.pages.changed.slice(0, bitmapLength(event.pages.pageCount)));
        carrying = event.pages.changedCount > 0;
      } else if (event.type === 'chunk') {
        if (options.parent !== undefined && !diff)
          throw new ChainError('parent-mismatch', `${name} is a full snapshot: --parent is for a diff snapshot`);
        try {
          // Not carrying: the reader checked it is empty, and a diff stores no page its map does not give.
          // A payload compressed with another codec than zstd (none exists today) would not be a chunk object's plaintext.
          const reusable = event.payload && (header!.codec === CODEC.zstd || event.payload[PAYLOAD_ENCODING_OFFSET] === 0);
          if (carrying) await uploader.add(event.chunk, header!.pageSize, reusable ? event.payload : undefined);
        } finally {
          // A transient source's memory goes back to it: add copied what the upload needs.
          event.release?.();
        }
        if (!carrying) continue;
        if ('data' in event.chunk) {
          guestBytesDone += BigInt(event.chunk.pageCount * header!.pageSize);
          options.onProgress?.({ guestBytesDone, guestBytesTotal });
        }
      } else if (event.type === 'vcpu') vcpus.push(event.vcpu);
      else if (event.type === 'blob') blobs.push(event.blob);
    }
    if (!header || !metadata) throw new StoreError('bad-manifest', 'the snapshot ended before its metadata');
    if (options.parent !== undefined && !diff)
      throw new ChainError('parent-mismatch', `${name} is a full snapshot: --parent is for a diff snapshot`);
    await uploader.finish();
    const manifestBytes = await store.writeManifest(name, {
      pageSize: header.pageSize,
      pagesPerChunk: header.pagesPerChunk,
      metadata,
      vcpus,
      blobs,
      chunkNames: uploader.names.views(),
      fileBytes: options.fileBytes(),
      diff: diff as ManifestDiff | null,
    });
    return jsonResult({
      store: store.description,
      name,
      parent: diff?.parentName ?? null,
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
