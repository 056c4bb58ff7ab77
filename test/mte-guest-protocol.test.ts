/**
 * The MTE test guest's protocol on the host side, without KVM: the
 * mutator's closed form against a step-by-step replay, the VA region's
 * translation as the guest's tables define it, the tag check fault's ESR
 * decoding, and the constants shared with mte-test.S.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  checkLayout,
  DEFAULT_LAYOUT,
  decodeReport,
  describeReport,
  GuestLayoutError,
  GuestProtocolError,
  isSyncTagCheckFault,
  layoutForFill,
  MUTATOR,
  mutatorAutoAnswers,
  mutatorGranuleIndex,
  mutatorLastStep,
  mutatorStepValue,
  PORT,
  STATUS,
  VA_REGION,
  vaRegionGranule,
  vaRegionIpa,
  vaRegionTranslate,
} from '../src/vmm/mte-guest-protocol.js';
import { forEachGranule, forEachMutatedGranule, mutatedGranule } from '../testkit/kvm-lab/mte-guest-pattern.js';

const source = readFileSync(resolve(import.meta.dirname, '../testkit/mte-test-guest/mte-test.S'), 'utf8');
const equ = (name: string): bigint => {
  const match = new RegExp(`\\.equ\\s+${name},\\s*(0x[0-9a-f]+|\\d+)\\s*$`, 'm').exec(source);
  if (!match) throw new Error(`no .equ ${name} in mte-test.S`);
  return BigInt(match[1]);
};

describe('constants shared with mte-test.S', () => {
  test('mutator, VA region, port and status numbers are the same on both sides', () => {
    expect(equ('MUTATOR_P')).toBe(MUTATOR.p);
    expect(equ('MUTATOR_PINV')).toBe(MUTATOR.pInverse);
    expect(equ('GOLDEN')).toBe(MUTATOR.golden);
    expect(equ('MIX1')).toBe(MUTATOR.mix1);
    expect(equ('MIX2')).toBe(MUTATOR.mix2);
    expect(equ('VA_BASE')).toBe(VA_REGION.va);
    expect(equ('VA_REGION_SIZE')).toBe(VA_REGION.size);
    expect(equ('VA_BLOCK_SIZE')).toBe(VA_REGION.blockSize);
    expect(equ('VA_L1_INDEX')).toBe((VA_REGION.va >> 30n) & 0x1ffn);
    expect(equ('VA_L2_INDEX')).toBe((VA_REGION.va >> 21n) & 0x1ffn);
    expect(equ('PORT_COMMAND')).toBe(PORT.command);
    expect(equ('STATUS_PROGRESS')).toBe(STATUS.progress);
    expect(equ('STATUS_NO_FAULT')).toBe(STATUS.noFault);
  });

  test('P is odd and pInverse is its inverse modulo 2^64', () => {
    expect(MUTATOR.p & 1n).toBe(1n);
    expect((MUTATOR.p * MUTATOR.pInverse) & ((1n << 64n) - 1n)).toBe(1n);
  });
});

describe('mutator', () => {
  test('step values are splitmix64 (its first output from state 0 is 0xe220a8397b1dcdaf)', () => {
    expect(mutatorStepValue(0n, 0n)).toBe(0xe220a8397b1dcdafn);
    expect(mutatorStepValue(0n, 1n)).toBe(0x6e789e6aa1b965f4n);
  });

  test('the closed form per granule equals replaying every step, below, at and past the granule count', () => {
    const layout = { ...DEFAULT_LAYOUT, fillLength: 64n * 16n, seed: 5n };
    const fill: { tag: number; words: readonly [bigint, bigint] }[] = [];
    forEachGranule(layout, (_index, _address, pattern) => fill.push(pattern));
    for (const steps of [0n, 1n, 37n, 64n, 65n, 200n]) {
      const replay = fill.map((pattern) => ({ tag: pattern.tag, words: [...pattern.words] }));
      for (let step = 0n; step < steps; step++) {
        const value = mutatorStepValue(layout.seed, step);
        replay[Number(mutatorGranuleIndex(layout, step))] = { tag: Number(value >> 60n), words: [value, step] };
      }
      const closed: { tag: number; words: bigint[] }[] = [];
      forEachMutatedGranule(layout, steps, (_index, _address, pattern) => closed.push({ tag: pattern.tag, words: [...pattern.words] }));
      expect(closed).toEqual(replay);
      for (const index of [0, 17, 63])
        expect({ ...mutatedGranule(layout, steps, index), words: [...mutatedGranule(layout, steps, index).words] }).toEqual(replay[index]);
    }
  });

  test('each pass over the fill visits every granule once; the last step is null for untouched granules', () => {
    const layout = { ...DEFAULT_LAYOUT, fillLength: 256n * 16n };
    const seen = new Set<bigint>();
    for (let step = 0n; step < 256n; step++) seen.add(mutatorGranuleIndex(layout, step));
    expect(seen.size).toBe(256);
    const untouched = [...Array(256).keys()].filter((index) => mutatorLastStep(layout, 10n, BigInt(index)) === null);
    expect(untouched).toHaveLength(246);
  });

  test('a vCPU thread that keeps the mutator going answers COMMAND and lets PROGRESS through, nothing else', () => {
    const answers = mutatorAutoAnswers(0x0900_0000n, 512n);
    expect(answers.loads).toEqual([{ address: 0x0900_0000n + PORT.command, value: 512n }]);
    expect(answers.stores).toEqual([
      { address: 0x0900_0000n + PORT.address },
      { address: 0x0900_0000n + PORT.status, value: STATUS.progress },
    ]);
    expect(() => mutatorAutoAnswers(0x0900_0000n, 0n)).toThrow(GuestProtocolError);
  });

  test('mutator mode needs a power of two of granules', () => {
    const layout = layoutForFill(3n << 20n);
    expect(() => checkLayout(layout, 4096, 4096)).not.toThrow();
    expect(() => checkLayout(layout, 4096, 4096, 'mutator')).toThrow(GuestLayoutError);
    expect(() => checkLayout(DEFAULT_LAYOUT, 4096, 16384, 'mutator')).not.toThrow();
  });
});

describe('VA region', () => {
  const layout = DEFAULT_LAYOUT;

  test('lies after the fill on a 2 MiB boundary, inside RAM; a RAM too small for it is refused', () => {
    expect(vaRegionIpa(layout)).toBe(layout.ramBase + 6n * (1n << 20n));
    expect(() => checkLayout({ ...layout, ramSize: 8n << 20n }, 4096, 4096)).toThrow(/VA region/);
    expect(layoutForFill(4n << 20n)).toEqual(layout);
  });

  test('the block half is linear, the page half maps page i to page 511 - i, and every IPA is hit once', () => {
    const base = vaRegionIpa(layout);
    expect(vaRegionTranslate(layout, VA_REGION.va)).toBe(base);
    expect(vaRegionTranslate(layout, VA_REGION.va + 0x1f_fff8n)).toBe(base + 0x1f_fff8n);
    expect(vaRegionTranslate(layout, VA_REGION.va + VA_REGION.blockSize)).toBe(base + VA_REGION.size - 4096n);
    expect(vaRegionTranslate(layout, VA_REGION.va + VA_REGION.blockSize + 4096n + 0x10n)).toBe(base + VA_REGION.size - 2n * 4096n + 0x10n);
    expect(vaRegionTranslate(layout, VA_REGION.va + VA_REGION.size - 1n)).toBe(base + VA_REGION.blockSize + 4095n);
    // A tagged pointer translates like its untagged VA (TBI1).
    const tagged = (VA_REGION.va & ~(0xfn << 56n)) | (0x3n << 56n);
    expect(vaRegionTranslate(layout, tagged + 0x20n)).toBe(base + 0x20n);
    const pages = new Set<bigint>();
    for (let va = VA_REGION.va; va < VA_REGION.va + VA_REGION.size; va += 4096n) pages.add(vaRegionTranslate(layout, va));
    expect(pages.size).toBe(1024);
    expect(() => vaRegionTranslate(layout, VA_REGION.va - 16n)).toThrow(GuestLayoutError);
  });

  test('the pattern: words VA and ~VA, tags ((va >> 4) ^ (va >> 12)) & 15, all 16 of them', () => {
    expect(vaRegionGranule(VA_REGION.va + 0x1230n)).toEqual({
      tag: Number((((VA_REGION.va + 0x1230n) >> 4n) ^ ((VA_REGION.va + 0x1230n) >> 12n)) & 15n),
      words: [VA_REGION.va + 0x1230n, ~(VA_REGION.va + 0x1230n) & ((1n << 64n) - 1n)],
    });
    const tags = new Set<number>();
    for (let va = VA_REGION.va; va < VA_REGION.va + 4096n; va += 16n) tags.add(vaRegionGranule(va).tag);
    expect(tags.size).toBe(16);
  });
});

describe('reports', () => {
  test('progress carries the step count, no-fault the pointer', () => {
    expect(decodeReport(STATUS.progress, { address: 1234n, expected: 0n, actual: 0n })).toEqual({ status: 'progress', steps: 1234n });
    expect(decodeReport(STATUS.noFault, { address: 0x540_0000_4010_0000n, expected: 0n, actual: 0n })).toEqual({
      status: 'no-fault',
      address: 0x540_0000_4010_0000n,
    });
  });

  test('a synchronous tag check fault is EC 0x25 with DFSC 0b010001; other aborts are not', () => {
    expect(isSyncTagCheckFault(0x9600_0011n)).toBe(true);
    expect(isSyncTagCheckFault(0x9600_0010n)).toBe(false);
    expect(isSyncTagCheckFault(0x9200_0011n)).toBe(false);
    expect(describeReport({ status: 'exception', esr: 0x9600_0011n, far: 0x540_0000_4010_0000n, elr: 0x4000_0300n })).toMatch(
      /synchronous tag check fault/,
    );
  });
});
