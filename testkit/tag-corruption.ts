/**
 * A deliberate fault for proving the checks work: a `Vm` that passes
 * everything through to the VM it wraps except one tag, which it changes on
 * its way into the guest (TO_GUEST). Restoring through it is restoring a
 * snapshot in which exactly one granule's tag was damaged.
 */

import { GRANULE_SIZE } from '../src/format/constants.js';
import {
  type ClearDirtyLogRequest,
  type CopyMteTagsRequest,
  type GuestAddress,
  type MemorySlot,
  type MemorySlotSpec,
  TAGS_TO_GUEST,
  type Vcpu,
  type Vm,
  type VmFactory,
} from '../src/vm/vm.js';

export interface TagCorruption {
  readonly guestAddress: GuestAddress;
  /** The tag the snapshot held, once a TO_GUEST copy covered the granule. */
  original: number | null;
  /** The tag written into the guest instead. */
  corrupted: number | null;
}

export class TagCorruptingVm implements Vm {
  constructor(
    private readonly inner: Vm,
    readonly corruption: TagCorruption,
  ) {}

  get backend(): string {
    return this.inner.backend;
  }
  get pageSize(): number {
    return this.inner.pageSize;
  }
  get mteEnabled(): boolean {
    return this.inner.mteEnabled;
  }
  enableMte(): void {
    this.inner.enableMte();
  }
  addMemorySlot(spec: MemorySlotSpec): void {
    this.inner.addMemorySlot(spec);
  }
  memorySlots(): readonly MemorySlot[] {
    return this.inner.memorySlots();
  }
  setDirtyLogging(slot: number, enabled: boolean): void {
    this.inner.setDirtyLogging(slot, enabled);
  }
  getDirtyLog(slot: number): Uint8Array {
    return this.inner.getDirtyLog(slot);
  }
  clearDirtyLog(request: ClearDirtyLogRequest): void {
    this.inner.clearDirtyLog(request);
  }
  manualDirtyLogProtectFlags(): number {
    return this.inner.manualDirtyLogProtectFlags();
  }
  enableManualDirtyLogProtect(flags: number): void {
    this.inner.enableManualDirtyLogProtect(flags);
  }
  readMemory(guestAddress: GuestAddress, destination: Uint8Array): void {
    this.inner.readMemory(guestAddress, destination);
  }
  writeMemory(guestAddress: GuestAddress, source: Uint8Array): void {
    this.inner.writeMemory(guestAddress, source);
  }
  createVcpu(id: number): Vcpu {
    return this.inner.createVcpu(id);
  }
  vcpus(): readonly Vcpu[] {
    return this.inner.vcpus();
  }
  close(): void {
    this.inner.close();
  }

  copyMteTags(request: CopyMteTagsRequest): number {
    const index = this.granuleIndex(request);
    if (index === null || !request.buffer) return this.inner.copyMteTags(request);
    const buffer = Uint8Array.from(request.buffer);
    const original = buffer[index] & 0xf;
    buffer[index] = (original + 1) & 0xf;
    this.corruption.original = original;
    this.corruption.corrupted = buffer[index];
    return this.inner.copyMteTags({ ...request, buffer });
  }

  /** The corrupted granule's index in this TO_GUEST request's buffer, if the request covers it. */
  private granuleIndex(request: CopyMteTagsRequest): number | null {
    if (request.flags !== TAGS_TO_GUEST || !request.buffer) return null;
    const offset = this.corruption.guestAddress - request.guestIpa;
    if (offset < 0n || offset >= request.length) return null;
    const index = Number(offset / BigInt(GRANULE_SIZE));
    return index < request.buffer.length ? index : null;
  }
}

/** A factory whose VMs damage the tag of the granule at `guestAddress` when tags are restored into them. */
export function tagCorruptingFactory(factory: VmFactory, guestAddress: GuestAddress): { factory: VmFactory; corruption: TagCorruption } {
  const corruption: TagCorruption = { guestAddress: guestAddress - (guestAddress % BigInt(GRANULE_SIZE)), original: null, corrupted: null };
  return {
    corruption,
    factory: {
      backend: factory.backend,
      createVm: (snapshot) => new TagCorruptingVm(factory.createVm(snapshot), corruption),
    },
  };
}
