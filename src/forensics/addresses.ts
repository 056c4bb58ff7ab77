/**
 * Guest addresses as the commands take them, and the regions that hold them.
 * An IPA range is half-open: [start, end).
 */
import type { SnapshotRegion } from '../format/model.js';
import { AddressNotMappedError, ForensicsArgumentError, hex } from './errors.js';

/** A half-open range of guest physical addresses. */
export interface IpaRange {
  readonly start: bigint;
  readonly end: bigint;
}

const SIZE_SUFFIX: Record<string, bigint> = { '': 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n };

/** Parses "0x40001000", "1073741824", "4k", "2M" (sizes are binary). */
export function parseAddress(text: string, what = 'address'): bigint {
  const match = /^\s*(0x[0-9a-f_]+|[0-9_]+)\s*([kmgt]?)i?b?\s*$/i.exec(text);
  if (!match) throw new ForensicsArgumentError(`${what} "${text}" is not a number (decimal, 0x-hex, optional K/M/G suffix)`);
  const digits = match[1].replace(/_/g, '');
  return BigInt(digits) * SIZE_SUFFIX[match[2].toLowerCase()];
}

/** Parses "A-B" (end exclusive) or "A+LENGTH". */
export function parseIpaRange(text: string): IpaRange {
  const plus = text.indexOf('+');
  const dash = text.indexOf('-');
  let range: IpaRange;
  if (plus > 0) {
    const start = parseAddress(text.slice(0, plus), 'range start');
    range = { start, end: start + parseAddress(text.slice(plus + 1), 'range length') };
  } else if (dash > 0) {
    range = { start: parseAddress(text.slice(0, dash), 'range start'), end: parseAddress(text.slice(dash + 1), 'range end') };
  } else {
    throw new ForensicsArgumentError(`IPA range "${text}" must be START-END (end exclusive) or START+LENGTH`);
  }
  if (range.end <= range.start) throw new ForensicsArgumentError(`IPA range "${text}" is empty`);
  return range;
}

export function regionEnd(region: SnapshotRegion): bigint {
  return region.guestAddress + region.size;
}

export function regionHolding(regions: readonly SnapshotRegion[], guestAddress: bigint): SnapshotRegion | undefined {
  return regions.find((r) => guestAddress >= r.guestAddress && guestAddress < regionEnd(r));
}

/** A piece of a guest range inside one region. */
export interface RegionPiece {
  readonly region: SnapshotRegion;
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * [guestAddress, guestAddress + length) cut at region boundaries. A range may
 * run from one region into the next when they are adjacent (process cores
 * map neighbouring mappings back to back); a hole is refused, naming where.
 */
export function regionPieces(regions: readonly SnapshotRegion[], guestAddress: bigint, length: bigint): RegionPiece[] {
  const pieces: RegionPiece[] = [];
  const end = guestAddress + length;
  let at = guestAddress;
  while (at < end) {
    const region = regionHolding(regions, at);
    if (!region) {
      const previous = pieces.at(-1)?.region;
      if (!previous) throw new AddressNotMappedError(at);
      throw new AddressNotMappedError(
        end - 1n,
        `the range from ${hex(guestAddress)} runs past the end of region "${previous.name}" (${hex(regionEnd(previous))}) into no region`,
      );
    }
    const stop = regionEnd(region) < end ? regionEnd(region) : end;
    pieces.push({ region, start: at, end: stop });
    at = stop;
  }
  return pieces;
}

/** The pages of `region` that overlap `range` (all of them when range is undefined), as [firstPage, endPage). */
export function pagesInRange(region: SnapshotRegion, pageSize: number, range?: IpaRange): { firstPage: number; endPage: number } | null {
  const size = BigInt(pageSize);
  const start = range && range.start > region.guestAddress ? range.start : region.guestAddress;
  const end = range && range.end < regionEnd(region) ? range.end : regionEnd(region);
  if (end <= start) return null;
  return {
    firstPage: Number((start - region.guestAddress) / size),
    endPage: Number((end - region.guestAddress + size - 1n) / size),
  };
}

/** Picks regions by name (when given) and by overlap with the range (when given). */
export function selectRegions(regions: readonly SnapshotRegion[], name?: string, range?: IpaRange): SnapshotRegion[] {
  if (name !== undefined && !regions.some((r) => r.name === name)) {
    throw new ForensicsArgumentError(`no region named "${name}"; the snapshot has: ${regions.map((r) => r.name).join(', ')}`);
  }
  return regions.filter(
    (r) => (name === undefined || r.name === name) && (!range || (range.start < regionEnd(r) && range.end > r.guestAddress)),
  );
}
