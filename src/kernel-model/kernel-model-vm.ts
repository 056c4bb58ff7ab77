/**
 * A `Vm` that behaves like a KVM arm64 VM, over a pluggable store.
 *
 * The VM-level rules live here (MTE only before the first vCPU, EIO for a
 * caller outside the creating process, EBADF once closed); memslot rules in
 * memslot-table.ts; the tag ioctl in copy-mte-tags.ts; bytes and tags in a
 * SlotStorage. The simulator, the raw-files backend and any other store-backed
 * backend are this class with a different store.
 */

import { GRANULE_SIZE, PAGE_SIZES } from '../format/constants.js';
import {
  type ClearDirtyLogRequest,
  type CopyMteTagsRequest,
  type GuestAddress,
  type MemorySlot,
  type MemorySlotSpec,
  type Vcpu,
  type Vm,
  VmErrnoError,
} from '../vm/vm.js';
import { copyMteTags } from './copy-mte-tags.js';
import { DirtyLog, GUEST_TAG_STORES_MARK_DIRTY, MANUAL_DIRTY_LOG_CAPS } from './dirty-log.js';
import { checkKernelVersion, DEFAULT_KERNEL_VERSION, type KernelBehaviour, type KernelVersion, kernelBehaviour } from './kernel-version.js';
import { DEFAULT_IPA_BITS, hex, MemslotTable, type ModelSlot } from './memslot-table.js';
import { SimulatedVcpu } from './simulated-vcpu.js';
import type { SlotStorageFactory } from './slot-storage.js';

/** KVM_MAX_VCPUS on arm64. */
export const MAX_VCPUS = 512;

/** The process a VM ioctl comes from; KVM compares it with the creator (`kvm->mm`). */
export type ProcessId = number;

export interface KernelModelOptions {
  /** Host page size: 4096, 16384 or 65536. */
  readonly pageSize: number;
  /** The kernel whose behaviour to reproduce; default [6, 1]. */
  readonly kernelVersion?: KernelVersion;
  /** The process that created the VM; default this process. */
  readonly owner?: ProcessId;
  /** IPA size in bits; default 40 (KVM's default VM type). */
  readonly ipaBits?: number;
  /**
   * Enforce the limits of a real KVM VM: memslot ids 0..32766, ranges inside the IPA space (`ipaBits`), vCPU ids
   * below KVM_MAX_VCPUS; default true. False for a store that is not a KVM VM (raw files): any 32-bit slot or vCPU
   * id and any range below 2^64 are taken. KVM's other rules (alignment, overlaps, the tag ioctl) hold either way.
   */
  readonly kvmLimits?: boolean;
  /** vCPUs take the register list they are given (restoring a snapshot of another CPU); default false, as KVM. */
  readonly adoptRegisters?: boolean;
}

/** The VM ioctls a given process may issue; from any process but the owner they fail with EIO. */
export interface VmIoctlHandle {
  readonly caller: ProcessId;
  copyMteTags(request: CopyMteTagsRequest): number;
}

export class KernelModelVm implements Vm {
  readonly pageSize: number;
  readonly kernelVersion: KernelVersion;
  readonly behaviour: KernelBehaviour;
  readonly owner: ProcessId;
  private mte = false;
  private closed = false;
  private readonly memslots: MemslotTable;
  private readonly dirtyLog = new DirtyLog();
  private readonly vcpuList: Vcpu[] = [];
  private readonly adoptRegisters: boolean;
  private readonly kvmLimits: boolean;

  constructor(
    readonly backend: string,
    private readonly storageFactory: SlotStorageFactory,
    options: KernelModelOptions,
  ) {
    if (!PAGE_SIZES.includes(options.pageSize)) {
      throw new RangeError(`page size ${options.pageSize}: arm64 hosts use ${PAGE_SIZES.join(', ')}`);
    }
    this.pageSize = options.pageSize;
    this.kernelVersion = checkKernelVersion(options.kernelVersion ?? DEFAULT_KERNEL_VERSION);
    this.behaviour = kernelBehaviour(this.kernelVersion);
    this.owner = options.owner ?? process.pid;
    this.kvmLimits = options.kvmLimits ?? true;
    this.memslots = new MemslotTable(this.pageSize, { ipaBits: options.ipaBits ?? DEFAULT_IPA_BITS, kvmLimits: this.kvmLimits });
    this.adoptRegisters = options.adoptRegisters ?? false;
  }

  get mteEnabled(): boolean {
    return this.mte;
  }

  enableMte(): void {
    this.checkOpen('KVM_ENABLE_CAP');
    if (this.vcpuList.length > 0) {
      throw new VmErrnoError('EINVAL', 'KVM_ENABLE_CAP', `KVM_CAP_ARM_MTE after ${this.vcpuList.length} vCPU(s) exist`);
    }
    this.mte = true;
  }

  addMemorySlot(spec: MemorySlotSpec): void {
    this.checkOpen('KVM_SET_USER_MEMORY_REGION');
    this.memslots.validate(spec, this.mte, this.behaviour);
    this.memslots.insert(spec, this.storageFactory.createSlotStorage(spec, this.pageSize));
  }

