/**
 * A read-only memslot store over one PT_LOAD of an ELF core (and its memtag
 * segment, if any), so that the kernel model (src/kernel-model) serves the
 * core's memory and tags with exactly the KVM tag-copy semantics.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import { VmsnapError } from '../format/errors.js';
import type { SlotOffset, SlotPage, SlotStorage, SlotStorageFactory } from '../kernel-model/slot-storage.js';
import type { MemorySlotSpec } from '../vm/vm.js';
import type { ElfCore, ElfSegment } from './elf-core-reader.js';
import { hex } from './errors.js';

/** A core segment handed to the model as a memslot. */
export interface CoreRegionSource {
  readonly load: ElfSegment;
  readonly memtag: ElfSegment | undefined;
}

/** Import never writes into a core; a write reaching the store is a bug in the caller. */
export class ReadOnlyCoreError extends VmsnapError {
  constructor(operation: string, guestAddress: bigint) {
    super('read-only-core', 'usage', `${operation} at guest address ${hex(guestAddress)}: an ELF core is read-only`);
  }
}

export class CoreSlotStorage implements SlotStorage {
  readonly pageCount: number;
  /** 'read' over a memtag segment (a TO_GUEST faults, as on a page KVM cannot map for writing), else 'none'. */
  readonly tagAccess: 'read' | 'none';
  /** Whether the region has a memtag segment at all. */
  readonly holdsTags: boolean;
  private readonly granulesPerPage: number;

  constructor(
    private readonly core: ElfCore,
    private readonly source: CoreRegionSource,
    private readonly pageSize: number,
  ) {
    this.pageCount = Number(source.load.memSize / BigInt(pageSize));
    this.granulesPerPage = pageSize / GRANULE_SIZE;
    this.tagAccess = source.memtag ? 'read' : 'none';
    this.holdsTags = source.memtag !== undefined;
  }

  readMemory(offset: SlotOffset, destination: Uint8Array): void {
    this.core.readLoad(this.source.load, BigInt(offset), destination);
  }

  isPageTagged(_page: SlotPage): boolean {
    return this.source.memtag !== undefined;
  }

  readTags(page: SlotPage, firstGranule: number, destination: Uint8Array): void {
    if (!this.source.memtag) {
      destination.fill(0);
      return;
    }
    // The memtag segment may cover only part of its PT_LOAD (Linux sizes it to the tagged range, which may end
    // mid-page): granules outside it have no tag in the core and read as 0.
    const memtag = this.source.memtag;
    const start = Number((memtag.address - this.source.load.address) / BigInt(GRANULE_SIZE));
    const count = Number(memtag.memSize / BigInt(GRANULE_SIZE));
    const first = page * this.granulesPerPage + firstGranule;
    const from = Math.max(first, start);
    const to = Math.min(first + destination.length, start + count);
    destination.fill(0);
    if (from < to) this.core.readTags(memtag, from - start, destination.subarray(from - first, to - first));
  }

  writeMemory(offset: SlotOffset): void {
    throw new ReadOnlyCoreError('write', this.source.load.address + BigInt(offset));
  }

  markPageTagged(page: SlotPage): void {
    throw new ReadOnlyCoreError('tag store', this.pageAddress(page));
  }

  writeTags(page: SlotPage): void {
    throw new ReadOnlyCoreError('tag store', this.pageAddress(page));
  }

  clearPageTags(page: SlotPage): void {
    throw new ReadOnlyCoreError('tag clear', this.pageAddress(page));
  }

  private pageAddress(page: SlotPage): bigint {
    return this.source.load.address + BigInt(page * this.pageSize);
  }

  flush(): void {}
  close(): void {}
}

/** Hands each memslot the core segment at its guest address. */
export class CoreSlotStorageFactory implements SlotStorageFactory {
  constructor(
    private readonly core: ElfCore,
    private readonly sources: readonly CoreRegionSource[],
  ) {}

  createSlotStorage(spec: MemorySlotSpec, pageSize: number): SlotStorage {
    const source = this.sources.find((s) => s.load.address === spec.guestAddress);
    if (!source) throw new RangeError(`no PT_LOAD of ${this.core.path} starts at guest address ${hex(spec.guestAddress)}`);
    return new CoreSlotStorage(this.core, source, pageSize);
  }
}
