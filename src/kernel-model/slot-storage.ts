/**
 * Where a memslot's guest bytes and allocation tags live.
 *
 * The kernel model (copy-mte-tags.ts) owns the semantics of the tag ioctl and
 * the memslot table; a store only keeps bytes and tags. Splitting them this
 * way lets one model of KVM run over memory (the simulator), over plain files
 * (raw-files) or over an ELF core, with identical behaviour.
 *
 * Offsets are byte offsets inside the slot; pages are host pages counted from
 * the slot's first page; granules are 16-byte units counted inside a page.
 * Tags cross this interface one per byte, values 0..15.
 */
import type { MemorySlotSpec } from '../vm/vm.js';

/** Byte offset inside a memslot. */
export type SlotOffset = number;
/** Host page index inside a memslot. */
export type SlotPage = number;

export type TagAccess = 'none' | 'read' | 'read-write';

export interface SlotStorage {
  readonly pageCount: number;
  /**
   * What the store can do with tags: 'read-write' normally; 'read' for a
   * source opened read-only (an ELF core, raw files opened as a source);
   * 'none' where the backing keeps no tags. Tags read as zero under 'none',
   * and a TO_GUEST under 'read' or 'none' faults (EFAULT) like a page KVM
   * cannot map for writing, so writes never reach such a store.
   */
  readonly tagAccess: TagAccess;

  readMemory(offset: SlotOffset, destination: Uint8Array): void;
  /** Optional asynchronous read, for stores backed by files. */
  readMemoryAsync?(offset: SlotOffset, destination: Uint8Array): Promise<void>;
  writeMemory(offset: SlotOffset, source: Uint8Array): void;

  /** The kernel's per-page "MTE tagged" flag (PG_mte_tagged): untagged pages read back as zero tags. */
  isPageTagged(page: SlotPage): boolean;
  markPageTagged(page: SlotPage): void;
  /** Reads `destination.length` tags from granule `firstGranule` of `page`. */
  readTags(page: SlotPage, firstGranule: number, destination: Uint8Array): void;
  /** Stores the tags in `source` (already 0..15) from granule `firstGranule` of `page`. */
  writeTags(page: SlotPage, firstGranule: number, source: Uint8Array): void;
  /** mte_clear_page_tags: every granule of the page to tag 0. */
  clearPageTags(page: SlotPage): void;

  /** Makes written data durable (files); a no-op in memory. */
  flush(): void;
  close(): void;
}

/** Makes the store for each memslot as KVM_SET_USER_MEMORY_REGION adds it. */
export interface SlotStorageFactory {
  createSlotStorage(spec: MemorySlotSpec, pageSize: number): SlotStorage;
}