  memorySlots(): readonly MemorySlot[] {
    return this.memslots.list();
  }

  setDirtyLogging(slot: number, enabled: boolean): void {
    this.checkOpen('KVM_SET_USER_MEMORY_REGION');
    this.memslots.setDirtyLogging(slot, enabled);
    const info = this.memslots.list().find((s) => s.slot === slot);
    if (info) this.dirtyLog.loggingChanged(slot, Number(info.size / BigInt(this.pageSize)), enabled);
  }

  getDirtyLog(slot: number): Uint8Array {
    this.checkOpen('KVM_GET_DIRTY_LOG');
    return this.dirtyLog.get(slot);
  }

  clearDirtyLog(request: ClearDirtyLogRequest): void {
    this.checkOpen('KVM_CLEAR_DIRTY_LOG');
    this.dirtyLog.clear(request);
  }

  manualDirtyLogProtectFlags(): number {
    this.checkOpen('KVM_CHECK_EXTENSION');
    return MANUAL_DIRTY_LOG_CAPS;
  }

  enableManualDirtyLogProtect(flags: number): void {
    this.checkOpen('KVM_ENABLE_CAP');
    this.dirtyLog.enableManualProtect(flags);
  }

  /**
   * A store by guest code (the simulated guest's STR): unlike writeMemory, it goes through stage 2, so it marks its
   * pages in the dirty log. A read-only slot or an IPA without a slot is not RAM to the guest (KVM makes it an MMIO
   * exit), so the model refuses it.
   */
  guestStore(guestAddress: GuestAddress, source: Uint8Array): void {
    const { slot, offset } = this.guestMapping(guestAddress, source.length, 'guest store');
    slot.storage.writeMemory(offset, source);
    this.markGuestWrite(slot, offset, source.length);
  }

  /** A load by guest code: it maps the page but never dirties it. */
  guestLoad(guestAddress: GuestAddress, destination: Uint8Array): void {
    const { slot, offset } = this.mapping(guestAddress, destination.length, 'guest load');
    this.sanitiseTags(slot, offset, destination.length);
    slot.storage.readMemory(offset, destination);
  }

  /**
   * STG by guest code, one tag (0..15) per 16-byte granule from `guestAddress` (granule aligned), data untouched.
   * A tag store is a write at stage 2: it marks the page dirty (GUEST_TAG_STORES_MARK_DIRTY, measured on the lab).
   */
  guestStoreTags(guestAddress: GuestAddress, tags: Uint8Array): void {
    if (guestAddress % BigInt(GRANULE_SIZE) !== 0n) throw new RangeError(`STG at ${hex(guestAddress)}: not granule aligned`);
    if (!this.mte) throw new VmErrnoError('EINVAL', 'guest tag store', 'MTE is not enabled on this VM');
    const length = tags.length * GRANULE_SIZE;
    const { slot, offset } = this.guestMapping(guestAddress, length, 'guest tag store');
    this.sanitiseTags(slot, offset, length);
    const granulesPerPage = this.pageSize / GRANULE_SIZE;
    for (let i = 0; i < tags.length; ) {
      const granule = offset / GRANULE_SIZE + i;
      const page = Math.floor(granule / granulesPerPage);
      const inPage = granule % granulesPerPage;
      const count = Math.min(tags.length - i, granulesPerPage - inPage);
      slot.storage.writeTags(
        page,
        inPage,
        tags.subarray(i, i + count).map((tag) => tag & 0x0f),
      );
      i += count;
    }
    if (GUEST_TAG_STORES_MARK_DIRTY) this.markGuestWrite(slot, offset, length);
  }

  /** LDG by guest code: the tag of the granule at `guestAddress` (granule aligned). */
  guestLoadTag(guestAddress: GuestAddress): number {
    const { slot, offset } = this.mapping(guestAddress, GRANULE_SIZE, 'guest tag load');
    this.sanitiseTags(slot, offset, GRANULE_SIZE);
    const tag = new Uint8Array(1);
    const granule = offset / GRANULE_SIZE;
    const granulesPerPage = this.pageSize / GRANULE_SIZE;
    if (slot.storage.tagAccess !== 'none') slot.storage.readTags(Math.floor(granule / granulesPerPage), granule % granulesPerPage, tag);
    return tag[0];
  }

  private guestMapping(guestAddress: GuestAddress, length: number, operation: string): { slot: ModelSlot; offset: number } {
    const mapped = this.mapping(guestAddress, length, operation);
    if (mapped.slot.info.readOnly) {
      throw new VmErrnoError(
        'EFAULT',
        operation,
        `${hex(guestAddress)} is in read-only slot ${mapped.slot.info.slot}: an MMIO exit on KVM`,
      );
    }
    this.sanitiseTags(mapped.slot, mapped.offset, length);
    return mapped;
  }

