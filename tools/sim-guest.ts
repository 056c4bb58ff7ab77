/**
 * The simulated guest on the command line: `--sim --size 512MiB --seed N
 * --page-size 4096` builds the seeded workload guest (src/workload).
 * Its parameters go into the snapshot's annotations (src/workload/annotations.ts)
 * so that `restore --compare-sim` can regenerate the very guest to compare against.
 */

import { PAGE_SIZES } from '../src/format/constants.js';
import type { WorkloadSpec } from '../src/workload/annotations.js';
import { CliError } from './cli-support.js';
import { parseByteSize, parseInteger } from './units.js';

const MiB = 1024n * 1024n;

export type SimGuestSpec = WorkloadSpec;

/** Raw option text as commander hands it over. */
export interface SimGuestOptions {
  size?: string;
  seed?: string;
  pageSize?: string;
}

export const SIM_DEFAULTS = { size: '256MiB', seed: '1', pageSize: '4096' } as const;

export function parsePageSize(text: string): number {
  const pageSize = Number(parseByteSize(text, '--page-size'));
  if (!PAGE_SIZES.includes(pageSize))
    throw new CliError(`--page-size: ${text} is not an arm64 page size (${PAGE_SIZES.join(', ')})`, 'usage');
  return pageSize;
}

export function parseSimGuest(options: SimGuestOptions): SimGuestSpec {
  const size = parseByteSize(options.size ?? SIM_DEFAULTS.size, '--size');
  const pageSize = parsePageSize(options.pageSize ?? SIM_DEFAULTS.pageSize);
  if (size === 0n || size % MiB !== 0n) throw new CliError(`--size: the simulated guest is sized in whole MiB, got ${size} bytes`, 'usage');
  if (size % BigInt(pageSize) !== 0n) throw new CliError(`--size: ${size} bytes is not a whole number of ${pageSize}-byte pages`, 'usage');
  // Generated on demand, the guest costs no memory; 1 TiB keeps its regions inside a 48-bit IPA space.
  if (size > 1n << 40n) throw new CliError('--size: the simulated guest is at most 1TiB', 'usage');
  return { sizeMiB: Number(size / MiB), seed: parseInteger(options.seed ?? SIM_DEFAULTS.seed, '--seed', 0, 0xffff_ffff), pageSize };
}
