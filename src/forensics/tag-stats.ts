/**
 * Tag statistics: how a guest's memory is coloured, per region and overall.
 *
 * A "run" is a maximal stretch of consecutive granules with the same nonzero
 * tag. With an allocator that gives neighbours different tags (as MTE
 * allocators do, to catch overflows), a run is one allocation, so the run
 * length histogram is the allocation size histogram. Runs continue across
 * page boundaries but not across regions or the edges of an IPA filter.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader, SnapshotRegion } from '../format/model.js';
import { jsonResult } from '../json.js';
import { type IpaRange, pagesInRange, selectRegions } from './addresses.js';
import { granulesPerPage, pageWindows, popcount16, tagMask } from './region-cursor.js';

export const TAG_VALUES = 16;

/** Runs whose length in granules is in [minGranules, maxGranules]: power-of-two buckets. */
export interface RunBucket {
  readonly minBytes: number;
  readonly maxBytes: number;
  count: number;
}

export interface TagStats {
  /** Pages examined (in MTE and non-MTE regions). */
  pages: number;
  /** Pages in regions without saved tags. */
  untaggedRegionPages: number;
  /** Pages (of MTE regions) with at least one nonzero tag. */
  taggedPages: number;
  /** Pages (of MTE regions) whose tags are all zero. */
  zeroTagPages: number;
  /** Granules of MTE regions examined. */
  granules: number;
  /** Granules per tag value 0..15. */
  tagHistogram: number[];
  /** Index n: pages of MTE regions with exactly n distinct tag values (1..16). */
  distinctTagsPerPage: number[];
  /** Runs of equal nonzero tags (allocations). */
  runs: { count: number; granules: number; largestBytes: number; buckets: RunBucket[] };
}

export interface RegionTagStats extends TagStats {
  readonly region: string;
  readonly mte: boolean;
  /** The part of the region examined, [start, end). */
  readonly start: bigint;
  readonly end: bigint;
}

export interface TagStatsReport {
  readonly pageSize: number;
  readonly regions: RegionTagStats[];
  readonly overall: TagStats;
}

export interface TagStatsOptions {
  readonly region?: string;
  readonly range?: IpaRange;
}

function emptyStats(): TagStats {
  return {
    pages: 0,
    untaggedRegionPages: 0,
    taggedPages: 0,
    zeroTagPages: 0,
    granules: 0,
    tagHistogram: new Array<number>(TAG_VALUES).fill(0),
    distinctTagsPerPage: new Array<number>(TAG_VALUES + 1).fill(0),
    runs: { count: 0, granules: 0, largestBytes: 0, buckets: [] },
  };
}

/** Counts runs per power-of-two bucket of granules: bucket k holds lengths [2^k, 2^(k+1)). */
class RunCounter {
  private tag = 0;
  private length = 0;
  readonly perBucket: number[] = [];
  count = 0;
  granules = 0;
  largest = 0;

  add(tags: Uint8Array): void {
    for (let i = 0; i < tags.length; i++) {
      const t = tags[i] & 0xf;
      if (t === this.tag) {
        this.length++;
      } else {
        this.flush();
        this.tag = t;
        this.length = 1;
      }
    }
  }

  /** Ends the current run (at a region or filter edge). */
  flush(): void {
    if (this.tag !== 0 && this.length > 0) {
      const bucket = 31 - Math.clz32(this.length);
      this.perBucket[bucket] = (this.perBucket[bucket] ?? 0) + 1;
      this.count++;
      this.granules += this.length;
      this.largest = Math.max(this.largest, this.length);
    }
    this.tag = 0;
    this.length = 0;
  }

  buckets(): RunBucket[] {
    const out: RunBucket[] = [];
    this.perBucket.forEach((count, k) => {
      if (count) out.push({ minBytes: GRANULE_SIZE * 2 ** k, maxBytes: GRANULE_SIZE * (2 ** (k + 1) - 1), count });
    });
    return out;
  }
}

function addPageTags(stats: TagStats, tags: Uint8Array, pageCount: number, perPage: number): void {
  for (let p = 0; p < pageCount; p++) {
    const from = p * perPage;
    const mask = tagMask(tags, from, from + perPage);
    if (mask === 1) stats.zeroTagPages++;
    else stats.taggedPages++;
    stats.distinctTagsPerPage[popcount16(mask)]++;
  }
  for (let i = 0; i < tags.length; i++) stats.tagHistogram[tags[i] & 0xf]++;
  stats.granules += tags.length;
}

async function regionStats(reader: SnapshotReader, region: SnapshotRegion, range: IpaRange | undefined): Promise<RegionTagStats | null> {
  const pageSize = reader.header.pageSize;
  const pages = pagesInRange(region, pageSize, range);
  if (!pages) return null;
  const stats = emptyStats();
  const runs = new RunCounter();
  const perPage = granulesPerPage(pageSize);
  for await (const window of pageWindows(reader, region, pages.firstPage, pages.endPage, { tags: true })) {
    stats.pages += window.pageCount;
    if (!window.tags) stats.untaggedRegionPages += window.pageCount;
    else {
      addPageTags(stats, window.tags, window.pageCount, perPage);
      runs.add(window.tags);
    }
  }
  runs.flush();
  stats.runs = { count: runs.count, granules: runs.granules, largestBytes: runs.largest * GRANULE_SIZE, buckets: runs.buckets() };
  const start = region.guestAddress + BigInt(pages.firstPage * pageSize);
  return { region: region.name, mte: region.mte, start, end: region.guestAddress + BigInt(pages.endPage * pageSize), ...stats };
}

function addInto(total: TagStats, part: TagStats): void {
  total.pages += part.pages;
  total.untaggedRegionPages += part.untaggedRegionPages;
  total.taggedPages += part.taggedPages;
  total.zeroTagPages += part.zeroTagPages;
  total.granules += part.granules;
  for (const [i, n] of part.tagHistogram.entries()) total.tagHistogram[i] += n;
  for (const [i, n] of part.distinctTagsPerPage.entries()) total.distinctTagsPerPage[i] += n;
  total.runs.count += part.runs.count;
  total.runs.granules += part.runs.granules;
  total.runs.largestBytes = Math.max(total.runs.largestBytes, part.runs.largestBytes);
  for (const bucket of part.runs.buckets) {
    const same = total.runs.buckets.find((b) => b.minBytes === bucket.minBytes);
    if (same) same.count += bucket.count;
    else total.runs.buckets.push({ ...bucket });
  }
  total.runs.buckets.sort((a, b) => a.minBytes - b.minBytes);
}

/** Statistics of the selected regions (all by default), pages overlapping the range only when one is given. */
export async function tagStatistics(reader: SnapshotReader, options: TagStatsOptions = {}): Promise<TagStatsReport> {
  const regions: RegionTagStats[] = [];
  const overall = emptyStats();
  for (const region of selectRegions(reader.regions, options.region, options.range)) {
    const stats = await regionStats(reader, region, options.range);
    if (!stats) continue;
    regions.push(stats);
    addInto(overall, stats);
  }
  return jsonResult({ pageSize: reader.header.pageSize, regions, overall });
}
