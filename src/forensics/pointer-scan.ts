/**
 * The whole-snapshot stale-pointer scan: every aligned 8-byte word of guest
 * memory that reads as a tagged pointer into tagged memory is checked
 * against the allocation tag of the granule it points to, as the hardware
 * would check it on a load through that pointer. Mismatches are the
 * forensic finding MTE exists for: a pointer kept past a free (the memory
 * was retagged), or one that strayed into a neighbour.
 *
 * A word is a candidate when its logical tag (bits 59:56) is not 0 (or
 * always, with `untagged`) and its address lands in an MTE region: bits 55:0
 * as an IPA, or, with an address space, the word as a guest virtual address
 * through the saved page tables (where tag 0xf in the TTBR1 half is "match
 * all" when TCR_EL1.TCMA1 is set, and is skipped).
 *
 * Bounded memory: memory is read one chunk window at a time, front to back;
 * candidates are gathered in batches of at most `batchSize`, whose targets
 * are looked up in IPA order (so each tag chunk is decoded about once per
 * batch, through GuestMemory's cache), then reported in the order found.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader, SnapshotRegion } from '../format/model.js';
import { regionEnd } from './addresses.js';
import { GuestMemory } from './guest-memory.js';
import { pageWindows } from './region-cursor.js';
import type { VirtualAddressSpace } from './virtual-addresses.js';

const GRANULE = BigInt(GRANULE_SIZE);
const TWO32 = 4294967296;

export interface AllocationRun {
  readonly start: bigint;
  readonly size: bigint;
  readonly tag: number;
}

export interface StalePointer {
  /** The 64-bit word as found. */
  readonly pointer: bigint;
  /** IPA of the word, and its region. */
  readonly foundAt: bigint;
  readonly foundIn: string;
  /** Where the pointer points in guest memory, and its region. */
  readonly target: bigint;
  readonly targetRegion: string;
  /** The pointer's logical tag (bits 59:56) and the allocation tag of the granule it points to. */
  readonly pointerTag: number;
  readonly memoryTag: number;
  /** The run of equal allocation tags around the target: the allocation it points into (or the free space). */
  readonly run: AllocationRun;
}

export interface RegionScanCounts {
  readonly region: string;
  words: number;
  /** Words that are tagged pointers into tagged memory. */
  candidates: number;
  mismatches: number;
  /** TTBR1 pointers with the match-all tag (TCR_EL1.TCMA1): never checked by the hardware. */
  matchAll: number;
}

export interface PointerScanOptions {
  /** Interpret words as guest virtual addresses of this address space (else bits 55:0 are an IPA). */
  readonly space?: VirtualAddressSpace;
  /** Also check pointers whose logical tag is 0. */
  readonly untagged?: boolean;
  /** Scan only this region (by name). */
  readonly region?: string;
  /** Candidates looked up per batch; bounds memory (26 bytes each, held in columns made once). */
  readonly batchSize?: number;
  readonly onMismatch?: (mismatch: StalePointer) => void;
  /** Bytes scanned so far, of the total. */
  readonly onProgress?: (done: bigint, total: bigint) => void;
}

export interface PointerScanReport {
  readonly mode: 'ipa' | 'va';
  readonly bytesScanned: bigint;
  readonly words: number;
  readonly candidates: number;
  readonly mismatches: number;
  readonly matchAll: number;
  /** Candidates whose virtual address did not translate (VA mode): values that only look like pointers. */
  readonly untranslatable: number;
  readonly regions: RegionScanCounts[];
  readonly seconds: number;
  /** Bytes scanned per second. */
  readonly bytesPerSecond: number;
}

/** A word that may be a pointer, as the scan found it. */
interface Candidate {
  readonly pointer: bigint;
  readonly foundAt: bigint;
  readonly counts: RegionScanCounts;
}

/** IPA ranges of the tagged regions, as numbers (IPAs are below 2^52, exact in a double). */
function taggedRanges(regions: readonly SnapshotRegion[]): { start: number; end: number }[] {
  return regions.filter((r) => r.mte).map((r) => ({ start: Number(r.guestAddress), end: Number(regionEnd(r)) }));
}

export async function scanPointers(reader: SnapshotReader, options: PointerScanOptions = {}): Promise<PointerScanReport> {
  const ownMemory = options.space ? null : new GuestMemory(reader);
  try {
    return await scanRegions(reader, options, ownMemory ?? options.space!.memory);
  } finally {
    // The chunks it holds go back to the reader (the caller's own memory is the caller's to close).
    ownMemory?.close();
  }
}

