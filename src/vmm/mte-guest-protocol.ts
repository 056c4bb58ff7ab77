/**
 * What the MTE test guest (testkit/mte-test-guest/mte-test.S) and its VMM agree on:
 * the registers that carry its parameters, the report port's layout, the
 * status codes, its two modes, the VA region it maps through its own page
 * tables and the tag check fault it provokes. The numbers are the .S file's
 * `.equ`s and its header comment.
 *
 * Modes (x4 at entry):
 *
 *   checkpoint  fill -> CHECKPOINT -> (the VMM saves, restores, resumes) -> verify
 *               -> VERIFIED -> (run once more) the deliberate tag check fault
 *   mutator     fill -> PROGRESS(0) -> [the VMM answers COMMAND with n > 0: n
 *               mutation steps -> PROGRESS(steps)]* -> the VMM answers 0 -> verify
 *               -> VERIFIED -> (run once more) the deliberate tag check fault
 *
 * In mutator mode step s (from 0) changes fill granule (s * MUTATOR.p) mod
 * count with one STGP: tag v >> 60, words v and s, v = splitmix64(seed +
 * (s + 1) * golden) (mutatorStepValue). The state after N steps has a closed
 * form per granule (its last step s < N with s = granule * MUTATOR.pInverse
 * mod count, else its fill value), which the guest checks itself when told
 * to verify and a VMM can compute (testkit/kvm-lab/mte-guest-pattern.ts).
 * Every PROGRESS is a pause point: completing the pending exit there
 * (KvmVcpu.completePendingExit) leaves the vCPU at the COMMAND load, a state
 * a snapshot can hold; the restored guest asks for its next command.
 *
 * In both modes the guest writes, through its TTBR1 mapping, the VA region
 * (VA_REGION, vaRegionGranule): forensics can check its translation of
 * guest virtual addresses against the real MMU's.
 */
import { VmsnapError } from '../format/errors.js';
import { xRegisterId } from '../vm/arm64-registers.js';
import type { MmioAutoAnswers } from './vcpu-thread-protocol.js';

/** Report port registers: offsets from the port's IPA. COMMAND is a load (mutator mode); the others are stores. */
export const PORT = { status: 0x00n, address: 0x08n, expected: 0x10n, actual: 0x18n, command: 0x20n } as const;
export const PORT_SIZE = 0x28n;

export const STATUS = {
  checkpoint: 1n,
  verified: 2n,
  tagMismatch: 3n,
  dataMismatch: 4n,
  exception: 5n,
  progress: 6n,
  noFault: 7n,
} as const;

/** x4 at entry. */
export const GUEST_MODE = { checkpoint: 0n, mutator: 1n } as const;
export type GuestMode = keyof typeof GUEST_MODE;

/** The entry registers: x0 fill base, x1 fill length, x2 seed, x3 report port, x4 mode, x5 VA region IPA. */
export const PARAMETER_REGISTERS = {
  fillBase: xRegisterId(0),
  fillLength: xRegisterId(1),
  seed: xRegisterId(2),
  port: xRegisterId(3),
  mode: xRegisterId(4),
  vaRegion: xRegisterId(5),
} as const;

/** Where the guest runs. The fill must share the code's 1 GiB block and the port must not. */
export interface MteGuestLayout {
  /** IPA of the RAM slot; the image is loaded and entered at its first byte. */
  readonly ramBase: bigint;
  /** Must hold the image, its page tables, the fill and, after it, the VA region (vaRegionIpa). */
  readonly ramSize: bigint;
  /** Offset in RAM of the tagged pattern (leaves room for the image and its page tables). */
  readonly fillOffset: bigint;
  readonly fillLength: bigint;
  readonly port: bigint;
  /** xorshift64 seed, not zero. */
  readonly seed: bigint;
}

const MIB = 1n << 20n;

