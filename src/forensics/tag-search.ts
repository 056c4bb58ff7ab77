/**
 * Allocations and searches over a snapshot, in the spirit of crash's `search`
 * and Volatility's scanners: runs of equal allocation tags read as the
 * allocations of a tagging allocator (start, size, tag), the granules that
 * carry one tag, and where a byte pattern occurs in guest memory.
 *
 * All three stream: regions are read front to back one chunk window at a
 * time (region-cursor.ts), runs are carried across windows, and a pattern
 * that straddles two windows is found by keeping its length minus one bytes
 * of the previous window.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader } from '../format/model.js';
import { type IpaRange, pagesInRange, selectRegions } from './addresses.js';
import { ForensicsArgumentError } from './errors.js';
import { pageWindows } from './region-cursor.js';

const GRANULE = BigInt(GRANULE_SIZE);

export interface TagRun {
  readonly region: string;
  readonly start: bigint;
  readonly size: bigint;
  readonly tag: number;
}

export interface TagRunOptions {
  readonly region?: string;
  readonly range?: IpaRange;
  /** Only runs of this tag. */
  readonly tag?: number;
  /** Also runs of tag 0 (free or never-tagged memory); implied by tag: 0. */
  readonly includeZero?: boolean;
}

/**
 * Runs of equal allocation tags in the MTE regions, front to back. A run
 * stops at region edges and at the edges of the range, which is widened to
 * whole pages.
 */
export async function* tagRuns(reader: SnapshotReader, options: TagRunOptions = {}): AsyncGenerator<TagRun> {
  if (options.tag !== undefined && !(Number.isInteger(options.tag) && options.tag >= 0 && options.tag < 16)) {
    throw new ForensicsArgumentError(`tag ${options.tag} is not 0..15`);
  }
  const pageSize = reader.header.pageSize;
  const wanted = (tag: number) => (options.tag === undefined ? tag !== 0 || !!options.includeZero : tag === options.tag);
  for (const region of selectRegions(reader.regions, options.region, options.range)) {
    if (!region.mte) continue;
    const pages = pagesInRange(region, pageSize, options.range);
    if (!pages) continue;
    let run: { start: bigint; granules: bigint; tag: number } | null = null;
    for await (const window of pageWindows(reader, region, pages.firstPage, pages.endPage, { tags: true })) {
      const tags = window.tags!;
      const base = region.guestAddress + BigInt(window.firstPage) * BigInt(pageSize);
      for (let g = 0; g < tags.length; g++) {
        const tag = tags[g] & 0xf;
        if (run && run.tag === tag) {
          run.granules++;
          continue;
        }
        if (run && wanted(run.tag)) yield { region: region.name, start: run.start, size: run.granules * GRANULE, tag: run.tag };
        run = { start: base + BigInt(g) * GRANULE, granules: 1n, tag };
      }
    }
    if (run && wanted(run.tag)) yield { region: region.name, start: run.start, size: run.granules * GRANULE, tag: run.tag };
  }
}

export interface PatternMatch {
  readonly region: string;
  readonly address: bigint;
  /** Allocation tag of the granule where the match starts, or null in a region without tags. */
  readonly tag: number | null;
}

export interface PatternOptions {
  readonly region?: string;
  readonly range?: IpaRange;
  /** Only matches whose address is a multiple of this (1: any byte). */
  readonly alignment?: number;
}

/** Every occurrence of `pattern` in guest memory, in address order; a match may straddle chunk windows, not regions. */
export async function* searchBytes(
  reader: SnapshotReader,
  pattern: Uint8Array,
  options: PatternOptions = {},
): AsyncGenerator<PatternMatch> {
  if (pattern.length === 0 || pattern.length > 4096)
    throw new ForensicsArgumentError(`a search pattern has 1 to 4096 bytes (got ${pattern.length})`);
  const alignment = BigInt(options.alignment ?? 1);
  if (alignment < 1n) throw new ForensicsArgumentError('alignment must be at least 1');
  const pageSize = reader.header.pageSize;
  const needle = Buffer.from(pattern);
  const keep = pattern.length - 1;
  for (const region of selectRegions(reader.regions, options.region, options.range)) {
    const pages = pagesInRange(region, pageSize, options.range);
    if (!pages) continue;
    // The last pattern.length - 1 bytes before the window (and their granules' tags), for a match that straddles windows.
    let carry = Buffer.alloc(0);
    let carryTags: Uint8Array = new Uint8Array(0);
    for await (const window of pageWindows(reader, region, pages.firstPage, pages.endPage, { data: true, tags: true })) {
      const data = Buffer.from(window.data!.buffer, window.data!.byteOffset, window.data!.length);
      const windowBase = region.guestAddress + BigInt(window.firstPage) * BigInt(pageSize);
      const tags = window.tags;
      const tagAt = (at: number) => {
        const granule = Math.floor(at / GRANULE_SIZE);
        return granule >= 0 ? tags![granule] & 0xf : carryTags[carryTags.length + granule] & 0xf;
      };
      const match = (at: number): PatternMatch | null => {
        const address = windowBase + BigInt(at);
        if (address % alignment) return null;
        if (options.range && (address < options.range.start || address + BigInt(pattern.length) > options.range.end)) return null;
        return { region: region.name, address, tag: tags ? tagAt(at) : null };
      };
      // Matches that start in the carry: searched in the carry and the window's first bytes only (the window is reused memory, not
      // copied), then the window's own.
      const seam = Buffer.concat([carry, data.subarray(0, keep)]);
      for (let at = seam.indexOf(needle); at >= 0 && at < carry.length; at = seam.indexOf(needle, at + 1)) {
        const found = match(at - carry.length);
        if (found) yield found;
      }
      for (let at = data.indexOf(needle); at >= 0; at = data.indexOf(needle, at + 1)) {
        const found = match(at);
        if (found) yield found;
      }
      // The new carry: the last `keep` bytes of carry + window, copied out of the reused window.
      const kept = Math.min(keep, carry.length + data.length);
      carryTags = tags ? tags.slice(tags.length - Math.ceil(kept / GRANULE_SIZE) - 1) : new Uint8Array(0);
      carry =
        data.length >= keep
          ? Buffer.from(data.subarray(data.length - keep))
          : Buffer.concat([carry, data]).subarray(carry.length + data.length - kept);
    }
  }
}

/** "de ad be ef", "deadbeef" or "0xdeadbeef" as bytes. */
export function parseHexBytes(text: string): Uint8Array {
  const digits = text.replace(/^0x/i, '').replace(/[\s:_-]/g, '');
  if (!/^([0-9a-f]{2})+$/i.test(digits)) throw new ForensicsArgumentError(`"${text}" is not a sequence of hex bytes`);
  return Uint8Array.from(digits.match(/../g)!, (pair) => Number.parseInt(pair, 16));
}
