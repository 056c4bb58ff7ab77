/**
 * The shape of a generated guest: its regions (RAM with MTE, a read-only
 * flash without) and, inside RAM, what each 4 KiB frame holds. Kinds are
 * picked per 256 KiB extent so like pages cluster as in a real guest, and
 * frames are the guest kernel's 4 KiB pages whatever the host page size, so a
 * workload has the same bytes on 4, 16 and 64 KiB hosts.
 */

import { PAGE_SIZES } from '../format/constants.js';
import { FrameRandom, hashKey } from './random.js';

/** The guest kernel's page: the unit the generator fills. */
export const FRAME_SIZE = 4096;
const FRAMES_PER_EXTENT = 64;
const MiB = 1024 * 1024;

export type RegionKind = 'ram' | 'flash';
export type FrameKind = 'zero' | 'kernel-text' | 'heap' | 'page-cache' | 'firmware';

export interface WorkloadRegion {
  /** Index in Workload.regions; part of every frame's seed. */
  readonly index: number;
  readonly name: string;
  readonly kind: RegionKind;
  readonly slot: number;
  readonly guestAddress: bigint;
  readonly size: bigint;
  readonly pageCount: number;
  /** Whether the guest tags this memory; flash carries no tags. */
  readonly mte: boolean;
  readonly readOnly: boolean;
}

export interface Workload {
  readonly seed: number;
  readonly pageSize: number;
  readonly regions: readonly WorkloadRegion[];
}

export interface WorkloadOptions {
  /** RAM size in MiB; a multiple of the host page size. */
  readonly sizeMiB: number;
  readonly seed: number;
  /** Host page size; default 4096. */
  readonly pageSize?: number;
  /** Size of the untagged flash region in MiB; default 4, 0 for none. */
  readonly flashMiB?: number;
}

/** The QEMU virt machine's map: flash at 0, RAM at 1 GiB. */
export const FLASH_GUEST_ADDRESS = 0x0n;
export const RAM_GUEST_ADDRESS = 0x4000_0000n;

export function planWorkload(options: WorkloadOptions): Workload {
  const pageSize = options.pageSize ?? 4096;
  if (!PAGE_SIZES.includes(pageSize)) throw new RangeError(`page size ${pageSize}: expected one of ${PAGE_SIZES.join(', ')}`);
  const regions: WorkloadRegion[] = [];
  const add = (name: string, kind: RegionKind, guestAddress: bigint, mib: number, mte: boolean, readOnly: boolean): void => {
    const size = mib * MiB;
    if (!Number.isInteger(mib) || mib <= 0 || size % pageSize !== 0) {
      throw new RangeError(`${name}: ${mib} MiB is not a positive whole number of ${pageSize}-byte pages`);
    }
    regions.push({
      index: regions.length,
      name,
      kind,
      slot: regions.length,
      guestAddress,
      size: BigInt(size),
      pageCount: size / pageSize,
      mte,
      readOnly,
    });
  };
  add('ram', 'ram', RAM_GUEST_ADDRESS, options.sizeMiB, true, false);
  const flashMiB = options.flashMiB ?? 4;
  if (flashMiB > 0) add('flash0', 'flash', FLASH_GUEST_ADDRESS, flashMiB, false, true);
  return { seed: options.seed >>> 0, pageSize, regions };
}

/** Kernel text sits at the start of RAM: 5% of it, at most 24 MiB. */
function kernelTextFrames(region: WorkloadRegion): number {
  return Math.min(Math.floor(Number(region.size) / FRAME_SIZE / 20), (24 * MiB) / FRAME_SIZE);
}

/** What an extent of RAM mostly holds; about half of a guest's memory is zero, as in real guests. */
function extentKind(seed: number, region: WorkloadRegion, extent: number): FrameKind {
  const roll = hashKey(seed, region.index, extent, 0xe7) % 100;
  if (roll < 50) return 'zero';
  if (roll < 75) return 'heap';
  return 'page-cache';
}

export function frameKind(workload: Workload, region: WorkloadRegion, frame: number): FrameKind {
  if (region.kind === 'flash') {
    // Firmware code in the first eighth, erased (zero) after it.
    return frame < Number(region.size) / FRAME_SIZE / 8 ? 'firmware' : 'zero';
  }
  if (frame < kernelTextFrames(region)) return 'kernel-text';
  const kind = extentKind(workload.seed, region, Math.floor(frame / FRAMES_PER_EXTENT));
  if (kind === 'zero') return 'zero';
  // Freed pages inside busy extents.
  const holes = new FrameRandom(hashKey(workload.seed, region.index, frame, 0x40));
  return holes.chance(kind === 'heap' ? 12 : 8) ? 'zero' : kind;
}
