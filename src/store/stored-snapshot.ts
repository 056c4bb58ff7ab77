/**
 * Reading a snapshot back from the store: its manifest first, then its
 * chunks, fetched in parallel (a bounded window ahead) and handed on in grid
 * order, which is the order restore writes them into the guest (each chunk's
 * RAM, then its tags: the restore order KVM needs). Before the first chunk is
 * handed on, every chunk the manifest names is checked to be in the store,
 * so a snapshot with a deleted chunk is refused before anything is written;
 * each chunk is authenticated (AEAD) and its payload checked by the format's
 * rules before it is handed on, so an altered or swapped chunk stops the
 * restore before that chunk reaches the guest.
 */
import { checksum } from '../format/checksum.js';
import type { DataGridChunk } from '../format/chunk-grid.js';
import type { RamChunk, SnapshotHeader, SnapshotMetadata, TagChunk } from '../format/model.js';
import type { DecodedChunkResult } from '../parallel/chunk-jobs.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import { ChainError } from '../reader/chain.js';
import type { SnapshotEvent } from '../reader/events.js';
import { decodedChunk } from '../reader/sections.js';
import { openChunk } from './chunk-object.js';
import { type ChunkStore, shortName } from './chunk-store.js';
import { StoreError } from './errors.js';
import { type Manifest, manifestChunks, manifestHeader } from './manifest.js';

export interface StoredChunk {
  readonly grid: DataGridChunk & { readonly name: Uint8Array };
  /** The chunk payload (spec/FORMAT.md section 6) at region 0, page 0, as the object holds it. */
  readonly payload: Uint8Array;
  readonly chunk: RamChunk | TagChunk;
  /** Bytes of the object as stored. */
  readonly objectBytes: number;
  /**
   * Set when the chunk was fetched `transient`: its RAM content is in the decoder's reused memory, given back
   * by calling this once done with the chunk (its bytes may change after).
   */
  readonly release?: () => void;
}

export interface FetchOptions {
  /** A RAM chunk's decoded content may stay in the decoder's reused memory: the caller calls `release`. */
  readonly transient?: boolean;
  /** The caller reads `payload` after the chunk is decoded (pull); default true. Without, it is not copied for the decoder. */
  readonly payload?: boolean;
}

export interface StoredSnapshotOptions {
  /** Chunks fetched ahead of the one being handed on; default: the store's (ChunkStore.parallel: 4 for a directory, 16 for S3). */
  parallel?: number;
  threads?: number;
}

/** Where a grid chunk is, for messages: snapshot, region, pages and IPA. */
export function describeChunk(
  name: string,
  metadata: SnapshotMetadata,
  pageSize: number,
  grid: DataGridChunk & { name: Uint8Array },
): string {
  const region = metadata.regions[grid.region];
  const ipa = region.guestAddress + BigInt(grid.firstPage) * BigInt(pageSize);
  return (
    `snapshot ${name}, ${grid.kind === 'ram' ? 'RAM' : 'tag'} chunk of region ${region.name} pages ${grid.firstPage}..` +
    `${grid.firstPage + grid.pageCount - 1} (IPA 0x${ipa.toString(16)}), object ${shortName(grid.name)}`
  );
}

/** What gives a transient decode's RAM content back to the executor (once), or undefined when it owns none. */
function releaseOfContent(executor: ChunkExecutor, decoded: DecodedChunkResult): (() => void) | undefined {
  const { content } = decoded;
  if (!content) return undefined;
  let released = false;
  return () => {
    if (!released) executor.release(content);
    released = true;
  };
}

export class StoredSnapshot {
  readonly header: SnapshotHeader;
  readonly metadata: SnapshotMetadata;
  private readonly executor: ChunkExecutor;
  /** Whether close() ends the executor: not when it was lent (the links of a chain share one). */
  private readonly ownsExecutor: boolean;

  private constructor(
    readonly store: ChunkStore,
    readonly name: string,
    readonly manifest: Manifest,
    private readonly options: StoredSnapshotOptions,
    executor?: ChunkExecutor,
  ) {
    this.header = manifestHeader(manifest);
    this.metadata = manifest.metadata;
    this.ownsExecutor = executor === undefined;
    this.executor = executor ?? createChunkExecutor(options.threads);
  }

  /** One snapshot of the store as it is stored: for a diff, only its own chunks (StoredChain merges a chain). */
  static async open(store: ChunkStore, name: string, options: StoredSnapshotOptions = {}): Promise<StoredSnapshot> {
    return new StoredSnapshot(store, name, await store.readManifest(name), options);
  }

  /** A snapshot whose manifest was already read; `executor`, when given, stays open on close(). */
  static fromManifest(
    store: ChunkStore,
    name: string,
    manifest: Manifest,
    options: StoredSnapshotOptions,
    executor?: ChunkExecutor,
  ): StoredSnapshot {
    return new StoredSnapshot(store, name, manifest, options, executor);
  }

  /** Where a chunk of this snapshot is, for messages. */
  describe(grid: DataGridChunk & { name: Uint8Array }): string {
    return describeChunk(this.name, this.metadata, this.header.pageSize, grid);
  }

