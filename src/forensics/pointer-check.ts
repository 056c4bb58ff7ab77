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
import { regionPieces } from './addresses.js';
import { ForensicsArgumentError, RegionNotTaggedError } from './errors.js';
import type { VirtualAddressSpace } from './virtual-addresses.js';

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
  /** The pointer without its top byte: an IPA, or a virtual address when checked through page tables. */
  readonly address: bigint;
  /** Where the pointer's granule is in guest memory (the address itself when it is an IPA). */
  readonly ipa: bigint;
  readonly virtual: boolean;
  readonly logicalTag: number;
  /** The allocation tag of the pointer's own granule. */
  readonly allocationTag: number;
  /** The region of the pointer's own granule. */
  readonly region: string;
  readonly granulesChecked: number;
  readonly granulesMismatched: number;
  /** The first mismatching granules (virtual addresses when checked through page tables), their IPAs and allocation tags. */
  readonly mismatches: { address: bigint; ipa: bigint; allocationTag: number }[];
  readonly match: boolean;
}

/**
 * Checks every granule an access of `length` bytes through `pointer` touches.
 * With `space`, the pointer is a guest virtual address, translated page by
 * page through the saved page tables; without, its address bits are an IPA.
 * The access may cross from one region into an adjacent one (both tagged).
 */
export async function checkPointer(
  reader: SnapshotReader,
  pointer: bigint,
  length = 1n,
  space?: VirtualAddressSpace,
): Promise<PointerCheck> {
  if (pointer < 0n || pointer >= 1n << 64n) throw new ForensicsArgumentError(`pointer ${pointer} is not a 64-bit value`);
  if (length <= 0n) throw new ForensicsArgumentError(`access length must be positive (got ${length})`);
  const address = space ? space.untagged(pointer) : untaggedAddress(pointer);
  const first = address - (address % GRANULE);
  const end = ((address + length + GRANULE - 1n) / GRANULE) * GRANULE;
  const physical = space ? await space.pieces(first, end - first) : [{ virtualAddress: first, ipa: first, length: end - first }];
  const expected = logicalTag(pointer);
  const mismatches: { address: bigint; ipa: bigint; allocationTag: number }[] = [];
  let mismatched = 0;
  let allocationTag = -1;
  let ownRegion = '';
  const window = 1n << 16n;
  for (const piece of physical) {
    const shift = piece.virtualAddress - piece.ipa;
    for (const { region, start, end: stop } of regionPieces(reader.regions, piece.ipa, piece.length)) {
      if (!region.mte) throw new RegionNotTaggedError(start, region.name);
      if (!ownRegion) ownRegion = region.name;
      for (let at = start; at < stop; at += window) {
        const tags = await reader.readTags(at, Number(stop - at < window ? stop - at : window));
        if (allocationTag < 0) allocationTag = tags[0] & 0xf;
        tags.forEach((tag, g) => {
          if ((tag & 0xf) === expected) return;
          mismatched++;
          const ipa = at + BigInt(g) * GRANULE;
          if (mismatches.length < MAX_LISTED) mismatches.push({ address: ipa + shift, ipa, allocationTag: tag & 0xf });
        });
      }
    }
  }
  return jsonResult({
    pointer,
    address,
    ipa: physical[0].ipa + (address - first),
    virtual: !!space,
    logicalTag: expected,
    allocationTag,
    region: ownRegion,
    granulesChecked: Number((end - first) / GRANULE),
    granulesMismatched: mismatched,
    mismatches,
    match: mismatched === 0,
  });
}
