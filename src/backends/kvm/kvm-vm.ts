/**
 * A VM on the host's real KVM: the `Vm` interface (src/vm/vm.ts) as the
 * ioctls it was modelled on. Each method is one KVM call, or a copy through
 * the VMM's own mapping of guest RAM; the kernel's answers, errnos included,
 * come through unchanged so the conformance suite can compare them with the
 * simulated backend.
 *
 * A VM fd only works in the process that created it (the kernel checks
 * kvm->mm and answers EIO otherwise; the other-process-eio conformance row
 * hands the fd to a child to show it), so saving and restoring happen in the
 * VMM's own process. A VMM in another language makes the same ioctls itself
 * (docs/vmm-guide.md).
 */
import { VmsnapError } from '../../format/errors.js';
import { DEFAULT_IPA_BITS, kvmMemslotLimit } from '../../kernel-model/memslot-table.js';
import {
  type ClearDirtyLogRequest,
  type CopyMteTagsRequest,
  dirtyBitmapBytes,
  type GuestAddress,
  type MemorySlot,
  type MemorySlotSpec,
  type Vm,
  VmErrnoError,
} from '../../vm/vm.js';
import { check } from './errno.js';
import { GuardedBuffer, type HostMapping, mapGuestMemory } from './host-memory.js';
import {
  KVM_ARM_PREFERRED_TARGET,
  KVM_CAP_ARM_MTE,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CHECK_EXTENSION,
  KVM_CLEAR_DIRTY_LOG,
  KVM_CLEAR_DIRTY_LOG_STRUCT,
  KVM_DIRTY_LOG_STRUCT,
  KVM_ENABLE_CAP,
  KVM_ENABLE_CAP_STRUCT,
  KVM_GET_DIRTY_LOG,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_SET_USER_MEMORY_REGION,
  KVM_USERSPACE_MEMORY_REGION_STRUCT,
  KVM_VCPU_INIT_STRUCT,
} from './kvm-abi.js';
import type { KvmSystem } from './kvm-system.js';
import { KvmVcpu } from './kvm-vcpu.js';
import { close, ioctlBuffer, ioctlValue } from './libc.js';
import { issueCopyMteTags } from './mte-copy-ioctl.js';

/** A guest range the VMM tried to read or write lies outside every memslot. */
export class GuestRangeError extends VmsnapError {
  constructor(
    readonly guestAddress: GuestAddress,
    readonly length: number,
  ) {
    super('guest-range', 'backend', `guest range 0x${guestAddress.toString(16)}+0x${length.toString(16)} is not inside one memory slot`);
  }
}

interface SlotState {
  spec: MemorySlot;
  mapping: HostMapping;
}

export class KvmVm implements Vm {
  readonly backend = 'kvm';
  private mte = false;
  private readonly slots = new Map<number, SlotState>();
  private readonly vcpuList: KvmVcpu[] = [];
  private preferredTarget: Buffer | null = null;
  private closed = false;

  constructor(
    private readonly system: KvmSystem,
    /** The VM fd: valid only in this process. */
    readonly fd: number,
    readonly pageSize: number,
  ) {}

  get mteEnabled(): boolean {
    return this.mte;
  }

  enableMte(): void {
    this.checkOpen('KVM_ENABLE_CAP');
    const request = KVM_ENABLE_CAP_STRUCT.allocate();
    KVM_ENABLE_CAP_STRUCT.write(request, 'cap', KVM_CAP_ARM_MTE);
    check(ioctlBuffer(this.fd, KVM_ENABLE_CAP, request), 'KVM_ENABLE_CAP', 'KVM_CAP_ARM_MTE');
    this.mte = true;
  }

  addMemorySlot(spec: MemorySlotSpec): void {
    this.checkOpen('KVM_SET_USER_MEMORY_REGION');
    const slot: MemorySlot = { readOnly: false, backing: 'anonymous-private', ...spec, dirtyLogging: false };
    const mapping = mapGuestMemory(Number(slot.size), slot.backing);
    try {
      this.setUserMemoryRegion(slot, mapping);
    } catch (error) {
      mapping.unmap();
      throw error;
    }
    this.slots.set(slot.slot, { spec: slot, mapping });
  }