  /** sanitise_mte_tags: a page the guest maps for the first time gets zero tags and counts as tagged (MTE VMs only). */
  private sanitiseTags(slot: ModelSlot, offset: number, length: number): void {
    if (!this.mte || slot.storage.tagAccess !== 'read-write') return;
    for (let page = Math.floor(offset / this.pageSize); page * this.pageSize < offset + length; page++) {
      if (slot.storage.isPageTagged(page)) continue;
      slot.storage.clearPageTags(page);
      slot.storage.markPageTagged(page);
    }
  }

  private markGuestWrite(slot: ModelSlot, offset: number, length: number): void {
    if (length === 0) return;
    const last = Math.floor((offset + length - 1) / this.pageSize);
    for (let page = Math.floor(offset / this.pageSize); page <= last; page++) this.dirtyLog.markDirty(slot.info.slot, page);
  }

  readMemory(guestAddress: GuestAddress, destination: Uint8Array): void {
    const { slot, offset } = this.mapping(guestAddress, destination.length, 'readMemory');
    slot.storage.readMemory(offset, destination);
  }

  async readMemoryAsync(guestAddress: GuestAddress, destination: Uint8Array): Promise<void> {
    const { slot, offset } = this.mapping(guestAddress, destination.length, 'readMemory');
    if (slot.storage.readMemoryAsync) await slot.storage.readMemoryAsync(offset, destination);
    else slot.storage.readMemory(offset, destination);
  }

  writeMemory(guestAddress: GuestAddress, source: Uint8Array): void {
    const { slot, offset } = this.mapping(guestAddress, source.length, 'writeMemory');
    slot.storage.writeMemory(offset, source);
  }

  /** The VMM's mapping of a guest range: it must lie inside one memslot. */
  private mapping(guestAddress: GuestAddress, length: number, operation: string): { slot: ModelSlot; offset: number } {
    this.checkOpen(operation);
    const slot = this.memslots.find(guestAddress);
    const end = guestAddress + BigInt(length);
    if (!slot || end > slot.info.guestAddress + slot.info.size) {
      const where = slot ? `crosses the end of slot ${slot.info.slot} (${slot.info.name})` : 'has no memslot';
      throw new VmErrnoError('EFAULT', operation, `guest range ${hex(guestAddress)}..${hex(end)} ${where}`);
    }
    return { slot, offset: Number(guestAddress - slot.info.guestAddress) };
  }

  copyMteTags(request: CopyMteTagsRequest): number {
    return this.copyMteTagsAs(this.owner, request);
  }

  /** The VM fd as seen from process `caller`, e.g. a helper process that inherited it. */
  fromProcess(caller: ProcessId): VmIoctlHandle {
    return { caller, copyMteTags: (request) => this.copyMteTagsAs(caller, request) };
  }

  private copyMteTagsAs(caller: ProcessId, request: CopyMteTagsRequest): number {
    this.checkOpen('KVM_ARM_MTE_COPY_TAGS');
    // kvm_vm_ioctl: "if (kvm->mm != current->mm) return -EIO", before any argument is looked at.
    if (caller !== this.owner) {
      throw new VmErrnoError('EIO', 'KVM_ARM_MTE_COPY_TAGS', `process ${caller} did not create this VM (process ${this.owner} did)`);
    }
    return copyMteTags({ pageSize: this.pageSize, behaviour: this.behaviour, mteEnabled: this.mte, memslots: this.memslots }, request);
  }

  createVcpu(id: number): Vcpu {
    this.checkOpen('KVM_CREATE_VCPU');
    const limit = this.kvmLimits ? MAX_VCPUS : 2 ** 32;
    if (!Number.isInteger(id) || id < 0 || id >= limit) {
      const why = this.kvmLimits ? ` (KVM_MAX_VCPUS is ${MAX_VCPUS})` : '';
      throw new VmErrnoError('EINVAL', 'KVM_CREATE_VCPU', `vCPU id ${id} outside 0..${limit - 1}${why}`);
    }
    if (this.vcpuList.some((vcpu) => vcpu.id === id)) {
      throw new VmErrnoError('EEXIST', 'KVM_CREATE_VCPU', `vCPU ${id} exists`);
    }
    const vcpu = this.newVcpu(id);
    this.vcpuList.push(vcpu);
    return vcpu;
  }

  /** The vCPU KVM_CREATE_VCPU makes once the VM-level rules passed: the model's registers (a store keeping none overrides it). */
  protected newVcpu(id: number): Vcpu {
    return new SimulatedVcpu(id, this.adoptRegisters);
  }

  vcpus(): readonly Vcpu[] {
    return this.vcpuList;
  }

  /** Makes what was written durable (file-backed stores). */
  flush(): void {
    for (const slot of this.memslots.all()) slot.storage.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const slot of this.memslots.all()) slot.storage.close();
  }

  protected slotStorages(): readonly ModelSlot[] {
    return this.memslots.all();
  }

  private checkOpen(operation: string): void {
    if (this.closed) throw new VmErrnoError('EBADF', operation, 'the VM is closed');
  }
}
