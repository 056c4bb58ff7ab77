/**
 * A simulated guest that keeps running during a live checkpoint: between the
 * copies of a pre-copy round (LiveGuest.runSlice) it makes guest stores and
 * tag stores (STG without data) at seeded pseudo-random places of one slot,
 * through the kernel model's guest accesses, so they mark the dirty log as a
 * real guest's would. A hot set of pages takes most writes, as in a real
 * workload, so that rounds shrink and pre-copy converges. After pause() it
 * does nothing more: the VM then holds the state a checkpoint must reproduce.
 */
import type { SimulatedVm } from '../backends/simulated/simulated-vm.js';
import { GRANULE_SIZE } from '../format/constants.js';
import type { MemorySlot } from '../vm/vm.js';
import { FrameRandom } from './random.js';

export interface MutatingGuestOptions {
  /** The memslot the guest writes. */
  readonly slot: number;
  readonly seed?: number;
  /** Word stores per slice. Default 16. */
  readonly storesPerSlice?: number;
  /** Tag-only stores (STG) per slice. Default 4. */
  readonly tagStoresPerSlice?: number;
  /** Pages of the hot set (first pages of the slot) that take 15 of 16 writes. Default 8. */
  readonly hotPages?: number;
}

export class MutatingSimulatedGuest {
  private readonly random: FrameRandom;
  private readonly region: MemorySlot;
  private paused = false;
  /** Slices run so far. */
  slices = 0;

  constructor(
    private readonly vm: SimulatedVm,
    private readonly options: MutatingGuestOptions,
  ) {
    const region = vm.memorySlots().find((slot) => slot.slot === options.slot);
    if (!region) throw new RangeError(`the simulated VM has no slot ${options.slot}`);
    this.region = region;
    this.random = new FrameRandom(options.seed ?? 0x5eed);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  runSlice(): void {
    if (this.paused) return;
    this.slices++;
    const word = new Uint8Array(8);
    for (let i = 0; i < (this.options.storesPerSlice ?? 16); i++) {
      const address = this.granuleAddress() + BigInt(this.random.next() & 8);
      new DataView(word.buffer).setUint32(0, this.random.next(), true);
      new DataView(word.buffer).setUint32(4, this.random.next(), true);
      this.vm.guestStore(address, word);
    }
    for (let i = 0; i < (this.options.tagStoresPerSlice ?? 4); i++) {
      this.vm.guestStoreTags(this.granuleAddress(), Uint8Array.of(this.random.next() & 0x0f));
    }
  }

  pause(): void {
    this.paused = true;
  }

  /** A granule: in the hot pages 15 times out of 16, anywhere in the slot otherwise. */
  private granuleAddress(): bigint {
    const granules = Number(this.region.size) / GRANULE_SIZE;
    const hot = Math.min(granules, ((this.options.hotPages ?? 8) * this.vm.pageSize) / GRANULE_SIZE);
    const range = (this.random.next() & 15) === 0 ? granules : hot;
    return this.region.guestAddress + BigInt((this.random.next() % range) * GRANULE_SIZE);
  }
}
