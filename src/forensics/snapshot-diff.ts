/**
 * Differences in tags and data between two snapshots of the same guest.
 *
 * Regions are matched by name, address and size. For each page the diff
 * counts granules whose data changed and granules whose tag changed, split
 * by what the change looks like:
 *   tagged    0 -> n  (memory newly coloured, e.g. allocated)
 *   cleared   n -> 0  (colour removed, e.g. freed to an untagged pool)
 *   retagged  n -> m  (both nonzero: what a free and a reallocation look like)
 * Pages are walked window by window in both files at once, so memory stays
 * bounded; changed pages are handed to a callback as they are found.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader, SnapshotRegion } from '../format/model.js';
import { jsonResult } from '../json.js';
import { SnapshotMismatchError } from './errors.js';
import { granulesPerPage, type PageWindow, pageWindows } from './region-cursor.js';

/** Consecutive granules of one page whose tag went from `from` to `to`. */
export interface TagChangeRun {
  readonly address: bigint;
  readonly granules: number;
  readonly from: number;
  readonly to: number;
}

/** Consecutive granules of one page whose data changed. */
export interface DataChangeRun {
  readonly address: bigint;
  readonly granules: number;
}

export interface ChangedPage {
  readonly region: string;
  readonly address: bigint;
  readonly dataGranulesChanged: number;
  /** Where the data changed, as runs of granules (so a listing names the granules, not only their count). */
  readonly dataChanges: DataChangeRun[];
  readonly tagChanges: TagChangeRun[];
}

export interface RegionDiff {
  readonly region: string;
  readonly guestAddress: bigint;
  readonly size: bigint;
  /** False when only one side saved tags (then only data is compared). */
  readonly tagsCompared: boolean;
  pages: number;
  pagesChanged: number;
  pagesDataChanged: number;
  pagesTagsChanged: number;
  granulesDataChanged: number;
  granulesTagged: number;
  granulesCleared: number;
  granulesRetagged: number;
}

export interface SnapshotDiff {
  readonly regions: RegionDiff[];
  /** Regions (by name) present in only one snapshot, or at another address or size. */
  readonly onlyInA: string[];
  readonly onlyInB: string[];
  readonly changed: boolean;
}

export interface DiffOptions {
  /** Compare guest data too (default true); tags are always compared. */
  readonly data?: boolean;
  /** Called for every changed page, in address order. */
  readonly onChangedPage?: (page: ChangedPage) => void;
}

function sameRegion(a: SnapshotRegion, b: SnapshotRegion): boolean {
  return a.name === b.name && a.guestAddress === b.guestAddress && a.size === b.size;
}

function emptyRegionDiff(region: SnapshotRegion, tagsCompared: boolean): RegionDiff {
  return {
    region: region.name,
    guestAddress: region.guestAddress,
    size: region.size,
    tagsCompared,
    pages: 0,
    pagesChanged: 0,
    pagesDataChanged: 0,
    pagesTagsChanged: 0,
    granulesDataChanged: 0,
    granulesTagged: 0,
    granulesCleared: 0,
    granulesRetagged: 0,
  };
}

/** Granules of one page whose 16 bytes differ. */
/** Granules of the page at `from` whose data differ; their runs go to `runs` (page at `address`) when given. */
function changedDataGranules(
  a: Uint8Array,
  b: Uint8Array,
  from: number,
  pageSize: number,
  runs: DataChangeRun[] | null = null,
  address = 0n,
): number {
  const pageA = Buffer.from(a.buffer, a.byteOffset + from, pageSize);
  if (pageA.equals(Buffer.from(b.buffer, b.byteOffset + from, pageSize))) return 0;
  let changed = 0;
  let runStart = -1;
  for (let g = from; g <= from + pageSize; g += GRANULE_SIZE) {
    let differs = false;
    for (let i = g; i < g + GRANULE_SIZE && g < from + pageSize; i++) {
      if (a[i] !== b[i]) {
        differs = true;
        break;
      }
    }
    if (differs) {
      changed++;
      if (runStart < 0) runStart = g;
    } else if (runStart >= 0) {
      runs?.push({ address: address + BigInt(runStart - from), granules: (g - runStart) / GRANULE_SIZE });
      runStart = -1;
    }
  }
  return changed;
}

/**
 * Counts the tag changes of one page into `diff`; returns how many granules
 * changed, and the changes as runs when `runs` is given (only when someone
 * lists pages: building runs is most of the cost on a heavily changed guest).
 */