  memorySlots(): readonly MemorySlot[] {
    return [...this.slots.values()].map((state) => state.spec);
  }

  setDirtyLogging(slot: number, enabled: boolean): void {
    this.checkOpen('KVM_SET_USER_MEMORY_REGION');
    const state = this.slots.get(slot);
    if (!state) throw new VmErrnoError('EINVAL', 'KVM_SET_USER_MEMORY_REGION', `no memory slot ${slot}`);
    const updated = { ...state.spec, dirtyLogging: enabled };
    this.setUserMemoryRegion(updated, state.mapping);
    state.spec = updated;
  }

  /**
   * KVM_GET_DIRTY_LOG into a buffer of exactly the bitmap's size with a guard page after it, so a kernel that wrote
   * more than kvm_dirty_bitmap_bytes would fault rather than scribble. A slot vmsnap does not know is still asked (the
   * kernel's errno is the answer), with the bitmap sized for one page.
   */
  getDirtyLog(slot: number): Uint8Array {
    this.checkOpen('KVM_GET_DIRTY_LOG');
    const pages = this.slotPages(slot);
    const buffer = new GuardedBuffer(dirtyBitmapBytes(pages), this.pageSize);
    try {
      const request = KVM_DIRTY_LOG_STRUCT.allocate();
      KVM_DIRTY_LOG_STRUCT.write(request, 'slot', BigInt.asUintN(32, BigInt(slot)));
      KVM_DIRTY_LOG_STRUCT.write(request, 'dirty_bitmap', buffer.address);
      check(ioctlBuffer(this.fd, KVM_GET_DIRTY_LOG, request), 'KVM_GET_DIRTY_LOG', `slot ${slot}`);
      return buffer.bytes.slice();
    } finally {
      buffer.release();
    }
  }

  /** KVM_CLEAR_DIRTY_LOG with the request's bitmap copied into a buffer of exactly its length (a short one faults). */
  clearDirtyLog(request: ClearDirtyLogRequest): void {
    this.checkOpen('KVM_CLEAR_DIRTY_LOG');
    const buffer = new GuardedBuffer(request.bitmap.length, this.pageSize);
    try {
      buffer.bytes.set(request.bitmap);
      const argument = KVM_CLEAR_DIRTY_LOG_STRUCT.allocate();
      KVM_CLEAR_DIRTY_LOG_STRUCT.write(argument, 'slot', BigInt.asUintN(32, BigInt(request.slot)));
      KVM_CLEAR_DIRTY_LOG_STRUCT.write(argument, 'num_pages', BigInt.asUintN(32, BigInt(request.numPages)));
      KVM_CLEAR_DIRTY_LOG_STRUCT.write(argument, 'first_page', BigInt.asUintN(64, BigInt(request.firstPage)));
      KVM_CLEAR_DIRTY_LOG_STRUCT.write(argument, 'dirty_bitmap', buffer.address);
      const where = `slot ${request.slot}, pages ${request.firstPage}+${request.numPages}`;
      check(ioctlBuffer(this.fd, KVM_CLEAR_DIRTY_LOG, argument), 'KVM_CLEAR_DIRTY_LOG', where);
    } finally {
      buffer.release();
    }
  }

  /** KVM_CHECK_EXTENSION on the VM fd: the flags KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 takes here. */
  manualDirtyLogProtectFlags(): number {
    this.checkOpen('KVM_CHECK_EXTENSION');
    return check(ioctlValue(this.fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2), 'KVM_CHECK_EXTENSION', 'manual dirty log');
  }

