/**
 * Which pages a diff snapshot gives (spec/FORMAT.md, section 4.1), decided
 * one grid chunk at a time so that memory stays bounded by the chunk size:
 *
 *  - computed: the guest's RAM and tags of the chunk are compared with the
 *    parent chain's merged chunk (raw files, the simulated guest, anything
 *    stopped that has a parent file);
 *  - given: the caller says which pages changed, per memslot (what a live
 *    VM's dirty log gives). A page said to have changed that did not is
 *    written anyway, which is correct, only larger.
 *
 * Pages not given are zeroed in the chunk's input before it is encoded, so
 * the ordinary chunk encoder leaves them out; a given page is then stored
 * exactly when its bytes (or tags) are nonzero, as in a full snapshot.
 */
import { isAllZero } from '../format/bytes.js';
import { bitmapLength, isPagePresent, popcount } from '../format/chunk.js';
import type { GridChunk } from '../format/chunk-grid.js';
import { GRANULE_SIZE } from '../format/constants.js';
import { VmsnapError } from '../format/errors.js';
import type { SnapshotRegion } from '../format/model.js';
import { ChainError, type ChainLayout, layoutDifference, type SnapshotChain, snapshotIdHex } from '../reader/chain.js';
import type { VmSource } from '../vm/vm.js';
import { type InputBuffers, readChunkInput } from './chunk-input.js';

/** Changed pages per KVM memslot id: one bit per page of the slot, LSB first (the layout of KVM_GET_DIRTY_LOG's bitmap). */
export type ChangedPageSets = ReadonlyMap<number, Uint8Array>;

/** What a diff needs to know of a parent it does not read: its id and its layout. A SaveSummary is one. */
export interface ParentSnapshot {
  readonly snapshotId: Uint8Array;
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  readonly regions: readonly SnapshotRegion[];
}

/**
 * SaveOptions.diff. Either `parent` is an opened chain (openChain) ending in
 * the parent, and the guest is compared with its content; or `changedPages`
 * says which pages changed, and `parent` need only name the parent. A memslot
 * missing from changedPages is taken as changed throughout.
 */
export type DiffSnapshotOptions =
  | { readonly parent: SnapshotChain; readonly changedPages?: undefined }
  | { readonly parent: SnapshotChain | ParentSnapshot; readonly changedPages: ChangedPageSets };

/** A diff being written: its parent, how its pages are chosen, and how many it gave so far. */
export interface DiffPlan {
  readonly parentId: Uint8Array;
  readonly chain: SnapshotChain | null;
  readonly changedPageSets: ChangedPageSets | null;
  changedPages: bigint;
}

function isChain(parent: SnapshotChain | ParentSnapshot): parent is SnapshotChain {
  return 'links' in parent;
}

/** The parent's id and layout, whichever way it was given. */
export function parentSnapshot(parent: SnapshotChain | ParentSnapshot): ParentSnapshot {
  if (!isChain(parent)) return parent;
  const { pageSize, pagesPerChunk } = parent.header;
  return { snapshotId: parent.metadata.snapshotId, pageSize, pagesPerChunk, regions: parent.regions };
}

/** A diff option that cannot work: changed pages too short for their slot, or nothing to compare with. */
export class DiffSaveError extends VmsnapError {
  constructor(message: string) {
    super('bad-diff-option', 'usage', message);
  }
}

/** Checks the guest's layout against the parent's (they must be equal, or the chain could not be merged) and plans the diff. */
export function planDiff(options: DiffSnapshotOptions, layout: ChainLayout): DiffPlan {
  const parent = parentSnapshot(options.parent);
  const difference = layoutDifference(parent, layout);
  if (difference) {
    throw new ChainError(
      'chain-layout-mismatch',
      `the guest cannot be saved as a diff of snapshot ${snapshotIdHex(parent.snapshotId)}: it has ${difference}`,
    );
  }
  if (options.changedPages) {
    for (const region of layout.regions) {
      const bits = options.changedPages.get(region.slot);
      const pages = Number(region.size / BigInt(layout.pageSize));
      if (bits && bits.length < bitmapLength(pages)) {
        throw new DiffSaveError(
          `changed pages of slot ${region.slot}: ${bits.length} bytes, its ${pages} pages need ${bitmapLength(pages)}`,
        );
      }
    }
  }
  if (!options.changedPages && !isChain(options.parent)) {
    throw new DiffSaveError('a diff needs the parent chain to compare with, or the changed pages');
  }
  return {
    parentId: parent.snapshotId,
    chain: isChain(options.parent) ? options.parent : null,
    changedPageSets: options.changedPages ?? null,
    changedPages: 0n,
  };
}

