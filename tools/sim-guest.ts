/**
 * The simulated guest on the command line: `--sim --size 512MiB --seed N
 * --page-size 4096` builds the seeded workload guest (src/workload).
 * Its parameters go into the snapshot's annotations (src/workload/annotations.ts)
 * so that `restore --compare-sim` can regenerate the very guest to compare against.
 */

import { PAGE_SIZES } from '../src/format/constants.js';
import type { WorkloadSpec } from '../src/workload/annotations.js';
import type { FillProgress } from '../src/workload/fill.js';
import { createSimulatedGuest, type SimulatedGuest } from '../src/workload/simulated-guest.js';
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
  // The simulator keeps guest memory in one ArrayBuffer per slot.
  if (size > 4095n * MiB)
    throw new CliError('--size: the simulated guest holds at most 4095 MiB (use raw files for larger guests)', 'usage');
  return { sizeMiB: Number(size / MiB), seed: parseInteger(options.seed ?? SIM_DEFAULTS.seed, '--seed', 0, 0xffff_ffff), pageSize };
}

/** `vcpus`: how many vCPUs to create (default: the generator's). */
export function buildSimGuest(spec: SimGuestSpec, vcpus?: number, onProgress?: FillProgress): SimulatedGuest {
  return createSimulatedGuest({ sizeMiB: spec.sizeMiB, seed: spec.seed, pageSize: spec.pageSize, vcpus, onProgress });
}
