/**
 * The chunk grid: which chunks a file must hold, derived from the header and
 * the region list alone. Region i is cut into chunks of pages_per_chunk pages
 * (the last one shorter); each chunk is a RAMC, followed by a TAGC over the
 * same pages when the region is MTE. Writer and reader both use this, so the
 * file's order is defined in exactly one place.
 */

import { LIMITS } from './constants.js';
import { SnapshotFormatError } from './errors.js';
import type { ChunkKind, SnapshotRegion } from './model.js';

/** A grid entry: a RAM chunk, a tag chunk, or (in a diff) the changed-page map of the pages that follow. */
export type GridKind = ChunkKind | 'changed';

export interface GridChunk {
  readonly kind: GridKind;
  readonly region: number;
  readonly firstPage: number;
  readonly pageCount: number;
}

export function regionPageCount(region: SnapshotRegion, pageSize: number): number {
  return Number(region.size / BigInt(pageSize));
}

/** Checks the regions against each other and the page size; the errors name the region. */
export function checkRegions(regions: readonly SnapshotRegion[], pageSize: number): void {
  const page = BigInt(pageSize);
  const fail = (region: SnapshotRegion, message: string): never => {
    throw new SnapshotFormatError('bad-metadata', `region ${region.index} "${region.name}" ${message}`, {
      section: 'META',
      region: region.index,
      guestAddress: region.guestAddress,
    });
  };
  const sorted = [...regions].sort((a, b) => (a.guestAddress < b.guestAddress ? -1 : a.guestAddress > b.guestAddress ? 1 : 0));
  for (const region of regions) {
    if (region.size === 0n) fail(region, 'is empty');
    if (region.size > LIMITS.regionSize) fail(region, `is larger than ${LIMITS.regionSize} bytes`);
    if (region.guestAddress % page || region.size % page) fail(region, `is not aligned to the ${pageSize}-byte page size`);
    if (region.guestAddress + region.size > 1n << 64n) fail(region, 'runs past the end of the address space');
    if (regionPageCount(region, pageSize) > 0xffff_ffff) fail(region, 'has more than 2^32 - 1 pages');
    // TO_GUEST on a read-only memslot is EFAULT: such tags could never be restored.
    if (region.readOnly && region.mte) fail(region, 'is read-only and MTE; read-only regions carry no tags');
  }
  for (let i = 1; i < sorted.length; i++) {
    const before = sorted[i - 1];
    if (before.guestAddress + before.size > sorted[i].guestAddress) fail(sorted[i], `overlaps region ${before.index} "${before.name}"`);
  }
  const slots = new Set<number>();
  for (const region of regions) {
    if (slots.has(region.slot)) fail(region, `reuses slot ${region.slot}`);
    slots.add(region.slot);
  }
}

/** A RAM or tag chunk of the grid: all a full snapshot's grid holds. */
export type DataGridChunk = GridChunk & { readonly kind: ChunkKind };

/** Every chunk of the file, in file order; a diff snapshot has a changed-page map (CHGP) before each RAMC. */
export function chunkGrid(regions: readonly SnapshotRegion[], pageSize: number, pagesPerChunk: number): Generator<DataGridChunk>;
export function chunkGrid(regions: readonly SnapshotRegion[], pageSize: number, pagesPerChunk: number, diff: boolean): Generator<GridChunk>;
export function* chunkGrid(
  regions: readonly SnapshotRegion[],
  pageSize: number,
  pagesPerChunk: number,
  diff = false,
): Generator<GridChunk> {
  for (const region of regions) {
    const pages = regionPageCount(region, pageSize);
    for (let firstPage = 0; firstPage < pages; firstPage += pagesPerChunk) {
      const pageCount = Math.min(pagesPerChunk, pages - firstPage);
      if (diff) yield { kind: 'changed', region: region.index, firstPage, pageCount };
      yield { kind: 'ram', region: region.index, firstPage, pageCount };
      if (region.mte) yield { kind: 'tags', region: region.index, firstPage, pageCount };
    }
  }
}
