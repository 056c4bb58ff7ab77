/**
 * Sequential reads of one region's pages, chunk by chunk.
 *
 * Every forensics pass walks regions front to back. The cursor holds one
 * decoded chunk (the last one used), so each chunk is decoded once per pass,
 * and gives it back to the reader when it moves on (held-chunk.ts: a file's
 * chunks are decoded into memory the reader reuses). The windows pageWindows
 * yields are two buffers reused from window to window. So memory stays bounded
 * by the chunk size plus the window asked for, whatever the guest size, and no
 * fresh buffer is made per chunk. Pages no chunk covers read as zeros, as
 * absent pages do.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { ChunkKind, ChunkList, SnapshotReader, SnapshotRegion } from '../format/model.js';
import { copyFromChunk, type HeldChunk, holdChunk } from './held-chunk.js';

/** Tag bytes (one per granule) of one page. */
export function granulesPerPage(pageSize: number): number {
  return pageSize / GRANULE_SIZE;
}

export class RegionChunkCursor {
  private readonly chunks: ChunkList;
  /** Positions in `chunks` of this region's chunks of `kind`, by first page: a location is made only for a chunk read. */
  private readonly positions: Int32Array;
  private readonly bytesPerPage: number;
  private held: { position: number; chunk: HeldChunk } | null = null;

  constructor(
    private readonly reader: SnapshotReader,
    readonly region: SnapshotRegion,
    readonly kind: ChunkKind,
  ) {
    const chunks = reader.chunks;
    this.chunks = chunks;
    const mine: number[] = [];
    for (let i = 0; i < chunks.length; i++) if (chunks.kindOf(i) === kind && chunks.regionOf(i) === region.index) mine.push(i);
    this.positions = Int32Array.from(mine.sort((a, b) => chunks.firstPageOf(a) - chunks.firstPageOf(b)));
    const pageSize = reader.header.pageSize;
    this.bytesPerPage = kind === 'ram' ? pageSize : granulesPerPage(pageSize);
  }

  /**
   * The bytes of pages [firstPage, firstPage + pageCount) of the region: guest
   * data, or one tag per granule. Into `into` when given (at least that long;
   * the returned view of it is the result), else into a buffer of its own.
   */
  async read(firstPage: number, pageCount: number, into?: Uint8Array): Promise<Uint8Array> {
    const length = pageCount * this.bytesPerPage;
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    const endPage = firstPage + pageCount;
    let filled = firstPage;
    for (let i = this.firstOverlapping(firstPage); i < this.positions.length; i++) {
      const position = this.positions[i];
      const chunkFirst = this.chunks.firstPageOf(position);
      if (chunkFirst >= endPage) break;
      const from = Math.max(firstPage, chunkFirst);
      const to = Math.min(endPage, chunkFirst + this.chunks.pageCountOf(position));
      if (into && from > filled) out.fill(0, (filled - firstPage) * this.bytesPerPage, (from - firstPage) * this.bytesPerPage);
      const chunk = await this.decoded(position);
      copyFromChunk(
        chunk,
        (from - chunkFirst) * this.bytesPerPage,
        (to - chunkFirst) * this.bytesPerPage,
        out,
        (from - firstPage) * this.bytesPerPage,
        this.reader.header.pageSize,
      );
      filled = to;
    }
    if (into && filled < endPage) out.fill(0, (filled - firstPage) * this.bytesPerPage);
    return out;
  }

  /** Gives the chunk held back to the reader; a later read decodes again. */
  close(): void {
    this.held?.chunk.release();
    this.held = null;
  }

  /** Binary search: index of the first chunk that ends after `page`. */
  private firstOverlapping(page: number): number {
    let lo = 0;
    let hi = this.positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = this.positions[mid];
      if (this.chunks.firstPageOf(c) + this.chunks.pageCountOf(c) <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private async decoded(position: number): Promise<HeldChunk['chunk']> {
    if (this.held?.position === position) return this.held.chunk.chunk;
    this.close();
    const chunk = await holdChunk(this.reader, this.chunks[position]);
    this.held = { position, chunk };
    return chunk.chunk;
  }
}

/**
 * A window of consecutive pages of a region, with its tags and/or data. Its
 * bytes are valid until the next window is asked for (the buffers are reused):
 * copy what must outlive the step.
 */
export interface PageWindow {
  readonly region: SnapshotRegion;
  readonly firstPage: number;
  readonly pageCount: number;
  /** One byte per granule, or null when the region has no tags (not MTE) or they were not asked for. */
  readonly tags: Uint8Array | null;
  /** pageCount * pageSize guest bytes, or null when not asked for. */
  readonly data: Uint8Array | null;
}

export interface WindowOptions {
  readonly tags?: boolean;
  readonly data?: boolean;
  /** Pages per window; defaults to the snapshot's pages per chunk. */
  readonly windowPages?: number;
}

/** Walks pages [firstPage, endPage) of a region in windows, front to back; each window's bytes live until the next step. */
export async function* pageWindows(
  reader: SnapshotReader,
  region: SnapshotRegion,
  firstPage: number,
  endPage: number,
  options: WindowOptions,
): AsyncGenerator<PageWindow> {
  const windowPages = Math.max(1, options.windowPages ?? reader.header.pagesPerChunk ?? 256);
  const pageSize = reader.header.pageSize;
  const tagCursor = options.tags && region.mte ? new RegionChunkCursor(reader, region, 'tags') : null;
  const ramCursor = options.data ? new RegionChunkCursor(reader, region, 'ram') : null;
  const largest = Math.min(windowPages, Math.max(0, endPage - firstPage));
  const tagWindow = tagCursor ? new Uint8Array(largest * granulesPerPage(pageSize)) : null;
  const dataWindow = ramCursor ? new Uint8Array(largest * pageSize) : null;
  try {
    for (let page = firstPage; page < endPage; page += windowPages) {
      const pageCount = Math.min(windowPages, endPage - page);
      yield {
        region,
        firstPage: page,
        pageCount,
        tags: tagCursor ? await tagCursor.read(page, pageCount, tagWindow!) : null,
        data: ramCursor ? await ramCursor.read(page, pageCount, dataWindow!) : null,
      };
    }
  } finally {
    tagCursor?.close();
    ramCursor?.close();
  }
}

/** Bit i set when tag value i occurs among tags[from, to). */
export function tagMask(tags: Uint8Array, from: number, to: number): number {
  let mask = 0;
  for (let i = from; i < to; i++) mask |= 1 << (tags[i] & 0xf);
  return mask;
}

export function popcount16(mask: number): number {
  let n = 0;
  for (let m = mask; m !== 0; m &= m - 1) n++;
  return n;
}
