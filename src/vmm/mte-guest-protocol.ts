/**
 * What the MTE test guest (testkit/mte-test-guest/mte-test.S) and its VMM agree on:
 * the registers that carry its parameters, the report port's layout and the
 * status codes. The numbers are the .S file's `.equ`s and its header comment.
 */
import { VmsnapError } from '../format/errors.js';
import { xRegisterId } from '../vm/arm64-registers.js';

/** Report port registers: offsets from the port's IPA. */
export const PORT = { status: 0x00n, address: 0x08n, expected: 0x10n, actual: 0x18n } as const;
export const PORT_SIZE = 0x20n;

export const STATUS = { checkpoint: 1n, verified: 2n, tagMismatch: 3n, dataMismatch: 4n, exception: 5n } as const;

/** The entry registers: x0 fill base, x1 fill length, x2 seed, x3 report port. */
export const PARAMETER_REGISTERS = {
  fillBase: xRegisterId(0),
  fillLength: xRegisterId(1),
  seed: xRegisterId(2),
  port: xRegisterId(3),
} as const;

/** Where the guest runs. The fill must share the code's 1 GiB block and the port must not. */
export interface MteGuestLayout {
  /** IPA of the RAM slot; the image is loaded and entered at its first byte. */
  readonly ramBase: bigint;
  readonly ramSize: bigint;
  /** Offset in RAM of the tagged pattern (leaves room for the image and its page table). */
  readonly fillOffset: bigint;
  readonly fillLength: bigint;
  readonly port: bigint;
  /** xorshift64 seed, not zero. */
  readonly seed: bigint;
}

const MIB = 1n << 20n;

/** 4 MiB of tagged pattern in an 8 MiB RAM slot at 1 GiB, the report port where QEMU's virt UART would be. */
export const DEFAULT_LAYOUT: MteGuestLayout = {
  ramBase: 0x4000_0000n,
  ramSize: 8n * MIB,
  fillOffset: 1n * MIB,
  fillLength: 4n * MIB,
  port: 0x0900_0000n,
  seed: 0x9e37_79b9_7f4a_7c15n,
};

export class GuestLayoutError extends VmsnapError {
  constructor(reason: string) {
    super('test-guest-layout', 'usage', `MTE test guest layout: ${reason}`);
  }
}

const GIB_SHIFT = 30n;
/** The guest's page tables cover 4 GiB (TCR_EL1.T0SZ = 32). */
const ADDRESS_LIMIT = 1n << 32n;

export function checkLayout(layout: MteGuestLayout, imageSize: number, pageSize: number): void {
  const fillStart = layout.ramBase + layout.fillOffset;
  const fillEnd = fillStart + layout.fillLength;
  // The image, then one page for the guest's level-1 table, then the fill.
  const tableEnd = layout.ramBase + BigInt(Math.ceil(imageSize / 4096) * 4096 + 4096);
  if (layout.ramBase % BigInt(pageSize) !== 0n || layout.ramSize % BigInt(pageSize) !== 0n)
    throw new GuestLayoutError('RAM must be host-page aligned');
  if (layout.fillLength <= 0n || layout.fillLength % 16n !== 0n || fillStart % 16n !== 0n)
    throw new GuestLayoutError('the fill must be a nonempty run of 16-byte granules');
  if (fillStart < tableEnd || fillEnd > layout.ramBase + layout.ramSize)
    throw new GuestLayoutError('the fill must lie in RAM after the image and its page table');
  if ((fillEnd - 1n) >> GIB_SHIFT !== layout.ramBase >> GIB_SHIFT) throw new GuestLayoutError("the fill must share the code's 1 GiB block");
  if (layout.port >> GIB_SHIFT === layout.ramBase >> GIB_SHIFT)
    throw new GuestLayoutError('the report port must lie in another 1 GiB block than RAM');
  if (layout.port + PORT_SIZE > ADDRESS_LIMIT || layout.ramBase + layout.ramSize > ADDRESS_LIMIT)
    throw new GuestLayoutError('everything must lie below 4 GiB');
  if (layout.seed === 0n || layout.seed >= 1n << 64n) throw new GuestLayoutError('the seed must be a nonzero 64-bit value');
}

/** What the guest reported at a STATUS store. */
export type GuestReport =
  | { readonly status: 'checkpoint' }
  | { readonly status: 'verified' }
  | { readonly status: 'tag-mismatch' | 'data-mismatch'; readonly address: bigint; readonly expected: bigint; readonly actual: bigint }
  | { readonly status: 'exception'; readonly far: bigint; readonly elr: bigint; readonly esr: bigint };

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
    case STATUS.tagMismatch:
      return { status: 'tag-mismatch', ...details };
    case STATUS.dataMismatch:
      return { status: 'data-mismatch', ...details };
    case STATUS.exception:
      return { status: 'exception', far: details.address, elr: details.expected, esr: details.actual };
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
    case 'tag-mismatch':
      return `found a tag mismatch at IPA ${hex(report.address)}: expected ${hex(report.expected)}, found ${hex(report.actual)}`;
    case 'data-mismatch':
      return `found a data mismatch at IPA ${hex(report.address)}: expected ${hex(report.expected)}, found ${hex(report.actual)}`;
    case 'exception':
      return `took an exception: ESR_EL1 ${hex(report.esr)}, FAR_EL1 ${hex(report.far)}, ELR_EL1 ${hex(report.elr)}`;
  }
}
