/**
 * Sequential reads of one region's pages, chunk by chunk.
 *
 * Every forensics pass walks regions front to back. The cursor keeps one
 * decoded chunk (the last one used), so each chunk is decoded once per pass
 * and memory stays bounded by the chunk size plus the window asked for,
 * whatever the guest size. Pages no chunk covers read as zeros, as absent
 * pages do.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { ChunkKind, ChunkLocation, SnapshotReader, SnapshotRegion } from '../format/model.js';

/** Tag bytes (one per granule) of one page. */
export function granulesPerPage(pageSize: number): number {
  return pageSize / GRANULE_SIZE;
}

export class RegionChunkCursor {
  private readonly locations: ChunkLocation[];
  private readonly bytesPerPage: number;
  private cached: { location: ChunkLocation; bytes: Uint8Array } | null = null;

  constructor(
    private readonly reader: SnapshotReader,
    readonly region: SnapshotRegion,
    readonly kind: ChunkKind,
  ) {
    this.locations = reader.chunks.filter((c) => c.kind === kind && c.region === region.index).sort((a, b) => a.firstPage - b.firstPage);
    const pageSize = reader.header.pageSize;
    this.bytesPerPage = kind === 'ram' ? pageSize : granulesPerPage(pageSize);
  }

  /** The bytes of pages [firstPage, firstPage + pageCount) of the region: guest data, or one tag per granule. */
  async read(firstPage: number, pageCount: number): Promise<Uint8Array> {
    const out = new Uint8Array(pageCount * this.bytesPerPage);
    const endPage = firstPage + pageCount;
    for (let i = this.firstOverlapping(firstPage); i < this.locations.length; i++) {
      const location = this.locations[i];
      if (location.firstPage >= endPage) break;
      const bytes = await this.decoded(location);
      const from = Math.max(firstPage, location.firstPage);
      const to = Math.min(endPage, location.firstPage + location.pageCount);
      out.set(
        bytes.subarray((from - location.firstPage) * this.bytesPerPage, (to - location.firstPage) * this.bytesPerPage),
        (from - firstPage) * this.bytesPerPage,
      );
    }
    return out;
  }

  /** Binary search: index of the first chunk that ends after `page`. */
  private firstOverlapping(page: number): number {
    let lo = 0;
    let hi = this.locations.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = this.locations[mid];
      if (c.firstPage + c.pageCount <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private async decoded(location: ChunkLocation): Promise<Uint8Array> {
    if (this.cached?.location === location) return this.cached.bytes;
    const bytes = this.kind === 'ram' ? (await this.reader.readRamChunk(location)).data : (await this.reader.readTagChunk(location)).tags;
    this.cached = { location, bytes };
    return bytes;
  }
}

/** A window of consecutive pages of a region, with its tags and/or data. */
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

/** Walks pages [firstPage, endPage) of a region in windows, front to back. */
export async function* pageWindows(
  reader: SnapshotReader,
  region: SnapshotRegion,
  firstPage: number,
  endPage: number,
  options: WindowOptions,
): AsyncGenerator<PageWindow> {
  const windowPages = Math.max(1, options.windowPages ?? reader.header.pagesPerChunk ?? 256);
  const tagCursor = options.tags && region.mte ? new RegionChunkCursor(reader, region, 'tags') : null;
  const ramCursor = options.data ? new RegionChunkCursor(reader, region, 'ram') : null;
  for (let page = firstPage; page < endPage; page += windowPages) {
    const pageCount = Math.min(windowPages, endPage - page);
    yield {
      region,
      firstPage: page,
      pageCount,
      tags: tagCursor ? await tagCursor.read(page, pageCount) : null,
      data: ramCursor ? await ramCursor.read(page, pageCount) : null,
    };
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
