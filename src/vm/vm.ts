/**
 * The VM: what vmsnap checkpoints from and restores into.
 *
 * The interface is shaped after KVM so that the real backend is a thin layer
 * over ioctls and the simulated backend can mirror the kernel row for row
 * (shared/reference/kvm-mte-semantics.md):
 *
 *  - memory slots are KVM memslots: a guest physical address (IPA), a size,
 *    read-only or not, backed by the VMM's own mapping;
 *  - guest memory is read and written through that mapping, never through KVM;
 *  - tags move only through `copyMteTags`, which has the exact semantics of
 *    KVM_ARM_MTE_COPY_TAGS: page-aligned arguments, the return value counts
 *    guest bytes, a partial copy returns a whole number of pages, and an error
 *    before the first page throws `VmErrnoError` with the kernel's errno;
 *  - vCPUs expose their registers as KVM ONE_REG ids and values.
 *
 * The writer needs only a `VmSource` and restore only a `VmTarget`, so a VMM
 * that embeds vmsnap implements just the half it uses; vmsnap's own backends
 * implement both (`Vm`). The writer and reader know no backend; the backends
 * know nothing of the snapshot format beyond the architectural constants and
 * register encoding they share with it (src/format/constants.ts, registers.ts).
 */

import { VmsnapError } from '../format/errors.js';
import type { GuestAddress, SnapshotMetadata } from '../format/model.js';
import type { RegisterValue, VcpuState } from '../format/registers.js';

export type { GuestAddress, RegisterValue, VcpuState };

/** KVM_ARM_TAGS_TO_GUEST: write tags from the buffer into guest tag memory. */
export const TAGS_TO_GUEST = 0n;
/** KVM_ARM_TAGS_FROM_GUEST: read guest tags into the buffer. */
export const TAGS_FROM_GUEST = 1n;

/** How the VMM backs a memslot; it decides whether KVM accepts it on an MTE VM. */
export type MemoryBacking = 'anonymous-private' | 'anonymous-shared' | 'memfd';

export interface MemorySlotSpec {
  /** KVM slot number. */
  readonly slot: number;
  /** A name for people and for the snapshot ("ram", "flash0"). */
  readonly name: string;
  readonly guestAddress: GuestAddress;
  /** Bytes; a multiple of the host page size. */
  readonly size: bigint;
  /** KVM_MEM_READONLY. */
  readonly readOnly?: boolean;
  /** Defaults to 'anonymous-private', which every kernel accepts on an MTE VM. */
  readonly backing?: MemoryBacking;
}

/** The spec of the memslot that holds `region` (a snapshot region, a raw-files region, ...): only the slot's own fields. */
export function memorySlotSpec(region: Pick<MemorySlotSpec, 'slot' | 'name' | 'guestAddress' | 'size' | 'readOnly'>): MemorySlotSpec {
  return { slot: region.slot, name: region.name, guestAddress: region.guestAddress, size: region.size, readOnly: region.readOnly };
}

export interface MemorySlot extends Required<MemorySlotSpec> {
  readonly dirtyLogging: boolean;
}

/** The argument of KVM_ARM_MTE_COPY_TAGS (struct kvm_arm_copy_mte_tags). */
export interface CopyMteTagsRequest {
  guestIpa: GuestAddress;
  /** Guest bytes; the kernel wants a multiple of the host page size. */
  length: bigint;
  /** TAGS_TO_GUEST or TAGS_FROM_GUEST; anything else is EINVAL. */
  flags: bigint;
  /** Must be [0n, 0n]. */
  reserved: readonly [bigint, bigint];
  /**
   * The user buffer `addr`: one byte per 16-byte granule, `length / 16` bytes.
   * `null` is a NULL pointer. Only `buffer.length` bytes are mapped: an access
   * past the end faults, as a user buffer followed by an unmapped page does
   * (the real backend builds exactly that with a guard page).
   */
  buffer: Uint8Array | null;
}