function tagChangesOfPage(
  a: Uint8Array,
  b: Uint8Array,
  from: number,
  perPage: number,
  diff: RegionDiff,
  runs: TagChangeRun[] | null,
  pageAddress: bigint,
): number {
  let changed = 0;
  let runStart = -1;
  for (let g = from; g <= from + perPage; g++) {
    const end = g === from + perPage;
    const x = end ? 0 : a[g] & 0xf;
    const y = end ? 0 : b[g] & 0xf;
    if (runs && runStart >= 0 && (end || x !== (a[runStart] & 0xf) || y !== (b[runStart] & 0xf))) {
      runs.push({
        address: pageAddress + BigInt((runStart - from) * GRANULE_SIZE),
        granules: g - runStart,
        from: a[runStart] & 0xf,
        to: b[runStart] & 0xf,
      });
      runStart = -1;
    }
    if (end || x === y) continue;
    changed++;
    if (x === 0) diff.granulesTagged++;
    else if (y === 0) diff.granulesCleared++;
    else diff.granulesRetagged++;
    if (runStart < 0) runStart = g;
  }
  return changed;
}

function compareWindows(wa: PageWindow, wb: PageWindow, pageSize: number, diff: RegionDiff, options: DiffOptions): void {
  const perPage = granulesPerPage(pageSize);
  for (let p = 0; p < wa.pageCount; p++) {
    const address = wa.region.guestAddress + BigInt((wa.firstPage + p) * pageSize);
    const dataChanges: DataChangeRun[] | null = options.onChangedPage ? [] : null;
    const dataGranules = wa.data && wb.data ? changedDataGranules(wa.data, wb.data, p * pageSize, pageSize, dataChanges, address) : 0;
    const tagChanges: TagChangeRun[] | null = options.onChangedPage ? [] : null;
    const tagGranules = wa.tags && wb.tags ? tagChangesOfPage(wa.tags, wb.tags, p * perPage, perPage, diff, tagChanges, address) : 0;
    diff.pages++;
    if (dataGranules === 0 && tagGranules === 0) continue;
    diff.pagesChanged++;
    if (dataGranules) diff.pagesDataChanged++;
    if (tagGranules) diff.pagesTagsChanged++;
    diff.granulesDataChanged += dataGranules;
    options.onChangedPage?.({
      region: wa.region.name,
      address,
      dataGranulesChanged: dataGranules,
      dataChanges: dataChanges ?? [],
      tagChanges: tagChanges ?? [],
    });
  }
}

async function diffRegion(
  a: SnapshotReader,
  ra: SnapshotRegion,
  b: SnapshotReader,
  rb: SnapshotRegion,
  options: DiffOptions,
): Promise<RegionDiff> {
  const pageSize = a.header.pageSize;
  const tagsCompared = ra.mte && rb.mte;
  const diff = emptyRegionDiff(ra, tagsCompared);
  const pages = Number(ra.size / BigInt(pageSize));
  const wanted = { tags: tagsCompared, data: options.data ?? true, windowPages: a.header.pagesPerChunk };
  const windowsB = pageWindows(b, rb, 0, pages, wanted);
  try {
    for await (const wa of pageWindows(a, ra, 0, pages, wanted)) {
      const next = await windowsB.next();
      if (next.done) break;
      compareWindows(wa, next.value, pageSize, diff, options);
    }
  } finally {
    await windowsB.return(undefined); // gives its held chunks back
  }
  return diff;
}

/** Compares two snapshots of one guest, region by region. */
export async function diffSnapshots(a: SnapshotReader, b: SnapshotReader, options: DiffOptions = {}): Promise<SnapshotDiff> {
  if (a.header.pageSize !== b.header.pageSize) {
    throw new SnapshotMismatchError(`page sizes differ (${a.header.pageSize} in ${a.path}, ${b.header.pageSize} in ${b.path})`);
  }
  const regions: RegionDiff[] = [];
  for (const ra of a.regions) {
    const rb = b.regions.find((r) => sameRegion(ra, r));
    if (rb) regions.push(await diffRegion(a, ra, b, rb, options));
  }
  const onlyInA = a.regions.filter((ra) => !b.regions.some((rb) => sameRegion(ra, rb))).map((r) => r.name);
  const onlyInB = b.regions.filter((rb) => !a.regions.some((ra) => sameRegion(ra, rb))).map((r) => r.name);
  if (regions.length === 0 && a.regions.length + b.regions.length > 0) {
    throw new SnapshotMismatchError(
      `no region in common (${a.path}: ${a.regions.map((r) => r.name).join(', ')}; ${b.path}: ${b.regions.map((r) => r.name).join(', ')})`,
    );
  }
  const changed = onlyInA.length > 0 || onlyInB.length > 0 || regions.some((r) => r.pagesChanged > 0);
  return jsonResult({ regions, onlyInA, onlyInB, changed });
}