/**
 * The region the guest maps at a non-identity virtual address with its own
 * stage-1 tables (TTBR1_EL1, 4 KiB granule, TCR_EL1.T1SZ 25: 39-bit VAs,
 * walks from level 1). Its first `blockSize` bytes are one level-2 block
 * descriptor; the next `blockSize` bytes are 512 level-3 page descriptors in
 * reverse order: VA page i of that half maps IPA page 511 - i.
 */
export const VA_REGION = {
  va: 0xffff_ffc0_1260_0000n,
  size: 4n * MIB,
  blockSize: 2n * MIB,
  pageSize: 4096n,
} as const;

/** The IPA of the VA region's backing memory: the first 2 MiB boundary after the fill. */
export function vaRegionIpa(layout: MteGuestLayout): bigint {
  const fillEnd = layout.ramBase + layout.fillOffset + layout.fillLength;
  return (fillEnd + VA_REGION.blockSize - 1n) & ~(VA_REGION.blockSize - 1n);
}

/** The IPA the guest's tables translate `va` (tag bits ignored, inside VA_REGION) to. */
export function vaRegionTranslate(layout: MteGuestLayout, va: bigint): bigint {
  const untagged = va | (0xffn << 56n);
  const offset = untagged - VA_REGION.va;
  if (offset < 0n || offset >= VA_REGION.size) throw new GuestLayoutError(`VA 0x${va.toString(16)} is outside the VA region`);
  const base = vaRegionIpa(layout);
  if (offset < VA_REGION.blockSize) return base + offset;
  const page = (offset - VA_REGION.blockSize) / VA_REGION.pageSize;
  const pages = VA_REGION.blockSize / VA_REGION.pageSize;
  return base + VA_REGION.blockSize + (pages - 1n - page) * VA_REGION.pageSize + (offset % VA_REGION.pageSize);
}

/** What the guest stored through VA `va` (a granule of the VA region, untagged): tag ((va >> 4) ^ (va >> 12)) & 15, words va and ~va. */
export function vaRegionGranule(va: bigint): { readonly tag: number; readonly words: readonly [bigint, bigint] } {
  const mask = (1n << 64n) - 1n;
  return { tag: Number(((va >> 4n) ^ (va >> 12n)) & 0xfn), words: [va, ~va & mask] };
}

/** The mutator's constants: granule order and the splitmix64 that makes each step's value. */
export const MUTATOR = {
  p: 0x2545_f491_4f6c_dd1dn,
  pInverse: 0x5907_1d96_d81e_cd35n,
  golden: 0x9e37_79b9_7f4a_7c15n,
  mix1: 0xbf58_476d_1ce4_e5b9n,
  mix2: 0x94d0_49bb_1331_11ebn,
} as const;

const MASK64 = (1n << 64n) - 1n;

/** v of mutation step `step`: splitmix64(seed + (step + 1) * golden). Its tag is v >> 60; its words v and step. */
export function mutatorStepValue(seed: bigint, step: bigint): bigint {
  let z = (seed + (step + 1n) * MUTATOR.golden) & MASK64;
  z = ((z ^ (z >> 30n)) * MUTATOR.mix1) & MASK64;
  z = ((z ^ (z >> 27n)) * MUTATOR.mix2) & MASK64;
  return z ^ (z >> 31n);
}

/** The fill granule (index from the fill base) that mutation step `step` changes. */
export function mutatorGranuleIndex(layout: MteGuestLayout, step: bigint): bigint {
  return (step * MUTATOR.p) & (layout.fillLength / 16n - 1n);
}

/**
 * The last step below `steps` that changed fill granule `index`, or null if
 * none did (the granule still holds its fill value).
 */
export function mutatorLastStep(layout: MteGuestLayout, steps: bigint, index: bigint): bigint | null {
  const count = layout.fillLength / 16n;
  const first = (index * MUTATOR.pInverse) & (count - 1n);
  if (first >= steps) return null;
  return first + ((steps - 1n - first) / count) * count;
}