/** errno values the KVM paths vmsnap uses can return. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  E2BIG: 7,
  ENOSPC: 28,
  ENXIO: 6,
} as const;
export type ErrnoName = keyof typeof ERRNO;

/** A KVM call failed with an errno, before it did any work. */
export class VmErrnoError extends VmsnapError {
  /** The errno name, as Node names system errors ("EINVAL"). */
  declare readonly code: ErrnoName;
  readonly errno: number;
  constructor(
    code: ErrnoName,
    readonly operation: string,
    detail?: string,
  ) {
    super(code, 'backend', `${operation}: ${code}${detail ? ` (${detail})` : ''}`);
    this.errno = ERRNO[code];
  }
}

/** The registers of a vCPU as the writer reads them. */
export interface VcpuSource {
  readonly id: number;
  /** KVM_GET_REG_LIST. */
  registerIds(): bigint[];
  /** KVM_GET_ONE_REG. */
  getRegister(id: bigint): Uint8Array;
}

/** The registers of a vCPU as restore sets them. */
export interface VcpuTarget {
  readonly id: number;
  /** KVM_SET_ONE_REG. */
  setRegister(id: bigint, value: Uint8Array): void;
}

export interface Vcpu extends VcpuSource, VcpuTarget {}

/** A memory slot as the writer needs to know it. */
export type SourceSlot = Pick<MemorySlot, 'slot' | 'name' | 'guestAddress' | 'size' | 'readOnly'>;

/**
 * What the writer reads from a stopped VM: its slots, memory, tags and vCPU
 * registers. A VMM that only saves implements this and nothing more.
 */
export interface VmSource {
  /** 'simulated', 'kvm', 'raw-files', ... (recorded in the snapshot's annotations). */
  readonly backend: string;
  /** The host page size: the unit of memslots and of copyMteTags. */
  readonly pageSize: number;
  readonly mteEnabled: boolean;
  memorySlots(): readonly SourceSlot[];
  /** Reads guest memory through the VMM's mapping. The range must lie in one slot. */
  readMemory(guestAddress: GuestAddress, destination: Uint8Array): void;
  /**
   * The same read, asynchronous. Optional: a backend whose memory sits in
   * files implements it so that a stored save (level 0) reads ahead while it
   * checksums and writes. A compressing save calls readMemory (libuv's pool
   * is busy with its zstd calls), as the writer does without this.
   */
  readMemoryAsync?(guestAddress: GuestAddress, destination: Uint8Array): Promise<void>;
  /**
   * Whether a snapshot keeps this slot's tags. Optional: by default every
   * writable slot of an MTE VM is tagged. A VMM may leave out slots whose tags
   * mean nothing to it; the raw-files backend leaves out regions its layout
   * marks untagged.
   */
  isSlotTagged?(slot: number): boolean;
  /** KVM_ARM_MTE_COPY_TAGS; the writer asks only TAGS_FROM_GUEST. Returns guest bytes done; throws VmErrnoError if nothing was done. */
  copyMteTags(request: CopyMteTagsRequest): number;
  vcpus(): readonly VcpuSource[];
}

/**
 * What restore writes into a fresh VM, in KVM's order: MTE on, memslots,
 * memory, tags (TAGS_TO_GUEST), then vCPUs and their registers.
 */
export interface VmTarget {
  readonly backend: string;
  /** The host page size: a snapshot's page size must be a multiple of it. */
  readonly pageSize: number;
  /** KVM_ENABLE_CAP(KVM_CAP_ARM_MTE). EINVAL once a vCPU exists. */
  enableMte(): void;
  /** KVM_SET_USER_MEMORY_REGION with memory the backend maps for the VMM. */
  addMemorySlot(spec: MemorySlotSpec): void;
  /** Writes guest memory through the VMM's mapping (allowed on read-only slots: the VMM owns the mapping). */
  writeMemory(guestAddress: GuestAddress, source: Uint8Array): void;
  /** KVM_ARM_MTE_COPY_TAGS; restore asks only TAGS_TO_GUEST. */
  copyMteTags(request: CopyMteTagsRequest): number;
  /** KVM_CREATE_VCPU (and KVM_ARM_VCPU_INIT). */
  createVcpu(id: number): VcpuTarget;
  /** Releases the VM; restore calls it when it fails halfway. */
  close(): void;
}

/** KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE: KVM_GET_DIRTY_LOG no longer clears the log; KVM_CLEAR_DIRTY_LOG does. */
export const DIRTY_LOG_MANUAL_PROTECT = 1;
/** KVM_DIRTY_LOG_INITIALLY_SET: turning logging on marks every page of the slot dirty (with manual protect only). */
export const DIRTY_LOG_INITIALLY_SET = 2;

/** The argument of KVM_CLEAR_DIRTY_LOG (struct kvm_clear_dirty_log). */
export interface ClearDirtyLogRequest {
  readonly slot: number;
  /** The first page the bitmap covers; a multiple of 64. */
  readonly firstPage: number;
  /** Pages covered: a multiple of 64, or up to the slot's last page. */
  readonly numPages: number;
  /**
   * One bit per page from `firstPage` (bit i of byte j is page firstPage + 8j + i): the dirty pages to clear and
   * write-protect again. The kernel reads ceil(numPages / 64) * 8 bytes; a shorter buffer faults (EFAULT).
   */
  readonly bitmap: Uint8Array;
}

/** Bytes of a KVM dirty bitmap for `pages` pages: one bit each, in whole 64-bit words (kvm_dirty_bitmap_bytes). */
export function dirtyBitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** Whether page `page` is set in a dirty bitmap. */
export function isPageDirty(bitmap: Uint8Array, page: number): boolean {
  return (bitmap[page >> 3] & (1 << (page & 7))) !== 0;
}

/** The pages set in a dirty bitmap, ascending. */
export function dirtyPages(bitmap: Uint8Array): number[] {
  const pages: number[] = [];
  for (let byte = 0; byte < bitmap.length; byte++) {
    if (bitmap[byte] === 0) continue;
    for (let bit = 0; bit < 8; bit++) if (bitmap[byte] & (1 << bit)) pages.push(byte * 8 + bit);
  }
  return pages;
}

/** A whole KVM-shaped VM, as vmsnap's backends provide: a source and a target. */
export interface Vm extends VmSource, VmTarget {
  memorySlots(): readonly MemorySlot[];
  /** KVM_MEM_LOG_DIRTY_PAGES on or off for a slot. */
  setDirtyLogging(slot: number, enabled: boolean): void;
  /**
   * KVM_GET_DIRTY_LOG: the slot's dirty bitmap (dirtyBitmapBytes(pages) bytes), pages the guest wrote since logging
   * began or since the last get (or clear, under manual protect). Without manual protect the kernel clears what it
   * returns and write-protects those pages again. ENOENT if the slot does not log; EINVAL for a slot id KVM cannot have.
   */
  getDirtyLog(slot: number): Uint8Array;
  /** KVM_CLEAR_DIRTY_LOG: clears the bitmap's pages in the slot's log and write-protects them again. */
  clearDirtyLog(request: ClearDirtyLogRequest): void;
  /** KVM_CHECK_EXTENSION(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): the DIRTY_LOG_* flags the kernel takes, 0 without it. */
  manualDirtyLogProtectFlags(): number;
  /** KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) with DIRTY_LOG_* flags (0 turns manual protect off). */
  enableManualDirtyLogProtect(flags: number): void;
  createVcpu(id: number): Vcpu;
  vcpus(): readonly Vcpu[];
}

/** What restore tells a factory of the snapshot it is about to restore. */
export interface SnapshotRequirements {
  /** The snapshot's page size. A factory that can choose (the simulator) makes VMs of it. */
  readonly pageSize: number;
  /** The snapshot's metadata (regions, annotations), for a factory whose VM depends on them. */
  readonly metadata?: SnapshotMetadata;
}

/** Makes fresh VMs to restore into. */
export interface VmFactory<T extends VmTarget = Vm> {
  readonly backend: string;
  createVm(snapshot?: SnapshotRequirements): T;
}
