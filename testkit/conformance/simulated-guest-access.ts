/**
 * Guest accesses on the simulator: the kernel model's guest stores, loads and
 * tag stores (KernelModelVm.guestStore and friends), which mark the dirty log
 * as KVM's stage 2 does. It needs no code slot or vCPU; it adds the code slot
 * anyway so that rows see the same memslots on both targets.
 */
import type { SimulatedVm } from '../../src/backends/simulated/simulated-vm.js';
import { GRANULE_SIZE } from '../../src/format/constants.js';
import { GUEST_CODE_BYTES, GUEST_CODE_IPA, GUEST_CODE_SLOT } from './fixtures.js';
import type { GuestAccess } from './types.js';

export class SimulatedGuestAccess implements GuestAccess {
  constructor(private readonly vm: SimulatedVm) {
    vm.addMemorySlot({ slot: GUEST_CODE_SLOT, name: 'store-probe', guestAddress: GUEST_CODE_IPA, size: GUEST_CODE_BYTES });
    vm.createVcpu(0);
  }

  store64(guestAddress: bigint, value: bigint): void {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    this.vm.guestStore(guestAddress, bytes);
  }

  storeTag(guestAddress: bigint, tag: number): void {
    this.vm.guestStoreTags(guestAddress, Uint8Array.of(tag & 0x0f));
  }

  load64(guestAddress: bigint): bigint {
    const bytes = new Uint8Array(8);
    this.vm.guestLoad(guestAddress, bytes);
    return new DataView(bytes.buffer).getBigUint64(0, true);
  }

  loadTag(guestAddress: bigint): number {
    const granule = guestAddress - (guestAddress % BigInt(GRANULE_SIZE));
    return this.vm.guestLoadTag(granule);
  }
}
