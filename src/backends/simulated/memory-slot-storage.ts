/**
 * The simulator's store: a memslot in process memory.
 *
 * One zero-filled allocation per slot (the OS maps zero pages lazily, so an
 * untouched 1 GiB guest costs little), tags packed two per byte (1/32 of the
 * slot) and one "MTE tagged" bit per page.
 */

import { GRANULE_SIZE } from '../../format/constants.js';
import { packTags, unpackTags } from '../../format/tag-packing.js';
import type { SlotOffset, SlotPage, SlotStorage, SlotStorageFactory, TagAccess } from '../../kernel-model/slot-storage.js';
import { type MemorySlotSpec, VmErrnoError } from '../../vm/vm.js';

/** ArrayBuffers beyond this size are not portable across Node versions; larger slots are refused. */
export const MAX_IN_MEMORY_SLOT_BYTES = 2 ** 32 - 65536;

export class InMemorySlotStorage implements SlotStorage {
  readonly pageCount: number;
  readonly tagAccess: TagAccess = 'read-write';
  private readonly memory: Uint8Array;
  private readonly packedTags: Uint8Array;
  private readonly taggedPages: Uint8Array;
  private readonly granulesPerPage: number;

  constructor(
    readonly size: number,
    readonly pageSize: number,
  ) {
    if (size > MAX_IN_MEMORY_SLOT_BYTES) {
      // A host that cannot back a memslot: the simulated VM keeps guest memory in this process.
      throw new VmErrnoError(
        'ENOMEM',
        'KVM_SET_USER_MEMORY_REGION',
        `an in-memory slot of ${size} bytes exceeds the simulated VM's ${MAX_IN_MEMORY_SLOT_BYTES}; restore to raw files (--ram-out)`,
      );
    }
    this.pageCount = size / pageSize;
    this.granulesPerPage = pageSize / GRANULE_SIZE;
    this.memory = new Uint8Array(size);
    this.packedTags = new Uint8Array(size / (GRANULE_SIZE * 2));
    this.taggedPages = new Uint8Array(Math.ceil(this.pageCount / 8));
  }

  readMemory(offset: SlotOffset, destination: Uint8Array): void {
    destination.set(this.memory.subarray(offset, offset + destination.length));
  }

  writeMemory(offset: SlotOffset, source: Uint8Array): void {
    this.memory.set(source, offset);
  }

  isPageTagged(page: SlotPage): boolean {
    return (this.taggedPages[page >> 3] & (1 << (page & 7))) !== 0;
  }

  markPageTagged(page: SlotPage): void {
    this.taggedPages[page >> 3] |= 1 << (page & 7);
  }

  readTags(page: SlotPage, firstGranule: number, destination: Uint8Array): void {
    unpackTags(this.packedTags, page * this.granulesPerPage + firstGranule, destination);
  }

  writeTags(page: SlotPage, firstGranule: number, source: Uint8Array): void {
    packTags(source, this.packedTags, page * this.granulesPerPage + firstGranule);
  }

  clearPageTags(page: SlotPage): void {
    const bytesPerPage = this.granulesPerPage / 2;
    this.packedTags.fill(0, page * bytesPerPage, (page + 1) * bytesPerPage);
  }

  /** The whole slot's bytes, for tests and the workload filler that write in bulk. */
  view(): Uint8Array {
    return this.memory;
  }

  flush(): void {}
  close(): void {}
}

export class InMemorySlotStorageFactory implements SlotStorageFactory {
  createSlotStorage(spec: MemorySlotSpec, pageSize: number): InMemorySlotStorage {
    return new InMemorySlotStorage(Number(spec.size), pageSize);
  }
}