  /** Chunk objects the manifest names (in a diff, those of the positions it gives pages of). */
  get chunkCount(): number {
    return this.manifest.chunkNames.length;
  }

  /** Refuses the snapshot when any chunk it names is not in the store; one HEAD per distinct chunk, in parallel. */
  async checkChunksPresent(): Promise<void> {
    const distinct = new Map<string, DataGridChunk & { name: Uint8Array }>();
    for (const grid of manifestChunks(this.manifest)) {
      const hex = Buffer.from(grid.name).toString('hex');
      if (!distinct.has(hex)) distinct.set(hex, grid);
    }
    const queue = [...distinct.values()];
    const missing: string[] = [];
    const worker = async () => {
      for (let grid = queue.pop(); grid; grid = queue.pop()) {
        if ((await this.store.engine.size(this.store.chunkKey(grid.name))) === null)
          missing.push(describeChunk(this.name, this.metadata, this.header.pageSize, grid));
      }
    };
    await Promise.all(Array.from({ length: this.options.parallel ?? this.store.parallel }, worker));
    if (missing.length) {
      throw new StoreError(
        'chunk-missing',
        `${this.store.description}: ${missing.length} chunk object${missing.length === 1 ? ' is' : 's are'} missing: ${missing[0]}` +
          (missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''),
      );
    }
  }

  /** Fetches, authenticates and decodes one chunk. */
  async fetchChunk(grid: DataGridChunk & { name: Uint8Array }, options: FetchOptions = {}): Promise<StoredChunk> {
    const where = describeChunk(this.name, this.metadata, this.header.pageSize, grid);
    const object = await this.store.engine.get(this.store.chunkKey(grid.name));
    if (!object) throw new StoreError('chunk-missing', `${this.store.description}: chunk object missing: ${where}`);
    const geometry = { kind: grid.kind, pageSize: this.header.pageSize, pageCount: grid.pageCount };
    const payload = openChunk(this.store.keys, geometry, grid.name, object, where);
    const result = await this.executor.run({
      op: 'decode',
      kind: grid.kind,
      pageSize: this.header.pageSize,
      zstd: true,
      // A worker pool takes the payload it decodes (transferred, left empty here): a copy when the caller reads it after.
      payload: options.payload === false ? payload : payload.slice(),
      payloadChecksum: checksum(payload),
      contentIsScratch: options.transient === true,
    });
    if ('failed' in result) throw new StoreError('chunk-not-authentic', `${where}: authentic but not a valid chunk: ${result.message}`);
    const decoded = result as DecodedChunkResult;
    const release = options.transient ? releaseOfContent(this.executor, decoded) : undefined;
    if (decoded.header.region !== 0 || decoded.header.firstPage !== 0 || decoded.header.pageCount !== grid.pageCount) {
      release?.();
      throw new StoreError('chunk-not-authentic', `${where}: the chunk payload is not placed at region 0, page 0`);
    }
    const { kind, region, firstPage, pageCount } = grid;
    const location = { kind, region, firstPage, pageCount, offset: 0n, length: BigInt(object.length) };
    const chunk = decodedChunk(location, decoded, this.header.pageSize);
    return { grid, payload, chunk, objectBytes: object.length, release };
  }

  /** Every chunk in grid order, up to `parallel` fetched ahead. */
  async *chunks(options: FetchOptions = {}): AsyncGenerator<StoredChunk> {
    const grids = manifestChunks(this.manifest);
    const ahead = this.options.parallel ?? this.store.parallel;
    const pending: Promise<StoredChunk>[] = [];
    let next = 0;
    try {
      while (next < grids.length || pending.length) {
        while (next < grids.length && pending.length < ahead) {
          const fetched = this.fetchChunk(grids[next++], options);
          fetched.catch(() => {});
          pending.push(fetched);
        }
        yield await pending.shift()!;
      }
    } finally {
      // Left early (an error, or the consumer stopped): chunks fetched ahead give their reused memory back.
      for (const fetched of pending) fetched.then((stored) => stored.release?.()).catch(() => {});
    }
  }

  /**
   * A full snapshot as the reader's events (restore consumes them): presence is checked before the first. A diff
   * is not a guest without its parents: StoredChain reads it merged.
   */
  async *events(): AsyncGenerator<SnapshotEvent> {
    if (this.manifest.diff)
      throw new ChainError('missing-parent', `snapshot ${this.name} is a diff of ${this.manifest.diff.parentName}: read it with its chain`);
    await this.checkChunksPresent();
    yield { type: 'start', header: this.header, metadata: this.metadata };
    // In the decoder's reused memory: restore releases each chunk once written.
    for await (const stored of this.chunks({ transient: true, payload: false }))
      yield { type: 'chunk', chunk: stored.chunk, release: stored.release };
    for (const vcpu of this.manifest.vcpus) yield { type: 'vcpu', vcpu };
    for (const blob of this.manifest.blobs) yield { type: 'blob', blob };
  }

  async close(): Promise<void> {
    if (this.ownsExecutor) await this.executor.close();
  }
}
