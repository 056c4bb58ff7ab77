/**
 * The memslot table of the kernel model: what KVM_SET_USER_MEMORY_REGION
 * accepts (virt/kvm/kvm_main.c, kvm_arch_prepare_memory_region in
 * arch/arm64/kvm/mmu.c) and the IPA -> slot lookup the tag ioctl walks.
 *
 * Two of KVM's rules are limits of a real VM, not of the model: slot ids
 * 0..32766 and guest ranges inside the VM's IPA space. A store that is not a
 * KVM VM (raw files) turns them off (`kvmLimits: false`) and takes any slot id
 * and range the snapshot format can hold; every other rule (alignment,
 * overlaps, MAP_SHARED on an MTE VM before 6.2) stays. `kvmMemslotLimit`
 * names the limit a slot breaks, so a real KVM's bare errno can be explained.
 */
import { type GuestAddress, type MemorySlot, type MemorySlotSpec, VmErrnoError } from '../vm/vm.js';
import type { KernelBehaviour } from './kernel-version.js';
import type { SlotStorage } from './slot-storage.js';

/** KVM_MEM_SLOTS_NUM (SHRT_MAX): user slot numbers are 0..32766. */
export const MAX_USER_MEMSLOTS = 32767;
/** The IPA size a VM gets without KVM_VM_TYPE_ARM_IPA_SIZE. */
export const DEFAULT_IPA_BITS = 40;
/** The largest IPA size an arm64 KVM host offers (KVM_VM_TYPE_ARM_IPA_SIZE with LPA or LPA2). */
export const MAX_IPA_BITS = 52;
/** Without KVM's limits: the largest slot id `struct kvm_userspace_memory_region` (and the snapshot format) can hold. */
const MAX_SLOT_ID = 0xffff_ffff;
/** Without KVM's limits: guest ranges end at or below 2^64. */
const ADDRESS_BITS = 64n;

const OPERATION = 'KVM_SET_USER_MEMORY_REGION';

export interface ModelSlot {
  readonly info: MemorySlot;
  readonly storage: SlotStorage;
}

export function hex(address: bigint): string {
  return `0x${address.toString(16)}`;
}

/** Which of KVM's limits on memslots a table enforces. */
export interface MemslotLimits {
  /** The IPA size in bits: a slot must end at or below 2^ipaBits (with `kvmLimits`). */
  readonly ipaBits: number;
  /** Slot ids 0..32766 and ranges inside the IPA space, as KVM; false: any 32-bit slot id, any range below 2^64. */
  readonly kvmLimits: boolean;
}

/** Why KVM refuses a slot id (EINVAL), or undefined: ids above 0xffff select another address space, which arm64 lacks. */
export function kvmSlotIdLimit(slot: number): string | undefined {
  if (Number.isInteger(slot) && slot >= 0 && slot < MAX_USER_MEMSLOTS) return undefined;
  return `slot id ${slot} is outside KVM's memslot id range 0..${MAX_USER_MEMSLOTS - 1} (KVM_USER_MEM_SLOTS, address space 0)`;
}

/** Why a VM with an `ipaBits`-bit IPA space cannot map the range (EFAULT), or undefined. */
export function ipaSizeLimit(spec: Pick<MemorySlotSpec, 'guestAddress' | 'size'>, ipaBits: number): string | undefined {
  const end = spec.guestAddress + spec.size;
  if (end <= 1n << BigInt(ipaBits)) return undefined;
  return (
    `the range ends at ${hex(end)}, beyond the VM's ${ipaBits}-bit IPA space ` +
    `(KVM_VM_TYPE_ARM_IPA_SIZE; the host's IPA size caps it, at most ${MAX_IPA_BITS} bits)`
  );
}

/** The KVM limit a memslot breaks in a VM with an `ipaBits`-bit IPA space (slot id range, IPA size), or undefined. */
export function kvmMemslotLimit(spec: MemorySlotSpec, ipaBits: number): string | undefined {
  return kvmSlotIdLimit(spec.slot) ?? ipaSizeLimit(spec, ipaBits);
}

export class MemslotTable {
  private readonly slots = new Map<number, ModelSlot>();
  /** Sorted by guest address, for lookup by IPA. */
  private ordered: ModelSlot[] = [];

  constructor(
    private readonly pageSize: number,
    private readonly limits: MemslotLimits,
  ) {}

  /** Checks `spec` as KVM would, before any storage exists; throws VmErrnoError. */
  validate(spec: MemorySlotSpec, mteEnabled: boolean, behaviour: KernelBehaviour): void {
    const page = BigInt(this.pageSize);
    const where = `slot ${spec.slot} at IPA ${hex(spec.guestAddress)} size ${hex(spec.size)}`;
    if (spec.guestAddress < 0n || spec.size < 0n || spec.guestAddress % page !== 0n || spec.size % page !== 0n) {
      throw new VmErrnoError('EINVAL', OPERATION, `${where}: not aligned to the ${this.pageSize}-byte host page`);
    }
    if (!Number.isInteger(spec.slot) || spec.slot < 0 || spec.slot > MAX_SLOT_ID) {
      throw new VmErrnoError('EINVAL', OPERATION, `${where}: slot id ${spec.slot} is not a 32-bit unsigned integer`);
    }
    const slotLimit = this.limits.kvmLimits ? kvmSlotIdLimit(spec.slot) : undefined;
    if (slotLimit) throw new VmErrnoError('EINVAL', OPERATION, `${where}: ${slotLimit}`);
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
    const ipaLimit = this.limits.kvmLimits
      ? ipaSizeLimit(spec, this.limits.ipaBits)
      : spec.guestAddress + spec.size > 1n << ADDRESS_BITS
        ? 'the range runs past the end of the 64-bit address space'
        : undefined;
    if (ipaLimit) throw new VmErrnoError('EFAULT', OPERATION, `${where}: ${ipaLimit}`);
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
