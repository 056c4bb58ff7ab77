/**
 * Pointer check: does a tagged pointer's logical tag (bits 59:56) match the
 * allocation tag of the granules it would touch? The same test as GDB's
 * `memory-tag check` and as the hardware's tag check on a load or store.
 *
 * The address is the pointer with its top byte cleared (top-byte-ignore); an
 * access of `length` bytes touches every granule from the pointer's granule
 * to the granule of its last byte.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader } from '../format/model.js';
import { jsonResult } from '../json.js';
import { regionHoldingRange } from './addresses.js';
import { ForensicsArgumentError, RegionNotTaggedError } from './errors.js';

const GRANULE = BigInt(GRANULE_SIZE);
const ADDRESS_MASK = (1n << 56n) - 1n;
/** Mismatching granules listed at most (the count is always exact). */
const MAX_LISTED = 64;

export function logicalTag(pointer: bigint): number {
  return Number((pointer >> 56n) & 0xfn);
}

/** The address a pointer refers to: the pointer without its top byte. */
export function untaggedAddress(pointer: bigint): bigint {
  return pointer & ADDRESS_MASK;
}

export interface PointerCheck {
  readonly pointer: bigint;
  readonly address: bigint;
  readonly logicalTag: number;
  /** The allocation tag of the pointer's own granule. */
  readonly allocationTag: number;
  readonly region: string;
  readonly granulesChecked: number;
  readonly granulesMismatched: number;
  /** The first mismatching granules and their allocation tags. */
  readonly mismatches: { address: bigint; allocationTag: number }[];
  readonly match: boolean;
}

export async function checkPointer(reader: SnapshotReader, pointer: bigint, length = 1n): Promise<PointerCheck> {
  if (pointer < 0n || pointer >= 1n << 64n) throw new ForensicsArgumentError(`pointer ${pointer} is not a 64-bit value`);
  if (length <= 0n) throw new ForensicsArgumentError(`access length must be positive (got ${length})`);
  const address = untaggedAddress(pointer);
  const first = address - (address % GRANULE);
  const end = ((address + length + GRANULE - 1n) / GRANULE) * GRANULE;
  const region = regionHoldingRange(reader.regions, first, end - first);
  if (!region.mte) throw new RegionNotTaggedError(address, region.name);
  const expected = logicalTag(pointer);
  const mismatches: { address: bigint; allocationTag: number }[] = [];
  let mismatched = 0;
  let allocationTag = -1;
  const window = 1n << 16n;
  for (let at = first; at < end; at += window) {
    const tags = await reader.readTags(at, Number(end - at < window ? end - at : window));
    if (allocationTag < 0) allocationTag = tags[0] & 0xf;
    tags.forEach((tag, g) => {
      if ((tag & 0xf) === expected) return;
      mismatched++;
      if (mismatches.length < MAX_LISTED) mismatches.push({ address: at + BigInt(g) * GRANULE, allocationTag: tag & 0xf });
    });
  }
  return jsonResult({
    pointer,
    address,
    logicalTag: expected,
    allocationTag,
    region: region.name,
    granulesChecked: Number((end - first) / GRANULE),
    granulesMismatched: mismatched,
    mismatches,
    match: mismatched === 0,
  });
}
