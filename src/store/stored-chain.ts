/**
 * Chains in the store: a diff snapshot's manifest names its parent by store
 * name (and, in META's parent_id, by snapshot id), so the chain that ends in
 * a snapshot is found from the store alone, newest to oldest, each link
 * checked against the one after it the way spec/FORMAT.md section 4.1 checks
 * files (the parent's snapshot id, the same layout; the first link full).
 *
 * StoredChain reads the guest the chain stands for as the events of one full
 * snapshot, for restore: for each chunk position, each page from the newest
 * link that gives it. Which links a position needs is known from the
 * manifests' changed-page maps before anything is fetched, so only those
 * chunk objects are fetched (in parallel, a bounded window ahead, handed on
 * in grid order); a chain of one full snapshot fetches exactly what the
 * snapshot names. Every link's chunks are checked present before the first
 * event, so a chain with a deleted chunk is refused before a VM is made.
 */
import { equalBytes } from '../format/bytes.js';
import { bitmapLength } from '../format/chunk.js';
import type { DataGridChunk } from '../format/chunk-grid.js';
import { chunkLocation, ramChunk, ramChunkFromContent, tagChunk, tagChunkFromPacked } from '../format/chunk-objects.js';
import { GRANULE_SIZE } from '../format/constants.js';
import type { RamChunk, TagChunk } from '../format/model.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import { ChainError, copyPages, layoutDifference, MergedBuffers, snapshotIdHex } from '../reader/chain.js';
import type { SnapshotEvent, SnapshotEventSource } from '../reader/events.js';
import type { ChunkStore } from './chunk-store.js';
import { StoreError } from './errors.js';
import { type ChunkPosition, MAX_CHAIN_LINKS, type Manifest, manifestPositions, type NamedGridChunk } from './manifest.js';
import { type StoredChunk, StoredSnapshot, type StoredSnapshotOptions } from './stored-snapshot.js';

export interface StoredLink {
  readonly name: string;
  readonly manifest: Manifest;
}

function layout(manifest: Manifest) {
  return { pageSize: manifest.pageSize, pagesPerChunk: manifest.pagesPerChunk, regions: manifest.metadata.regions };
}

/**
 * The parent manifest of the diff `child`, checked: present, opening with
 * this store's key, with the snapshot id the diff names and the same layout.
 * Each fault is a typed error naming both snapshots.
 */
export async function readParent(store: ChunkStore, child: StoredLink): Promise<StoredLink> {
  const parentName = child.manifest.diff!.parentName;
  const parentId = child.manifest.metadata.parentId!;
  const what = `${store.description}: snapshot ${child.name} is a diff of ${parentName} (snapshot ${snapshotIdHex(parentId)})`;
  let manifest: Manifest;
  try {
    manifest = await store.readManifest(parentName);
  } catch (error) {
    if (!(error instanceof StoreError)) throw error;
    if (error.code === 'snapshot-not-found' || error.code === 'bad-snapshot-name')
      throw new ChainError('missing-parent', `${what}, which is not in the store`);
    throw new StoreError(error.code, `${what}, whose manifest is refused: ${error.message}`, { cause: error });
  }
  if (!equalBytes(manifest.metadata.snapshotId, parentId)) {
    throw new ChainError(
      'parent-mismatch',
      `${what}, but ${parentName} in the store is snapshot ${snapshotIdHex(manifest.metadata.snapshotId)} (replaced since?)`,
    );
  }
  const difference = layoutDifference(layout(manifest), layout(child.manifest));
  if (difference) throw new ChainError('chain-layout-mismatch', `${what}, but cannot follow it: it has ${difference}`);
  return { name: parentName, manifest };
}

/** The chain that ends in snapshot `name`, oldest (a full snapshot) first, every link checked against the next. */
export async function resolveStoredChain(store: ChunkStore, name: string): Promise<StoredLink[]> {
  const links: StoredLink[] = [{ name, manifest: await store.readManifest(name) }];
  while (links[0].manifest.diff) {
    const child = links[0];
    if (links.some((link) => link.name === child.manifest.diff!.parentName) || links.length >= MAX_CHAIN_LINKS) {
      throw new ChainError(
        'parent-mismatch',
        `${store.description}: the chain of ${name} loops or has more than ${MAX_CHAIN_LINKS} links (at ${child.name}, ` +
          `a diff of ${child.manifest.diff!.parentName})`,
      );
    }
    links.unshift(await readParent(store, child));
  }
  return links;
}

/** One page-range merge: the pages a link gives at a position, and the chunk object they are in. */
interface Contribution {
  readonly link: number;
  readonly pages: Uint8Array;
  readonly grid: NamedGridChunk;
}

