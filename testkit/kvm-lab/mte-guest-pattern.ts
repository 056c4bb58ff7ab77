/**
 * The pattern the MTE test guest writes, computed on the host: granule i of
 * the fill gets the tag r >> 60 and the words r and r ^ address, where r is
 * the (i+1)-th value of xorshift64 (13, 7, 17) from the seed. Lets the VMM
 * check what the guest stored, through FROM_GUEST and the RAM mapping.
 */
import type { MteGuestLayout } from '../../src/vmm/mte-guest-protocol.js';

const MASK64 = (1n << 64n) - 1n;

function next(state: bigint): bigint {
  let x = state;
  x ^= (x << 13n) & MASK64;
  x ^= x >> 7n;
  x ^= (x << 17n) & MASK64;
  return x;
}

export interface GranulePattern {
  readonly tag: number;
  readonly words: readonly [bigint, bigint];
}

/** Calls `visit` for each granule of the fill, in address order. */
export function forEachGranule(layout: MteGuestLayout, visit: (index: number, address: bigint, pattern: GranulePattern) => void): void {
  const start = layout.ramBase + layout.fillOffset;
  const count = Number(layout.fillLength / 16n);
  let state = layout.seed;
  for (let index = 0; index < count; index++) {
    state = next(state);
    const address = start + BigInt(index) * 16n;
    visit(index, address, { tag: Number(state >> 60n), words: [state, state ^ address] });
  }
}

/** The expected tag of every granule of the fill. */
export function expectedTags(layout: MteGuestLayout): Uint8Array {
  const tags = new Uint8Array(Number(layout.fillLength / 16n));
  forEachGranule(layout, (index, _address, pattern) => (tags[index] = pattern.tag));
  return tags;
}