  enableManualDirtyLogProtect(flags: number): void {
    this.checkOpen('KVM_ENABLE_CAP');
    const request = KVM_ENABLE_CAP_STRUCT.allocate();
    KVM_ENABLE_CAP_STRUCT.write(request, 'cap', KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
    KVM_ENABLE_CAP_STRUCT.write(request, 'args', BigInt.asUintN(64, BigInt(flags)), 0);
    check(
      ioctlBuffer(this.fd, KVM_ENABLE_CAP, request),
      'KVM_ENABLE_CAP',
      `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags 0x${flags.toString(16)}`,
    );
  }

  private slotPages(slot: number): number {
    const state = this.slots.get(slot);
    return state ? Number(state.spec.size / BigInt(this.pageSize)) : 1;
  }

  readMemory(guestAddress: GuestAddress, destination: Uint8Array): void {
    destination.set(this.hostBytes(guestAddress, destination.length));
  }

  writeMemory(guestAddress: GuestAddress, source: Uint8Array): void {
    this.hostBytes(guestAddress, source.length).set(source);
  }

  /** One KVM_ARM_MTE_COPY_TAGS call (mte-copy-ioctl.ts). */
  copyMteTags(request: CopyMteTagsRequest): number {
    this.checkOpen('KVM_ARM_MTE_COPY_TAGS');
    return issueCopyMteTags(this.fd, request, this.pageSize);
  }

  createVcpu(id: number): KvmVcpu {
    this.checkOpen('KVM_CREATE_VCPU');
    const vcpu = KvmVcpu.create(this.fd, id, this.vcpuInit(), this.system.vcpuMmapSize(), this.pageSize);
    this.vcpuList.push(vcpu);
    return vcpu;
  }

  vcpus(): readonly KvmVcpu[] {
    return this.vcpuList;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const vcpu of this.vcpuList) vcpu.close();
    // The VM fd goes first: the kernel drops its memslots before the VMM unmaps what backed them.
    close(this.fd);
    for (const state of this.slots.values()) state.mapping.unmap();
    this.system.close();
  }

  /** KVM_ARM_PREFERRED_TARGET, asked once: every vCPU of a VM is initialised alike. */
  private vcpuInit(): Buffer {
    if (!this.preferredTarget) {
      const init = KVM_VCPU_INIT_STRUCT.allocate();
      check(ioctlBuffer(this.fd, KVM_ARM_PREFERRED_TARGET, init), 'KVM_ARM_PREFERRED_TARGET');
      this.preferredTarget = init;
    }
    return this.preferredTarget;
  }

  private setUserMemoryRegion(slot: MemorySlot, mapping: HostMapping): void {
    const region = KVM_USERSPACE_MEMORY_REGION_STRUCT.allocate();
    const flags = (slot.readOnly ? KVM_MEM_READONLY : 0) | (slot.dirtyLogging ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    KVM_USERSPACE_MEMORY_REGION_STRUCT.write(region, 'slot', slot.slot);
    KVM_USERSPACE_MEMORY_REGION_STRUCT.write(region, 'flags', flags);
    KVM_USERSPACE_MEMORY_REGION_STRUCT.write(region, 'guest_phys_addr', BigInt.asUintN(64, slot.guestAddress));
    KVM_USERSPACE_MEMORY_REGION_STRUCT.write(region, 'memory_size', BigInt.asUintN(64, slot.size));
    KVM_USERSPACE_MEMORY_REGION_STRUCT.write(region, 'userspace_addr', mapping.address);
    // The VM is made with type 0 (kvm-system.ts), so its IPA space is KVM's default; a refusal names the limit it broke.
    const limit = kvmMemslotLimit(slot, DEFAULT_IPA_BITS);
    const where = `slot ${slot.slot} "${slot.name}" at IPA 0x${slot.guestAddress.toString(16)}, ${slot.backing}`;
    check(ioctlBuffer(this.fd, KVM_SET_USER_MEMORY_REGION, region), 'KVM_SET_USER_MEMORY_REGION', limit ? `${where}: ${limit}` : where);
  }

  /** The VMM's bytes for a guest range that lies inside one slot. */
  private hostBytes(guestAddress: GuestAddress, length: number): Uint8Array {
    this.checkOpen('guest memory access');
    for (const { spec, mapping } of this.slots.values()) {
      const offset = guestAddress - spec.guestAddress;
      if (offset >= 0n && offset + BigInt(length) <= spec.size) return mapping.bytes.subarray(Number(offset), Number(offset) + length);
    }
    throw new GuestRangeError(guestAddress, length);
  }

  /**
   * After close() the fd number may belong to another file and the memory to another mapping: an operation on a
   * closed VM fails as the kernel fails a closed fd, instead of reaching whatever took their place.
   */
  private checkOpen(operation: string): void {
    if (this.closed) throw new VmErrnoError('EBADF', operation, 'the VM is closed');
  }
}
