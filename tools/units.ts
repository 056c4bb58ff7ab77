/**
 * Quantities on the command line and in reports: byte sizes ("512MiB"),
 * guest addresses ("0x4000_0000"), rates and ratios. Parsers throw
 * CliError(usage) naming the option, so a typo never reaches the library.
 */
import { CliError } from './cli-support.js';

export { formatBytes } from '../src/units.js';

const MULTIPLIERS: Record<string, bigint> = {
  '': 1n,
  k: 1024n,
  kib: 1024n,
  m: 1024n ** 2n,
  mib: 1024n ** 2n,
  g: 1024n ** 3n,
  gib: 1024n ** 3n,
  t: 1024n ** 4n,
  tib: 1024n ** 4n,
};

/** "4096", "64KiB", "512MiB", "1G", "0x10000": binary multiples, as memory sizes are. */
export function parseByteSize(text: string, what: string): bigint {
  const trimmed = text.trim().replace(/_/g, '');
  if (/^0x[0-9a-f]+$/i.test(trimmed)) return BigInt(trimmed);
  const match = /^(\d+)\s*([a-z]*)$/i.exec(trimmed);
  const multiplier = match ? MULTIPLIERS[match[2].toLowerCase()] : undefined;
  if (!match || multiplier === undefined)
    throw new CliError(`${what}: "${text}" is not a size (examples: 4096, 64KiB, 512MiB, 1GiB)`, 'usage');
  return BigInt(match[1]) * multiplier;
}

/** A guest physical address: hexadecimal with 0x, or decimal. */
export function parseGuestAddress(text: string, what: string): bigint {
  const trimmed = text.trim().replace(/_/g, '');
  if (/^0x[0-9a-f]+$/i.test(trimmed) || /^\d+$/.test(trimmed)) return BigInt(trimmed);
  throw new CliError(`${what}: "${text}" is not an address (examples: 0x40000000, 1073741824)`, 'usage');
}

/** A whole number in [min, max]. */
export function parseInteger(text: string, what: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new CliError(`${what}: "${text}" is not a whole number in ${min}..${max}`, 'usage');
  }
  return value;
}

/** Commander option parser for an integer option. */
export function integerOption(what: string, min: number, max: number): (text: string) => number {
  return (text) => parseInteger(text, what, min, max);
}

/** Commander option parser for a byte-size option. */
export function sizeOption(what: string): (text: string) => bigint {
  return (text) => parseByteSize(text, what);
}

/** Throughput in MB/s (10^6 bytes per second, as disks and zstd report it). */
export function megabytesPerSecond(bytes: bigint | number, milliseconds: number): number {
  return milliseconds > 0 ? Number(bytes) / 1e6 / (milliseconds / 1000) : Infinity;
}

export function formatRate(bytes: bigint | number, milliseconds: number): string {
  return `${megabytesPerSecond(bytes, milliseconds).toFixed(0)} MB/s`;
}

/** "0x40000000". */
export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

/** part / whole as a percentage with enough digits to show small fractions. */
export function percent(part: bigint | number, whole: bigint | number): string {
  const ratio = Number(whole) === 0 ? 0 : (Number(part) / Number(whole)) * 100;
  return `${ratio < 1 ? ratio.toFixed(3) : ratio.toFixed(1)}%`;
}
