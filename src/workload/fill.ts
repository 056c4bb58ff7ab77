/**
 * Loading a generated guest into any `Vm`: memslots for its regions, then
 * memory and tags chunk by chunk, in the restore order the reference gives
 * (MTE before vCPUs, RAM, then tags; zero pages and all-zero-tag pages are
 * skipped because a fresh VM already reads them as zero).
 */

import { isAllZero } from '../format/bytes.js';
import { GRANULE_SIZE } from '../format/constants.js';
import { forEachRun } from '../format/page-runs.js';
import { writeGuestTags } from '../vm/tag-copy.js';
import { memorySlotSpec, type Vm } from '../vm/vm.js';
import { type GeneratedPages, generateRegionChunks } from './generate.js';
import type { Workload, WorkloadRegion } from './workload-layout.js';

export interface FillStats {
  readonly pages: number;
  /** Pages with a nonzero byte (written with writeMemory). */
  readonly dataPages: number;
  /** Pages with a nonzero tag (written with TO_GUEST). */
  readonly taggedPages: number;
}

/** Enables MTE if a region is tagged and the VM has not, and adds one memslot per region. */
export function addWorkloadSlots(vm: Vm, workload: Workload): void {
  if (!vm.mteEnabled && workload.regions.some((r) => r.mte)) vm.enableMte();
  for (const region of workload.regions) {
    vm.addMemorySlot(memorySlotSpec(region));
  }
}

/** Guest bytes generated so far, of all regions' bytes; called after each chunk. */
export type FillProgress = (bytesDone: bigint, bytesTotal: bigint) => void;

/** Writes every region's memory and tags into `vm`, whose slots must already exist. */
export function fillVm(vm: Vm, workload: Workload, pagesPerChunk = 1024, onProgress?: FillProgress): FillStats {
  let pages = 0;
  let dataPages = 0;
  let taggedPages = 0;
  const bytesTotal = workload.regions.reduce((sum, region) => sum + region.size, 0n);
  let bytesDone = 0n;
  for (const region of workload.regions) {
    for (const chunk of generateRegionChunks(workload, region, pagesPerChunk)) {
      pages += chunk.pageCount;
      dataPages += writeChunkMemory(vm, workload, region, chunk);
      if (region.mte) taggedPages += writeChunkTags(vm, workload, region, chunk);
      bytesDone += BigInt(chunk.pageCount * workload.pageSize);
      onProgress?.(bytesDone, bytesTotal);
    }
  }
  return { pages, dataPages, taggedPages };
}

/** writeMemory for each run of pages that are not all zero. */
function writeChunkMemory(vm: Vm, workload: Workload, region: WorkloadRegion, chunk: GeneratedPages): number {
  const bytes = workload.pageSize;
  const pageData = (page: number): Uint8Array => chunk.data.subarray(page * bytes, (page + 1) * bytes);
  return forEachRun(
    chunk.pageCount,
    (page) => !isAllZero(pageData(page)),
    (first, count) => {
      vm.writeMemory(pageAddress(workload, region, chunk.firstPage + first), chunk.data.subarray(first * bytes, (first + count) * bytes));
    },
  );
}

/** TO_GUEST for each run of pages with a nonzero tag. */
function writeChunkTags(vm: Vm, workload: Workload, region: WorkloadRegion, chunk: GeneratedPages): number {
  const perPage = workload.pageSize / GRANULE_SIZE;
  const pageTags = (page: number): Uint8Array => chunk.tags.subarray(page * perPage, (page + 1) * perPage);
  return forEachRun(
    chunk.pageCount,
    (page) => !isAllZero(pageTags(page)),
    (first, count) => {
      writeGuestTags(
        vm,
        pageAddress(workload, region, chunk.firstPage + first),
        chunk.tags.subarray(first * perPage, (first + count) * perPage),
      );
    },
  );
}

function pageAddress(workload: Workload, region: WorkloadRegion, page: number): bigint {
  return region.guestAddress + BigInt(page) * BigInt(workload.pageSize);
}