/** Refuses a diff's chunk that stores a page its changed-page map does not mark (spec/FORMAT.md section 4.1). */
export function checkGivenPages(stored: StoredChunk, changed: Uint8Array | null, where: string): void {
  if (!changed) return;
  const { present } = stored.chunk;
  for (let b = 0; b < present.length; b++) {
    if (present[b] & ~changed[b]) {
      throw new StoreError('bad-manifest', `${where}: the chunk stores a page its changed-page map does not give`);
    }
  }
}

/**
 * Which links give which pages of each position, newest first, from the
 * changed-page maps alone: a full link gives every page still wanted.
 */
function planPosition(positions: readonly ChunkPosition[][], at: number, kind: 'ram' | 'tags'): Contribution[] {
  const newest = positions[positions.length - 1][at];
  const wanted = new Uint8Array(bitmapLength(newest.ram.pageCount)).fill(0xff);
  const contributions: Contribution[] = [];
  for (let link = positions.length - 1; link >= 0; link--) {
    const position = positions[link][at];
    const grid = kind === 'ram' ? position.ramChunk : position.tagChunk;
    const pages = position.changed ? wanted.map((bits, b) => bits & position.changed![b]) : wanted.slice();
    if (grid && pages.some((bits) => bits !== 0)) contributions.push({ link, pages, grid });
    for (let b = 0; b < wanted.length; b++) wanted[b] &= ~pages[b];
    if (!position.changed) break;
  }
  return contributions;
}

/** A chain in the store, read as one full snapshot of the guest of its last link (restore's source). */
export class StoredChain implements SnapshotEventSource {
  private constructor(
    readonly store: ChunkStore,
    /** Oldest first; the last is the snapshot asked for. */
    readonly links: readonly StoredSnapshot[],
    private readonly options: StoredSnapshotOptions,
    /** One decoding pool for every link. */
    private readonly executor: ChunkExecutor,
  ) {}

  static async open(store: ChunkStore, name: string, options: StoredSnapshotOptions = {}): Promise<StoredChain> {
    const resolved = await resolveStoredChain(store, name);
    const executor = createChunkExecutor(options.threads);
    const links = resolved.map((link) => StoredSnapshot.fromManifest(store, link.name, link.manifest, options, executor));
    return new StoredChain(store, links, options, executor);
  }

  get last(): StoredSnapshot {
    return this.links[this.links.length - 1];
  }

  /** Every link's chunks are in the store (one HEAD per distinct chunk of each link). */
  async checkChunksPresent(): Promise<void> {
    for (const link of this.links) await link.checkChunksPresent();
  }

  /**
   * Each grid chunk merged over the links, in grid order, fetches running `parallel` ahead. Chunks are decoded
   * into reused memory: one a single full link gives is handed on with its `release`; merged ones are copied
   * (from packed pages, unexpanded) into reused buffers, each link's chunk released once copied.
   */
  private async *mergedChunks(): AsyncGenerator<{ chunk: RamChunk | TagChunk; release?: () => void }> {
    const positions = this.links.map((link) => manifestPositions(link.manifest));
    const plans: Array<{ grid: DataGridChunk; position: number; contributions: Contribution[] }> = [];
    for (const [at, position] of positions[positions.length - 1].entries()) {
      plans.push({ grid: position.ram, position: at, contributions: planPosition(positions, at, 'ram') });
      if (position.tags) plans.push({ grid: position.tags, position: at, contributions: planPosition(positions, at, 'tags') });
    }
    const fetches = plans.flatMap((plan) => plan.contributions.map((contribution) => ({ position: plan.position, contribution })));
    const ahead = this.options.parallel ?? this.store.parallel;
    const pending: Array<Promise<StoredChunk>> = [];
    const buffers = new MergedBuffers();
    let next = 0;
    const fetchNext = () => {
      const { position, contribution } = fetches[next++];
      const link = this.links[contribution.link];
      const fetched = link.fetchChunk(contribution.grid, { transient: true, payload: false }).then((stored) => {
        try {
          checkGivenPages(stored, positions[contribution.link][position].changed, link.describe(contribution.grid));
        } catch (error) {
          stored.release?.();
          throw error;
        }
        return stored;
      });
      fetched.catch(() => {});
      pending.push(fetched);
    };
    const nextFetched = async () => {
      while (next < fetches.length && pending.length < ahead) fetchNext();
      return await pending.shift()!;
    };
    try {
      for (const plan of plans) {
        const { grid } = plan;
        const [only] = plan.contributions;
        if (plan.contributions.length === 1 && positions[only.link][plan.position].changed === null) {
          // One full link gives every page here (a full snapshot, or no newer link changed any): its chunk as decoded.
          const { chunk, release } = await nextFetched();
          yield { chunk: placedAnew(chunk, this.last.header.pageSize), release };
          continue;
        }
        const unit = grid.kind === 'ram' ? this.last.header.pageSize : this.last.header.pageSize / GRANULE_SIZE;
        const merged = { present: new Uint8Array(bitmapLength(grid.pageCount)), bytes: buffers.take(grid.pageCount * unit) };
        for (const contribution of plan.contributions) {
          const { chunk, release } = await nextFetched();
          try {
            copyPages(merged, chunk, contribution.pages, grid.pageCount, unit);
          } finally {
            release?.();
          }
        }
        const location = {
          kind: grid.kind,
          region: grid.region,
          firstPage: grid.firstPage,
          pageCount: grid.pageCount,
          offset: 0n,
          length: 0n,
        };
        const { present, bytes } = merged;
        let released = false;
        const release = () => {
          if (!released) buffers.giveBack(bytes);
          released = true;
        };
        yield { chunk: grid.kind === 'ram' ? ramChunk(location, present, bytes) : tagChunk(location, present, bytes), release };
      }
    } finally {
      // Left early (an error, or the consumer stopped): chunks fetched ahead give their reused memory back.
      for (const fetched of pending) fetched.then((stored) => stored.release?.()).catch(() => {});
    }
  }

