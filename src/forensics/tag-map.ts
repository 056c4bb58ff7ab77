/**
 * Tag maps: every region as a grid of cells, each cell one page or, when a
 * guest has more pages than the picture has room for, a power-of-two group
 * of pages. A cell shows the state most of its pages are in, except that a
 * cell with any changed page shows the change (so a single retagged page in
 * a 4 GiB guest stays visible).
 *
 * Building the map walks each region once in windows (bounded memory); the
 * map itself holds one byte per cell, at most MAX_CELLS of them.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader, SnapshotRegion } from '../format/model.js';
import { jsonResult } from '../json.js';
import { changeStateOfPage, PAGE_STATE_COUNT, PageState, tagStateOfPage } from './page-states.js';
import { granulesPerPage, type PageWindow, pageWindows } from './region-cursor.js';

/** Cells (pixels squares) the picture has room for: 512 columns x 512 rows of 2 px. */
export const MAX_CELLS = 512 * 512;
/** Bigger cells for small guests, so a 64-page region is not a speck. */
const CELL_SIZES_PX = [16, 8, 4, 2];
const GRID_WIDTH_PX = 1024;
const MAX_GRID_ROWS_PX = 1024;

export interface MapScale {
  readonly pagesPerCell: number;
  readonly cellPx: number;
  readonly columns: number;
}

export interface RegionMap {
  readonly name: string;
  readonly guestAddress: bigint;
  readonly size: bigint;
  readonly mte: boolean;
  /** Whether the second snapshot has this region (so changes could be shown). */
  readonly compared: boolean;
  readonly pages: number;
  /** One PageState per cell. */
  readonly cells: Uint8Array;
  /** Pages per PageState (exact, not per cell). */
  readonly pagesInState: number[];
}

export interface TagMap {
  readonly pageSize: number;
  readonly scale: MapScale;
  readonly regions: RegionMap[];
  /** Title lines: the file(s) the map is of. */
  readonly source: string;
  readonly against: string | null;
}

function rowsFor(pagesPerRegion: readonly number[], pagesPerCell: number, columns: number): number {
  return pagesPerRegion.reduce((sum, pages) => sum + Math.ceil(Math.ceil(pages / pagesPerCell) / columns), 0);
}

/** The largest cells that fit one page per cell; else 2 px cells of as few pages as fit. */
export function chooseScale(pagesPerRegion: readonly number[]): MapScale {
  for (const cellPx of CELL_SIZES_PX) {
    const columns = GRID_WIDTH_PX / cellPx;
    if (rowsFor(pagesPerRegion, 1, columns) * cellPx <= MAX_GRID_ROWS_PX) return { pagesPerCell: 1, cellPx, columns };
  }
  const cellPx = CELL_SIZES_PX[CELL_SIZES_PX.length - 1];
  const columns = GRID_WIDTH_PX / cellPx;
  let pagesPerCell = 2;
  while (rowsFor(pagesPerRegion, pagesPerCell, columns) * cellPx > MAX_GRID_ROWS_PX) pagesPerCell *= 2;
  return { pagesPerCell, cellPx, columns };
}

/** The state a cell shows, from the number of its pages in each state. */
export function cellState(counts: Uint32Array, at: number): PageState {
  if (counts[at + PageState.TagsChanged]) return PageState.TagsChanged;
  if (counts[at + PageState.DataChanged]) return PageState.DataChanged;
  let best: PageState = PageState.UntaggedRegion;
  for (const state of [PageState.UntaggedRegion, PageState.ZeroTags, PageState.OneTag, PageState.ManyTags]) {
    if (counts[at + state] > counts[at + best]) best = state;
  }
  return best;
}

function countWindow(
  window: PageWindow,
  other: PageWindow | null,
  pageSize: number,
  counts: Uint32Array,
  pagesPerCell: number,
  pagesInState: number[],
): void {
  const perPage = granulesPerPage(pageSize);
  for (let p = 0; p < window.pageCount; p++) {
    const tagFrom = p * perPage;
    const changed = other
      ? changeStateOfPage(window.tags, other.tags, tagFrom, tagFrom + perPage, window.data, other.data, p * pageSize, (p + 1) * pageSize)
      : null;
    const state = changed ?? tagStateOfPage(window.tags, tagFrom, tagFrom + perPage);
    const cell = Math.floor((window.firstPage + p) / pagesPerCell);
    counts[cell * PAGE_STATE_COUNT + state]++;
    pagesInState[state]++;
  }
}

async function regionMap(
  reader: SnapshotReader,
  region: SnapshotRegion,
  other: { reader: SnapshotReader; region: SnapshotRegion } | null,
  scale: MapScale,
  compareData: boolean,
): Promise<RegionMap> {
  const pageSize = reader.header.pageSize;
  const pages = Number(region.size / BigInt(pageSize));
  const cellCount = Math.ceil(pages / scale.pagesPerCell);
  const counts = new Uint32Array(cellCount * PAGE_STATE_COUNT);
  const pagesInState = new Array<number>(PAGE_STATE_COUNT).fill(0);
  const wanted = { tags: true, data: other !== null && compareData, windowPages: reader.header.pagesPerChunk };
  const otherWindows = other
    ? pageWindows(other.reader, other.region, 0, pages, { ...wanted, tags: other.region.mte && region.mte })
    : null;
  try {
    for await (const window of pageWindows(reader, region, 0, pages, wanted)) {
      const next = otherWindows ? await otherWindows.next() : null;
      countWindow(window, next && !next.done ? next.value : null, pageSize, counts, scale.pagesPerCell, pagesInState);
    }
  } finally {
    await otherWindows?.return(undefined); // gives its held chunks back
  }
  const cells = new Uint8Array(cellCount);
  for (let c = 0; c < cellCount; c++) cells[c] = cellState(counts, c * PAGE_STATE_COUNT);
  return {
    name: region.name,
    guestAddress: region.guestAddress,
    size: region.size,
    mte: region.mte,
    compared: other !== null,
    pages,
    cells,
    pagesInState,
  };
}

export interface TagMapOptions {
  /** A second snapshot of the same guest: pages that changed since it are marked. */
  readonly against?: SnapshotReader;
  /** With `against`: also mark pages whose data (not tags) changed. Default true. */
  readonly compareData?: boolean;
}

export async function buildTagMap(reader: SnapshotReader, options: TagMapOptions = {}): Promise<TagMap> {
  const pageSize = reader.header.pageSize;
  if (pageSize % GRANULE_SIZE !== 0) throw new Error(`page size ${pageSize} is not a multiple of the granule size`);
  const scale = chooseScale(reader.regions.map((r) => Number(r.size / BigInt(pageSize))));
  const regions: RegionMap[] = [];
  for (const region of reader.regions) {
    const match = options.against?.regions.find(
      (r) => r.name === region.name && r.guestAddress === region.guestAddress && r.size === region.size,
    );
    const other =
      options.against && match && options.against.header.pageSize === pageSize ? { reader: options.against, region: match } : null;
    regions.push(await regionMap(reader, region, other, scale, options.compareData ?? true));
  }
  return jsonResult({ pageSize, scale, regions, source: reader.path, against: options.against?.path ?? null });
}
