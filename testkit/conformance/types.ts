/**
 * What the conformance suite runs against and what it reports. A target is a
 * backend plus the kernel it claims to behave like; rows only use the `Vm`
 * interface, so the simulator and the real KVM backend run the same rows.
 */
import type { CopyMteTagsRequest, Vm } from '../../src/vm/vm.js';

export interface ConformanceTarget {
  readonly name: string;
  /** Host page size of the VMs createVm makes. */
  readonly pageSize: number;
  /** The kernel whose behaviour the rows expect, [major, minor]. */
  readonly kernelVersion: [number, number];
  /** A fresh VM: MTE not yet enabled, no memslots, no vCPUs. */
  createVm(): Vm;
  /** KVM_ARM_MTE_COPY_TAGS on `vm` issued from a process that did not create it; rows needing it skip without it. */
  copyMteTagsFromOtherProcess?(vm: Vm, request: CopyMteTagsRequest): number;
  /**
   * Guest code on `vm` (MTE enabled, its slots added, no vCPU yet) that makes one access at a time to addresses in
   * the 1 GiB block at SLOT_IPA; it may add memslot GUEST_CODE_SLOT at GUEST_CODE_IPA for itself. Rows needing it
   * skip without it.
   */
  guestAccess?(vm: Vm): GuestAccess;
}

/**
 * One access by guest code, through stage 2 as the guest's own: what the dirty log sees, unlike the VMM's writes
 * through its mapping or KVM_ARM_MTE_COPY_TAGS.
 */
export interface GuestAccess {
  /** STR of a 64-bit word. */
  store64(guestAddress: bigint, value: bigint): void;
  /** STG: the granule at `guestAddress` (16-byte aligned) gets tag `tag` (0..15); its data is untouched. */
  storeTag(guestAddress: bigint, tag: number): void;
  /** LDR of a 64-bit word. */
  load64(guestAddress: bigint): bigint;
  /** LDG: the granule's tag. */
  loadTag(guestAddress: bigint): number;
}

export interface ConformanceRow {
  /** Stable kebab-case id, e.g. "null-buffer". */
  readonly id: string;
  readonly title: string;
  /** False skips the row for this target (a capability it lacks). Default: applies. */
  appliesTo?(target: ConformanceTarget): boolean;
  /** Throws ConformanceMismatch (or any error) when the target differs from the kernel. */
  run(target: ConformanceTarget): void | Promise<void>;
}

export type ConformanceStatus = 'pass' | 'fail' | 'skip';

export interface ConformanceResult {
  readonly id: string;
  readonly title: string;
  readonly status: ConformanceStatus;
  /** Why it failed or was skipped. */
  readonly message?: string;
  readonly durationMs: number;
}

/** A target answered differently from the kernel. */
export class ConformanceMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConformanceMismatch';
  }
}