async function scanRegions(reader: SnapshotReader, options: PointerScanOptions, memory: GuestMemory): Promise<PointerScanReport> {
  const began = performance.now();
  const scanner = new CandidateResolver(memory, options);
  const ranges = taggedRanges(reader.regions);
  const regions = reader.regions.filter((r) => options.region === undefined || r.name === options.region);
  const total = regions.reduce((sum, r) => sum + r.size, 0n);
  const counts: RegionScanCounts[] = [];
  let done = 0n;
  const pageSize = reader.header.pageSize;
  for (const region of regions) {
    const regionCounts: RegionScanCounts = { region: region.name, words: 0, candidates: 0, mismatches: 0, matchAll: 0 };
    counts.push(regionCounts);
    const pages = Number(region.size / BigInt(pageSize));
    for await (const window of pageWindows(reader, region, 0, pages, { data: true })) {
      const data = window.data!;
      const words = new Uint32Array(data.buffer, data.byteOffset, data.length / 4);
      const base = region.guestAddress + BigInt(window.firstPage) * BigInt(pageSize);
      regionCounts.words += words.length / 2;
      for (let w = 0; w < words.length; w += 2) {
        const lo = words[w];
        const hi = words[w + 1];
        if (lo === 0 && hi === 0) continue;
        const tag = (hi >>> 24) & 0xf;
        if (tag === 0 && !options.untagged) continue;
        if (!options.space) {
          const address = (hi & 0xffffff) * TWO32 + lo;
          if (!ranges.some((r) => address >= r.start && address < r.end)) continue;
        }
        await scanner.add({
          pointer: (BigInt(hi) << 32n) | BigInt(lo),
          foundAt: base + BigInt(w * 4),
          counts: regionCounts,
        });
      }
      done += BigInt(window.pageCount * pageSize);
      options.onProgress?.(done, total);
    }
  }
  await scanner.flush();
  const seconds = (performance.now() - began) / 1000;
  const sum = (pick: (c: RegionScanCounts) => number) => counts.reduce((s, c) => s + pick(c), 0);
  return {
    mode: options.space ? 'va' : 'ipa',
    bytesScanned: done,
    words: sum((c) => c.words),
    candidates: sum((c) => c.candidates),
    mismatches: sum((c) => c.mismatches),
    matchAll: sum((c) => c.matchAll),
    untranslatable: scanner.untranslatable,
    regions: counts,
    seconds,
    bytesPerSecond: seconds > 0 ? Number(done) / seconds : 0,
  };
}

/**
 * Gathers candidates, translates them (VA mode), then checks a batch's targets
 * in IPA order. A batch is kept in typed-array columns allocated once, not as
 * an object per candidate with three BigInts (about 130 bytes each): a 16 GiB
 * guest has some 40 thousand candidates, and the batch (up to 65536) held them
 * all, which grew the scan's peak RSS with the guest by 20 MiB (issue 10).
 * IPAs are below 2^52: exact as doubles.
 */
class CandidateResolver {
  private readonly batchSize: number;
  private readonly pointerHigh: Uint32Array;
  private readonly pointerLow: Uint32Array;
  private readonly foundAt: Float64Array;
  private readonly target: Float64Array;
  /** Index into `regionCounts` of the region each candidate was found in. */
  private readonly foundIn: Uint16Array;
  private readonly regionCounts: RegionScanCounts[] = [];
  private length = 0;
  /** VA mode: virtual page -> IPA of the page, or null when it does not translate. */
  private readonly pages = new Map<bigint, bigint | null>();
  untranslatable = 0;

  constructor(
    private readonly memory: GuestMemory,
    private readonly options: PointerScanOptions,
  ) {
    this.batchSize = options.batchSize ?? 65536;
    this.pointerHigh = new Uint32Array(this.batchSize);
    this.pointerLow = new Uint32Array(this.batchSize);
    this.foundAt = new Float64Array(this.batchSize);
    this.target = new Float64Array(this.batchSize);
    this.foundIn = new Uint16Array(this.batchSize);
  }

  async add(candidate: Candidate): Promise<void> {
    const target = this.options.space ? await this.translate(candidate) : candidate.pointer & ((1n << 56n) - 1n);
    if (target === null) return;
    const region = this.memory.regionAt(target);
    if (!region?.mte) return;
    candidate.counts.candidates++;
    let counts = this.regionCounts.indexOf(candidate.counts);
    if (counts < 0) counts = this.regionCounts.push(candidate.counts) - 1;
    const i = this.length++;
    this.pointerHigh[i] = Number(candidate.pointer >> 32n);
    this.pointerLow[i] = Number(candidate.pointer & 0xffff_ffffn);
    this.foundAt[i] = Number(candidate.foundAt);
    this.target[i] = Number(target);
    this.foundIn[i] = counts;
    if (this.length >= this.batchSize) await this.flush();
  }