  /** The chain's guest as the events of one full snapshot: the last link's metadata, every chunk merged, its vCPUs and blobs. */
  async *events(): AsyncGenerator<SnapshotEvent> {
    await this.checkChunksPresent();
    const { last } = this;
    yield { type: 'start', header: { ...last.header, minor: 0 }, metadata: last.metadata };
    for await (const { chunk, release } of this.mergedChunks()) yield { type: 'chunk', chunk, release };
    for (const vcpu of last.manifest.vcpus) yield { type: 'vcpu', vcpu };
    for (const blob of last.manifest.blobs) yield { type: 'blob', blob };
  }

  async close(): Promise<void> {
    for (const link of this.links) await link.close();
    await this.executor.close();
  }
}

/** What push knows of a diff when its DIFF section arrives: enough to find and check its parent. */
export interface DiffBeingPushed {
  readonly name: string;
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  readonly metadata: Manifest['metadata'];
  readonly parentId: Uint8Array;
}

/**
 * The store name of the parent of a diff being pushed: `parentName` when
 * given, else the snapshot of the store whose snapshot id the diff names
 * (the first by name if the same snapshot was pushed under several). Either
 * way it is checked as restore checks it (readParent), so a diff is never
 * stored on a parent that could not restore it.
 */
export async function findParent(store: ChunkStore, diff: DiffBeingPushed, parentName?: string): Promise<string> {
  const probe = (candidate: string): StoredLink => ({
    name: diff.name,
    manifest: {
      pageSize: diff.pageSize,
      pagesPerChunk: diff.pagesPerChunk,
      metadata: { ...diff.metadata, parentId: diff.parentId },
      vcpus: [],
      blobs: [],
      chunkNames: [],
      fileBytes: 0n,
      diff: { parentName: candidate, changed: [] },
    },
  });
  if (parentName !== undefined) {
    if (parentName === diff.name) throw new ChainError('parent-mismatch', `snapshot ${diff.name} cannot be stored as a diff of itself`);
    return (await readParent(store, probe(parentName))).name;
  }
  for (const candidate of await store.snapshotNames()) {
    if (candidate === diff.name) continue;
    let manifest: Manifest;
    try {
      manifest = await store.readManifest(candidate);
    } catch (error) {
      if (error instanceof StoreError) continue; // another tenant's or altered: not this diff's parent
      throw error;
    }
    if (equalBytes(manifest.metadata.snapshotId, diff.parentId)) return (await readParent(store, probe(candidate))).name;
  }
  throw new ChainError(
    'missing-parent',
    `${store.description}: ${diff.name} is a diff of snapshot ${snapshotIdHex(diff.parentId)}, which no snapshot in the store is ` +
      '(push its parent first, or name it with --parent)',
  );
}

/** The snapshots of the store that are diffs of `name` (their manifests name it as their parent). */
export async function diffsOf(store: ChunkStore, name: string): Promise<string[]> {
  const found: string[] = [];
  for (const candidate of await store.snapshotNames()) {
    if (candidate === name) continue;
    try {
      if ((await store.readManifest(candidate)).diff?.parentName === name) found.push(candidate);
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
    }
  }
  return found;
}

/** A chunk fetched from the store, placed at offset 0 and length 0 (it is in no file), still packed if it came packed. */
function placedAnew(chunk: RamChunk | TagChunk, pageSize: number): RamChunk | TagChunk {
  const place = chunkLocation(chunk, 0n, 0n);
  if ('tags' in chunk) {
    return chunk.packedTags
      ? tagChunkFromPacked(place, chunk.present, chunk.packedTags, pageSize)
      : tagChunk(place, chunk.present, chunk.tags);
  }
  return chunk.content ? ramChunkFromContent(place, chunk.present, chunk.content, pageSize) : ramChunk(place, chunk.present, chunk.data);
}
