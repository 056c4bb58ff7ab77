/**
 * A snapshot's grid sections as the index locates them (its RAM and tag
 * chunks, or a diff's changed-page maps), kept in typed-array columns: 33
 * bytes a row, where an object per row with its two BigInts (offset, length)
 * took about 140 (issue 10: 32 thousand chunks per snapshot of a 16 GiB
 * guest). File offsets and lengths are kept as doubles: exact below 2^53.
 * Readers see the rows as arrays (chunkList, changedPagesList), each element
 * made when read; the library's own passes read the columns by position.
 */
import { arrayView } from './array-view.js';
import type { GridKind } from './chunk-grid.js';
import type { ChangedPagesList, ChangedPagesLocation, ChunkKind, ChunkList, ChunkLocation } from './model.js';

const KINDS: readonly GridKind[] = ['ram', 'tags', 'changed'];

export class GridTable {
  #kinds: Uint8Array;
  #regions: Uint32Array;
  #firstPages: Uint32Array;
  #pageCounts: Uint32Array;
  /** A changed-page map's changed pages; 0 for a chunk. */
  #counts: Uint32Array;
  #offsets: Float64Array;
  #lengths: Float64Array;
  #length = 0;
  /** Row + 1 by slot (region and kind) and chunk number, made when first looked up; 0 where no row is. */
  #places: Int32Array[] | undefined;

  constructor(
    private readonly pagesPerChunk: number,
    capacity = 64,
  ) {
    this.#kinds = new Uint8Array(capacity);
    this.#regions = new Uint32Array(capacity);
    this.#firstPages = new Uint32Array(capacity);
    this.#pageCounts = new Uint32Array(capacity);
    this.#counts = new Uint32Array(capacity);
    this.#offsets = new Float64Array(capacity);
    this.#lengths = new Float64Array(capacity);
  }

  get length(): number {
    return this.#length;
  }

  push(kind: GridKind, region: number, firstPage: number, pageCount: number, offset: bigint, length: bigint, count = 0): void {
    if (this.#length === this.#kinds.length) this.resize(Math.max(64, this.#length * 2));
    const i = this.#length++;
    this.#kinds[i] = KINDS.indexOf(kind);
    this.#regions[i] = region;
    this.#firstPages[i] = firstPage;
    this.#pageCounts[i] = pageCount;
    this.#counts[i] = count;
    this.#offsets[i] = Number(offset);
    this.#lengths[i] = Number(length);
    this.#places = undefined;
  }

  /** Gives back the room grown for rows never pushed: call once the last row is in. */
  trim(): void {
    if (this.#length < this.#kinds.length) this.resize(this.#length);
  }

  private resize(capacity: number): void {
    const n = this.#length;
    const grow = <A extends Uint8Array | Uint32Array | Float64Array>(column: A, make: (length: number) => A): A => {
      const next = make(capacity);
      next.set(column.subarray(0, n));
      return next;
    };
    this.#kinds = grow(this.#kinds, (l) => new Uint8Array(l));
    this.#regions = grow(this.#regions, (l) => new Uint32Array(l));
    this.#firstPages = grow(this.#firstPages, (l) => new Uint32Array(l));
    this.#pageCounts = grow(this.#pageCounts, (l) => new Uint32Array(l));
    this.#counts = grow(this.#counts, (l) => new Uint32Array(l));
    this.#offsets = grow(this.#offsets, (l) => new Float64Array(l));
    this.#lengths = grow(this.#lengths, (l) => new Float64Array(l));
  }

  kindOf(i: number): GridKind {
    return KINDS[this.#kinds[i]];
  }

  regionOf(i: number): number {
    return this.#regions[i];
  }

  firstPageOf(i: number): number {
    return this.#firstPages[i];
  }

  pageCountOf(i: number): number {
    return this.#pageCounts[i];
  }

  offsetOf(i: number): bigint {
    return BigInt(this.#offsets[i]);
  }

  lengthOf(i: number): bigint {
    return BigInt(this.#lengths[i]);
  }

  /** The row of `kind` over `region`'s pages from `firstPage`, or -1. */
  positionOf(kind: GridKind, region: number, firstPage: number): number {
    if (firstPage % this.pagesPerChunk !== 0) return -1;
    const places = this.places();
    return (places[slot(KINDS.indexOf(kind), region)]?.[firstPage / this.pagesPerChunk] ?? 0) - 1;
  }

  private places(): Int32Array[] {
    if (this.#places) return this.#places;
    const chunksBySlot: number[] = [];
    for (let i = 0; i < this.#length; i++) {
      if (this.#firstPages[i] % this.pagesPerChunk !== 0) continue;
      const s = slot(this.#kinds[i], this.#regions[i]);
      chunksBySlot[s] = Math.max(chunksBySlot[s] ?? 0, this.#firstPages[i] / this.pagesPerChunk + 1);
    }
    const places: Int32Array[] = [];
    for (let i = 0; i < this.#length; i++) {
      if (this.#firstPages[i] % this.pagesPerChunk !== 0) continue;
      const s = slot(this.#kinds[i], this.#regions[i]);
      places[s] ??= new Int32Array(chunksBySlot[s]);
      places[s][this.#firstPages[i] / this.pagesPerChunk] = i + 1;
    }
    this.#places = places;
    return places;
  }

  /** Row i as a chunk's location (a RAM or tag chunk's row). */
  chunkAt(i: number): ChunkLocation {
    return {
      kind: this.kindOf(i) as ChunkKind,
      region: this.#regions[i],
      firstPage: this.#firstPages[i],
      pageCount: this.#pageCounts[i],
      offset: this.offsetOf(i),
      length: this.lengthOf(i),
    };
  }

  /** Row i as a changed-page map's location. */
  changedPagesAt(i: number): ChangedPagesLocation {
    return {
      region: this.#regions[i],
      firstPage: this.#firstPages[i],
      pageCount: this.#pageCounts[i],
      changedCount: this.#counts[i],
      offset: this.offsetOf(i),
      length: this.lengthOf(i),
    };
  }
}

/** A row's slot in the lookup: its region and kind. */
function slot(kind: number, region: number): number {
  return region * KINDS.length + kind;
}

/** The chunk rows of `table` as the reader's `chunks`. */
export function chunkList(table: GridTable): ChunkList {
  return arrayView(
    () => table.length,
    (i) => table.chunkAt(i),
    {
      kindOf: (i: number) => table.kindOf(i) as ChunkKind,
      regionOf: (i: number) => table.regionOf(i),
      firstPageOf: (i: number) => table.firstPageOf(i),
      pageCountOf: (i: number) => table.pageCountOf(i),
      positionOf: (kind: ChunkKind, region: number, firstPage: number) => table.positionOf(kind, region, firstPage),
    },
  );
}

/** The changed-page map rows of `table` as a diff reader's `changedPageMaps`. */
export function changedPagesList(table: GridTable): ChangedPagesList {
  return arrayView(
    () => table.length,
    (i) => table.changedPagesAt(i),
    { positionOf: (region: number, firstPage: number) => table.positionOf('changed', region, firstPage) },
  );
}