  /** The IPA of a candidate's virtual address, null when it does not translate or carries the match-all tag. */
  private async translate(candidate: Candidate): Promise<bigint | null> {
    const space = this.options.space!;
    const va = space.untagged(candidate.pointer);
    const half = space.regime.halves[Number((va >> 55n) & 1n)];
    if (space.regime.mmuOn && half.half === 1 && half.matchAllTag && Number((candidate.pointer >> 56n) & 0xfn) === 0xf) {
      candidate.counts.matchAll++;
      return null;
    }
    const shift = 12n; // Cache by 4 KiB virtual page whatever the granule: a smaller key never gives a wrong answer.
    const page = va >> shift;
    let ipaPage = this.pages.get(page);
    if (ipaPage === undefined) {
      try {
        ipaPage = (await space.translate(page << shift)).ipa;
      } catch {
        ipaPage = null;
      }
      if (this.pages.size >= 1 << 16) this.pages.clear();
      this.pages.set(page, ipaPage);
    }
    if (ipaPage === null) {
      this.untranslatable++;
      return null;
    }
    return ipaPage + (va & ((1n << shift) - 1n));
  }

  async flush(): Promise<void> {
    const n = this.length;
    this.length = 0;
    if (!n) return;
    const { target, foundAt } = this;
    // Positions in the batch, by target: each tag chunk is decoded about once per batch.
    const byTarget = new Uint32Array(n);
    for (let i = 0; i < n; i++) byTarget[i] = i;
    byTarget.sort((a, b) => target[a] - target[b]);
    const memoryTags = new Uint8Array(n);
    let mismatches = 0;
    for (const i of byTarget) {
      memoryTags[i] = await this.memory.tagAt(BigInt(target[i]));
      if (memoryTags[i] !== ((this.pointerHigh[i] >>> 24) & 0xf)) byTarget[mismatches++] = i;
    }
    // The mismatches, in the order found.
    const found = byTarget.subarray(0, mismatches).sort((a, b) => foundAt[a] - foundAt[b]);
    for (const i of found) {
      this.regionCounts[this.foundIn[i]].mismatches++;
      if (!this.options.onMismatch) continue;
      const at = BigInt(foundAt[i]);
      const to = BigInt(target[i]);
      this.options.onMismatch({
        pointer: (BigInt(this.pointerHigh[i]) << 32n) | BigInt(this.pointerLow[i]),
        foundAt: at,
        foundIn: this.memory.regionAt(at)!.name,
        target: to,
        targetRegion: this.memory.regionAt(to)!.name,
        pointerTag: (this.pointerHigh[i] >>> 24) & 0xf,
        memoryTag: memoryTags[i],
        run: await allocationRunAt(this.memory, to),
      });
    }
  }
}

/** Granules looked at on each side of a target for its run; a longer run is reported clipped to this. */
const RUN_LIMIT_GRANULES = 1 << 16;
const RUN_WINDOW = 256;

/** The run of granules with the same allocation tag as the one holding `ipa`, inside its region. */
export async function allocationRunAt(memory: GuestMemory, ipa: bigint): Promise<AllocationRun> {
  const region = memory.regionAt(ipa)!;
  const granule = ipa - (ipa % GRANULE);
  const tag = await memory.tagAt(granule);
  const low = region.guestAddress;
  const high = regionEnd(region);
  let start = granule;
  while (start > low && (granule - start) / GRANULE < RUN_LIMIT_GRANULES) {
    const from = start - BigInt(RUN_WINDOW) * GRANULE > low ? start - BigInt(RUN_WINDOW) * GRANULE : low;
    const tags = await memory.readTags(from, Number(start - from));
    let i = tags.length - 1;
    while (i >= 0 && (tags[i] & 0xf) === tag) i--;
    start = from + BigInt(i + 1) * GRANULE;
    if (i >= 0) break;
  }
  let end = granule + GRANULE;
  while (end < high && (end - granule) / GRANULE < RUN_LIMIT_GRANULES) {
    const to = end + BigInt(RUN_WINDOW) * GRANULE < high ? end + BigInt(RUN_WINDOW) * GRANULE : high;
    const tags = await memory.readTags(end, Number(to - end));
    let i = 0;
    while (i < tags.length && (tags[i] & 0xf) === tag) i++;
    end += BigInt(i) * GRANULE;
    if (i < tags.length) break;
  }
  return { start, size: end - start, tag };
}
