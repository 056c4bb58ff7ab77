/**
 * Random access into a generated guest: the bytes and tags of any page range
 * of a region, computed from (seed, region, frame) alone. A 4 GiB guest is
 * produced chunk by chunk in memory bounded by the chunk.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import { FrameWriter, GRANULES_PER_FRAME } from './content.js';
import { FrameRandom, hashKey } from './random.js';
import { plantStalePointer } from './stale-pointers.js';
import { FRAME_SIZE, frameKind, type Workload, type WorkloadRegion } from './workload-layout.js';

export interface GeneratedPages {
  readonly firstPage: number;
  readonly pageCount: number;
  /** pageCount * pageSize bytes. */
  readonly data: Uint8Array;
  /** One tag per granule (the ioctl layout); all zero for regions without MTE. */
  readonly tags: Uint8Array;
}

/** Caller-owned buffers to generate into, to avoid an allocation per chunk. */
export interface PageBuffers {
  readonly data: Uint8Array;
  readonly tags: Uint8Array;
}

export function regionOf(workload: Workload, region: WorkloadRegion | number | string): WorkloadRegion {
  const found =
    typeof region === 'object'
      ? region
      : workload.regions.find((r) => (typeof region === 'number' ? r.index === region : r.name === region));
  if (!found || workload.regions[found.index] !== found)
    throw new RangeError(`workload has no region ${typeof region === 'object' ? region.name : region}`);
  return found;
}

/** The data and tags of pages [firstPage, firstPage + pageCount) of `region`. */
export function generatePages(
  workload: Workload,
  region: WorkloadRegion | number | string,
  firstPage: number,
  pageCount: number,
  into?: PageBuffers,
): GeneratedPages {
  const target = regionOf(workload, region);
  if (
    !Number.isInteger(firstPage) ||
    !Number.isInteger(pageCount) ||
    firstPage < 0 ||
    pageCount < 0 ||
    firstPage + pageCount > target.pageCount
  ) {
    throw new RangeError(`pages ${firstPage}..${firstPage + pageCount} outside region ${target.name} (${target.pageCount} pages)`);
  }
  const bytes = pageCount * workload.pageSize;
  const data = into ? into.data.subarray(0, bytes) : new Uint8Array(bytes);
  const tags = into ? into.tags.subarray(0, bytes / GRANULE_SIZE) : new Uint8Array(bytes / GRANULE_SIZE);
  if (data.length !== bytes || tags.length !== bytes / GRANULE_SIZE) {
    throw new RangeError(`buffers too small for ${pageCount} pages of ${workload.pageSize} bytes`);
  }
  const writer = new FrameWriter();
  const firstFrame = (firstPage * workload.pageSize) / FRAME_SIZE;
  const frames = bytes / FRAME_SIZE;
  for (let i = 0; i < frames; i++) {
    const frame = firstFrame + i;
    const random = new FrameRandom(hashKey(workload.seed, target.index, frame, 0xda7a));
    const frameTags = tags.subarray(i * GRANULES_PER_FRAME, (i + 1) * GRANULES_PER_FRAME);
    const kind = frameKind(workload, target, frame);
    const frameData = data.subarray(i * FRAME_SIZE, (i + 1) * FRAME_SIZE);
    writer.fill(kind, random, frameData, frameTags);
    if (kind === 'heap') plantStalePointer(workload, target, frame, frameData, frameTags);
    if (!target.mte) frameTags.fill(0);
  }
  return { firstPage, pageCount, data, tags };
}

/**
 * The region in order, `pagesPerChunk` pages at a time. The yielded buffers
 * are reused by the next chunk: copy what must outlive the iteration.
 */
export function* generateRegionChunks(
  workload: Workload,
  region: WorkloadRegion | number | string,
  pagesPerChunk = 256,
): Generator<GeneratedPages> {
  const target = regionOf(workload, region);
  const buffers: PageBuffers = {
    data: new Uint8Array(pagesPerChunk * workload.pageSize),
    tags: new Uint8Array((pagesPerChunk * workload.pageSize) / GRANULE_SIZE),
  };
  for (let first = 0; first < target.pageCount; first += pagesPerChunk) {
    yield generatePages(workload, target, first, Math.min(pagesPerChunk, target.pageCount - first), buffers);
  }
}