/** The ESR_EL1 fault status code (DFSC, bits 5:0) of a synchronous tag check fault. */
export const DFSC_SYNC_TAG_CHECK = 0b010001;
/** ESR_EL1.EC of a data abort taken without a change in exception level. */
export const EC_DATA_ABORT_SAME_EL = 0x25;

/** True when `esr` is a synchronous tag check fault on a data access at EL1. */
export function isSyncTagCheckFault(esr: bigint): boolean {
  return Number((esr >> 26n) & 0x3fn) === EC_DATA_ABORT_SAME_EL && Number(esr & 0x3fn) === DFSC_SYNC_TAG_CHECK;
}

/** 4 MiB of tagged pattern in a 10 MiB RAM slot at 1 GiB (the VA region at 6 MiB), the report port where QEMU's virt UART would be. */
export const DEFAULT_LAYOUT: MteGuestLayout = {
  ramBase: 0x4000_0000n,
  ramSize: 10n * MIB,
  fillOffset: 1n * MIB,
  fillLength: 4n * MIB,
  port: 0x0900_0000n,
  seed: 0x9e37_79b9_7f4a_7c15n,
};

/** DEFAULT_LAYOUT with another fill length and seed, and RAM just large enough for the fill and the VA region. */
export function layoutForFill(fillLength: bigint, seed: bigint = DEFAULT_LAYOUT.seed): MteGuestLayout {
  const layout = { ...DEFAULT_LAYOUT, fillLength, seed };
  return { ...layout, ramSize: vaRegionIpa(layout) + VA_REGION.size - layout.ramBase };
}

export class GuestLayoutError extends VmsnapError {
  constructor(reason: string) {
    super('test-guest-layout', 'usage', `MTE test guest layout: ${reason}`);
  }
}

const GIB_SHIFT = 30n;
/** The guest's page tables cover 4 GiB (TCR_EL1.T0SZ = 32) with a 32-bit IPA (IPS). */
const ADDRESS_LIMIT = 1n << 32n;
/** After the image: its TTBR0 level-1 table and its TTBR1 level-1, level-2 and level-3 tables. */
const TABLE_PAGES = 4;

export function checkLayout(layout: MteGuestLayout, imageSize: number, pageSize: number, mode: GuestMode = 'checkpoint'): void {
  const fillStart = layout.ramBase + layout.fillOffset;
  const fillEnd = fillStart + layout.fillLength;
  const tableEnd = layout.ramBase + BigInt(Math.ceil(imageSize / 4096) * 4096 + TABLE_PAGES * 4096);
  if (layout.ramBase % BigInt(pageSize) !== 0n || layout.ramSize % BigInt(pageSize) !== 0n)
    throw new GuestLayoutError('RAM must be host-page aligned');
  if (layout.fillLength <= 0n || layout.fillLength % 16n !== 0n || fillStart % 16n !== 0n)
    throw new GuestLayoutError('the fill must be a nonempty run of 16-byte granules');
  if (fillStart < tableEnd || fillEnd > layout.ramBase + layout.ramSize)
    throw new GuestLayoutError('the fill must lie in RAM after the image and its page tables');
  if (vaRegionIpa(layout) + VA_REGION.size > layout.ramBase + layout.ramSize)
    throw new GuestLayoutError('the VA region (4 MiB at the first 2 MiB boundary after the fill) must lie in RAM');
  if ((fillEnd - 1n) >> GIB_SHIFT !== layout.ramBase >> GIB_SHIFT) throw new GuestLayoutError("the fill must share the code's 1 GiB block");
  if (layout.port >> GIB_SHIFT === layout.ramBase >> GIB_SHIFT)
    throw new GuestLayoutError('the report port must lie in another 1 GiB block than RAM');
  if (layout.port + PORT_SIZE > ADDRESS_LIMIT || layout.ramBase + layout.ramSize > ADDRESS_LIMIT)
    throw new GuestLayoutError('everything must lie below 4 GiB');
  if (layout.seed === 0n || layout.seed >= 1n << 64n) throw new GuestLayoutError('the seed must be a nonzero 64-bit value');
  const granules = layout.fillLength / 16n;
  if (mode === 'mutator' && (granules & (granules - 1n)) !== 0n)
    throw new GuestLayoutError('in mutator mode the fill must be a power of two of granules');
}

