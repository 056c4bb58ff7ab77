/**
 * The memslot table of the kernel model: what KVM_SET_USER_MEMORY_REGION
 * accepts (virt/kvm/kvm_main.c, kvm_arch_prepare_memory_region in
 * arch/arm64/kvm/mmu.c) and the IPA -> slot lookup the tag ioctl walks.
 */
import { type GuestAddress, type MemorySlot, type MemorySlotSpec, VmErrnoError } from '../vm/vm.js';
import type { KernelBehaviour } from './kernel-version.js';
import type { SlotStorage } from './slot-storage.js';

/** KVM_MEM_SLOTS_NUM (SHRT_MAX): user slot numbers are 0..32766. */
export const MAX_USER_MEMSLOTS = 32767;
/** The IPA size a VM gets without KVM_VM_TYPE_ARM_IPA_SIZE. */
export const DEFAULT_IPA_BITS = 40;

const OPERATION = 'KVM_SET_USER_MEMORY_REGION';

export interface ModelSlot {
  readonly info: MemorySlot;
  readonly storage: SlotStorage;
}

export function hex(address: bigint): string {
  return `0x${address.toString(16)}`;
}

export class MemslotTable {
  private readonly slots = new Map<number, ModelSlot>();
  /** Sorted by guest address, for lookup by IPA. */
  private ordered: ModelSlot[] = [];

  constructor(
    private readonly pageSize: number,
    private readonly ipaBits: number,
  ) {}

  /** Checks `spec` as KVM would, before any storage exists; throws VmErrnoError. */
  validate(spec: MemorySlotSpec, mteEnabled: boolean, behaviour: KernelBehaviour): void {
    const page = BigInt(this.pageSize);
    const where = `slot ${spec.slot} at IPA ${hex(spec.guestAddress)} size ${hex(spec.size)}`;
    if (spec.guestAddress < 0n || spec.size < 0n || spec.guestAddress % page !== 0n || spec.size % page !== 0n) {
      throw new VmErrnoError('EINVAL', OPERATION, `${where}: not aligned to the ${this.pageSize}-byte host page`);
    }
    if (!Number.isInteger(spec.slot) || spec.slot < 0 || spec.slot >= MAX_USER_MEMSLOTS) {
      throw new VmErrnoError('EINVAL', OPERATION, `${where}: slot number out of range`);
    }
    if (spec.size === 0n) {
      throw new VmErrnoError('EINVAL', OPERATION, `${where}: size 0 deletes a slot, and slot ${spec.slot} does not exist`);
    }
    if (this.slots.has(spec.slot)) {
      throw new VmErrnoError('EINVAL', OPERATION, `${where}: slot ${spec.slot} exists; resizing or moving slots is not modelled`);
    }
    const overlapping = this.ordered.find(
      (s) => spec.guestAddress < s.info.guestAddress + s.info.size && s.info.guestAddress < spec.guestAddress + spec.size,
    );
    if (overlapping) {
      throw new VmErrnoError('EEXIST', OPERATION, `${where}: overlaps slot ${overlapping.info.slot} (${overlapping.info.name})`);
    }
    if (spec.guestAddress + spec.size > 1n << BigInt(this.ipaBits)) {
      throw new VmErrnoError('EFAULT', OPERATION, `${where}: beyond the ${this.ipaBits}-bit IPA space`);
    }
    const backing = spec.backing ?? 'anonymous-private';
    if (mteEnabled && backing !== 'anonymous-private' && !behaviour.acceptsSharedMappingWithMte) {
      throw new VmErrnoError('EINVAL', OPERATION, `${where}: a MAP_SHARED (${backing}) mapping cannot back an MTE VM before Linux 6.2`);
    }
  }

  insert(spec: MemorySlotSpec, storage: SlotStorage): void {
    const info: MemorySlot = {
      slot: spec.slot,
      name: spec.name,
      guestAddress: spec.guestAddress,
      size: spec.size,
      readOnly: spec.readOnly ?? false,
      backing: spec.backing ?? 'anonymous-private',
      dirtyLogging: false,
    };
    this.replace({ info, storage });
  }

  setDirtyLogging(slot: number, enabled: boolean): void {
    const existing = this.slots.get(slot);
    if (!existing) throw new VmErrnoError('EINVAL', OPERATION, `slot ${slot} does not exist (dirty logging)`);
    this.replace({ info: { ...existing.info, dirtyLogging: enabled }, storage: existing.storage });
  }

  private replace(entry: ModelSlot): void {
    this.slots.set(entry.info.slot, entry);
    this.ordered = [...this.slots.values()].sort((a, b) => (a.info.guestAddress < b.info.guestAddress ? -1 : 1));
  }

  list(): readonly MemorySlot[] {
    return this.ordered.map((s) => s.info);
  }

  all(): readonly ModelSlot[] {
    return this.ordered;
  }

  anyDirtyLogging(): boolean {
    return this.ordered.some((s) => s.info.dirtyLogging);
  }

  /** The slot holding `guestAddress`, or undefined (gfn_to_memslot). */
  find(guestAddress: GuestAddress): ModelSlot | undefined {
    let low = 0;
    let high = this.ordered.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const candidate = this.ordered[middle];
      if (guestAddress < candidate.info.guestAddress) high = middle - 1;
      else if (guestAddress >= candidate.info.guestAddress + candidate.info.size) low = middle + 1;
      else return candidate;
    }
    return undefined;
  }
}
