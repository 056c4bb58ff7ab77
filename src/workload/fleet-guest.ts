/**
 * A fleet of guests that share a base image (issue 12's bench): guest `i` of
 * a fleet is the generated guest of the fleet's seed, except in a few percent
 * of its RAM, where it holds its own bytes and tags. Real guests of one image
 * differ in clusters (a process's heap, a file in the page cache), so the
 * differing pages come in runs of EXTENT_PAGES pages, picked per extent by
 * hash of (fleet seed, guest, extent). Generated on demand like
 * GeneratedGuest: nothing held, any size.
 */
import { GRANULE_SIZE } from '../format/constants.js';
import type { CopyMteTagsRequest, GuestAddress, SourceSlot, VcpuSource, VmSource } from '../vm/vm.js';
import { GeneratedGuest, type GeneratedGuestOptions } from './generated-guest.js';
import { FrameRandom, hashKey } from './random.js';

/** Guest bytes per extent that is shared or differs as a whole. */
export const EXTENT_BYTES = 256 * 1024;

export interface FleetGuestOptions extends GeneratedGuestOptions {
  /** This guest's index in the fleet; 0.. */
  readonly guest: number;
  /** Percent (0..100, fractions allowed) of RAM extents where this guest differs from the base image. */
  readonly differPercent: number;
}

export class FleetGuest implements VmSource {
  readonly backend = 'simulated';
  readonly pageSize: number;
  readonly mteEnabled: boolean;
  private readonly base: GeneratedGuest;

  constructor(private readonly options: FleetGuestOptions) {
    this.base = new GeneratedGuest(options);
    this.pageSize = this.base.pageSize;
    this.mteEnabled = this.base.mteEnabled;
  }

  memorySlots(): readonly SourceSlot[] {
    return this.base.memorySlots();
  }

  vcpus(): readonly VcpuSource[] {
    return this.base.vcpus();
  }

  /** Whether the extent holding RAM byte `offset` of region `region` is this guest's own. */
  private differs(region: number, extent: number): boolean {
    const ram = this.base.workload.regions[region];
    if (ram.kind !== 'ram') return false;
    return hashKey(this.options.seed, this.options.guest + 1, region, extent) % 1_000_000 < this.options.differPercent * 10_000;
  }

  /**
   * Calls `each` for every differing extent overlapping [guestAddress, +length): the range it covers, as offsets
   * from guestAddress, where that range starts inside the extent, and the extent's seed.
   */
  private forDiffering(
    guestAddress: GuestAddress,
    length: number,
    each: (start: number, end: number, inExtent: number, key: number) => void,
  ): void {
    const region = this.base.workload.regions.find((r) => guestAddress >= r.guestAddress && guestAddress < r.guestAddress + r.size);
    if (!region) return;
    const offset = Number(guestAddress - region.guestAddress);
    for (let extent = Math.floor(offset / EXTENT_BYTES); extent * EXTENT_BYTES < offset + length; extent++) {
      if (!this.differs(region.index, extent)) continue;
      const start = Math.max(offset, extent * EXTENT_BYTES);
      const end = Math.min(offset + length, (extent + 1) * EXTENT_BYTES);
      const key = hashKey(this.options.seed, this.options.guest + 1, region.index, extent) ^ 0x5eed;
      each(start - offset, end - offset, start - extent * EXTENT_BYTES, key);
    }
  }

  readMemory(guestAddress: GuestAddress, destination: Uint8Array): void {
    this.base.readMemory(guestAddress, destination);
    this.forDiffering(guestAddress, destination.length, (start, end, inExtent, key) => {
      // The extent's own bytes, generated whole from its seed: any part of it reads the same.
      const bytes = new Uint8Array(EXTENT_BYTES);
      const words = new Uint32Array(bytes.buffer);
      const random = new FrameRandom(key);
      for (let i = 0; i < words.length; i++) words[i] = random.next();
      destination.set(bytes.subarray(inExtent, inExtent + end - start), start);
    });
  }

  copyMteTags(request: CopyMteTagsRequest): number {
    const done = this.base.copyMteTags(request);
    const buffer = request.buffer;
    if (!buffer) return done;
    this.forDiffering(request.guestIpa, Number(request.length), (start, end, inExtent, key) => {
      const tags = new Uint8Array(EXTENT_BYTES / GRANULE_SIZE);
      const random = new FrameRandom(key ^ 0x7a65);
      for (let g = 0; g < tags.length; g++) tags[g] = random.below(16);
      buffer.set(tags.subarray(inExtent / GRANULE_SIZE, (inExtent + end - start) / GRANULE_SIZE), start / GRANULE_SIZE);
    });
    return done;
  }
}