/** What the guest reported at a STATUS store. */
export type GuestReport =
  | { readonly status: 'checkpoint' }
  | { readonly status: 'verified' }
  | { readonly status: 'progress'; readonly steps: bigint }
  | { readonly status: 'tag-mismatch' | 'data-mismatch'; readonly address: bigint; readonly expected: bigint; readonly actual: bigint }
  | { readonly status: 'exception'; readonly far: bigint; readonly elr: bigint; readonly esr: bigint }
  | { readonly status: 'no-fault'; readonly address: bigint };

export class GuestProtocolError extends VmsnapError {
  constructor(reason: string) {
    super('test-guest-protocol', 'backend', `MTE test guest: ${reason}`);
  }
}

/** Decodes a STATUS value with the detail words the guest stored before it. */
export function decodeReport(status: bigint, details: { address: bigint; expected: bigint; actual: bigint }): GuestReport {
  switch (status) {
    case STATUS.checkpoint:
      return { status: 'checkpoint' };
    case STATUS.verified:
      return { status: 'verified' };
    case STATUS.progress:
      return { status: 'progress', steps: details.address };
    case STATUS.tagMismatch:
      return { status: 'tag-mismatch', ...details };
    case STATUS.dataMismatch:
      return { status: 'data-mismatch', ...details };
    case STATUS.exception:
      return { status: 'exception', far: details.address, elr: details.expected, esr: details.actual };
    case STATUS.noFault:
      return { status: 'no-fault', address: details.address };
    default:
      throw new GuestProtocolError(`unknown status ${status}`);
  }
}

const hex = (value: bigint): string => `0x${value.toString(16)}`;

export function describeReport(report: GuestReport): string {
  switch (report.status) {
    case 'checkpoint':
      return 'reached the checkpoint';
    case 'verified':
      return 'verified every tag and every word';
    case 'progress':
      return `paused after ${report.steps} mutation steps`;
    case 'tag-mismatch':
      return `found a tag mismatch at ${hex(report.address)}: expected ${hex(report.expected)}, found ${hex(report.actual)}`;
    case 'data-mismatch':
      return `found a data mismatch at ${hex(report.address)}: expected ${hex(report.expected)}, found ${hex(report.actual)}`;
    case 'exception':
      return (
        `took an exception${isSyncTagCheckFault(report.esr) ? ' (synchronous tag check fault)' : ''}: ` +
        `ESR_EL1 ${hex(report.esr)}, FAR_EL1 ${hex(report.far)}, ELR_EL1 ${hex(report.elr)}`
      );
    case 'no-fault':
      return `loaded through ${hex(report.address)}, whose tag is wrong, without a tag check fault`;
  }
}

/**
 * Mutator mode on a vCPU thread that keeps it mutating by itself: every COMMAND load is answered with
 * `stepsPerCommand` and PROGRESS reports (the step count, then the status) are let through, so the guest
 * mutates until the thread is stopped. Any other report stops the thread.
 */
export function mutatorAutoAnswers(port: bigint, stepsPerCommand: bigint): MmioAutoAnswers {
  if (stepsPerCommand <= 0n) throw new GuestProtocolError('the mutator needs a positive number of steps per command');
  return {
    loads: [{ address: port + PORT.command, value: stepsPerCommand }],
    stores: [{ address: port + PORT.address }, { address: port + PORT.status, value: STATUS.progress }],
  };
}