function pagesEqual(a: Uint8Array, b: Uint8Array, nibbles: boolean): boolean {
  if (Buffer.compare(a, b) === 0) return true;
  if (!nibbles) return false;
  // Tags are 4 bits: a VM may hand back bytes whose high nibble is not zero.
  for (let i = 0; i < a.length; i++) if ((a[i] & 0xf) !== (b[i] & 0xf)) return false;
  return true;
}

/** Marks the pages of `chunk` whose bytes (or tags) differ from the parent's merged chunk. */
async function markDiffering(
  chain: SnapshotChain,
  chunk: GridChunk,
  kind: 'ram' | 'tags',
  input: Uint8Array,
  unit: number,
  changed: Uint8Array,
  buffers: Pick<InputBuffers, 'take' | 'giveBack'>,
): Promise<void> {
  // The parent's chunk in one of the writer's reused buffers, given back once compared: not a fresh one per chunk (issue 10).
  const scratch = buffers.take(chunk.pageCount * unit);
  try {
    const parent = await chain.readMerged(kind, chunk.region, chunk.firstPage, scratch);
    for (let page = 0; page < chunk.pageCount; page++) {
      if (isPagePresent(changed, page)) continue;
      const ours = input.subarray(page * unit, (page + 1) * unit);
      if (!pagesEqual(ours, parent.bytes.subarray(page * unit, (page + 1) * unit), kind === 'tags')) {
        changed[page >>> 3] |= 1 << (page & 7);
      }
    }
  } finally {
    buffers.giveBack(scratch);
  }
}

function givenPages(sets: ChangedPageSets, region: SnapshotRegion, chunk: GridChunk, changed: Uint8Array): void {
  const bits = sets.get(region.slot);
  for (let page = 0; page < chunk.pageCount; page++) {
    if (!bits || isPagePresent(bits, chunk.firstPage + page)) changed[page >>> 3] |= 1 << (page & 7);
  }
}

/** Zeroes the pages not given, so that the chunk encoder leaves them out. */
function clearUnchanged(input: Uint8Array, unit: number, pageCount: number, changed: Uint8Array): void {
  for (let page = 0; page < pageCount; page++) {
    if (isPagePresent(changed, page)) continue;
    const bytes = input.subarray(page * unit, (page + 1) * unit);
    if (!isAllZero(bytes)) bytes.fill(0);
  }
}

/** One grid chunk of a diff: its changed-page map, and its RAM and tags with only the changed pages left. */
export async function prepareDiffRange(
  vm: VmSource,
  region: SnapshotRegion,
  chunk: GridChunk,
  plan: DiffPlan,
  buffers: Pick<InputBuffers, 'take' | 'giveBack'>,
  onCallingThread: boolean,
): Promise<{ changed: Uint8Array; ram: Uint8Array; tags: Uint8Array | null }> {
  const ram = await readChunkInput(vm, region, { ...chunk, kind: 'ram' }, buffers, onCallingThread);
  const tags = region.mte ? await readChunkInput(vm, region, { ...chunk, kind: 'tags' }, buffers) : null;
  const changed = new Uint8Array(bitmapLength(chunk.pageCount));
  const tagUnit = vm.pageSize / GRANULE_SIZE;
  if (plan.changedPageSets) givenPages(plan.changedPageSets, region, chunk, changed);
  else {
    await markDiffering(plan.chain!, chunk, 'ram', ram, vm.pageSize, changed, buffers);
    if (tags) await markDiffering(plan.chain!, chunk, 'tags', tags, tagUnit, changed, buffers);
  }
  clearUnchanged(ram, vm.pageSize, chunk.pageCount, changed);
  if (tags) clearUnchanged(tags, tagUnit, chunk.pageCount, changed);
  plan.changedPages += BigInt(popcount(changed));
  return { changed, ram, tags };
}
