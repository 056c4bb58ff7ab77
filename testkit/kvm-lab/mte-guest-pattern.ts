/**
 * The pattern the MTE test guest writes, computed on the host: granule i of
 * the fill gets the tag r >> 60 and the words r and r ^ address, where r is
 * the (i+1)-th value of xorshift64 (13, 7, 17) from the seed. Lets the VMM
 * check what the guest stored, through FROM_GUEST and the RAM mapping; and
 * the same after the mutator's steps.
 */
import { type MteGuestLayout, mutatorLastStep, mutatorStepValue } from '../../src/vmm/mte-guest-protocol.js';

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

/**
 * The state of fill granule `index` after `steps` mutator steps: its last
 * mutation (tag v >> 60, words v and the step), else its fill value. The
 * closed form of src/vmm/mte-guest-protocol.ts, as the guest checks it.
 */
export function mutatedGranule(layout: MteGuestLayout, steps: bigint, index: number): GranulePattern {
  const step = mutatorLastStep(layout, steps, BigInt(index));
  if (step === null) return fillGranule(layout, index);
  const value = mutatorStepValue(layout.seed, step);
  return { tag: Number(value >> 60n), words: [value, step] };
}

/** The fill value of one granule (walks the xorshift sequence up to it: use forEachGranule for many). */
function fillGranule(layout: MteGuestLayout, index: number): GranulePattern {
  let state = layout.seed;
  for (let i = 0; i <= index; i++) state = next(state);
  const address = layout.ramBase + layout.fillOffset + BigInt(index) * 16n;
  return { tag: Number(state >> 60n), words: [state, state ^ address] };
}

/** Calls `visit` for each fill granule with its state after `steps` mutator steps, in address order. */
export function forEachMutatedGranule(
  layout: MteGuestLayout,
  steps: bigint,
  visit: (index: number, address: bigint, pattern: GranulePattern) => void,
): void {
  forEachGranule(layout, (index, address, fill) => {
    const step = mutatorLastStep(layout, steps, BigInt(index));
    if (step === null) visit(index, address, fill);
    else {
      const value = mutatorStepValue(layout.seed, step);
      visit(index, address, { tag: Number(value >> 60n), words: [value, step] });
    }
  });
}
