/**
 * What a snapshot holds, as the library sees it once decoded. spec/FORMAT.md
 * defines the bytes; these are the values.
 */
import type { VcpuState } from './registers.js';

/** A guest physical address (IPA). */
export type GuestAddress = bigint;

/** A guest memory region as the snapshot records it (a KVM memslot and whether its tags are saved). */
export interface SnapshotRegion {
  /** Position in the metadata's region list; chunks name their region by it. */
  readonly index: number;
  readonly name: string;
  readonly guestAddress: bigint;
  readonly size: bigint;
  /** Tags are saved for every page of this region. */
  readonly mte: boolean;
  readonly readOnly: boolean;
  /** KVM slot number the region was saved from (restore reuses it). */
  readonly slot: number;
}

/** A named opaque blob of VMM or device state. */
export interface VmmBlob {
  readonly name: string;
  readonly data: Uint8Array;
}

export interface SnapshotMetadata {
  /** 16 random bytes naming this snapshot; a diff snapshot's parent field refers to it. */
  readonly snapshotId: Uint8Array;
  /** The parent's snapshotId: set in a diff snapshot (it has a DIFF section); null in a full one. */
  readonly parentId: Uint8Array | null;
  /** Milliseconds since the Unix epoch. */
  readonly createdMs: bigint;
  /** The program that wrote the file ("vmsnap 0.1.0"). */
  readonly tool: string;
  readonly regions: readonly SnapshotRegion[];
  /** Free-form string annotations (source backend, command line, host). */
  readonly annotations: Readonly<Record<string, string>>;
}

/** The fixed header's values. */
export interface SnapshotHeader {
  readonly major: number;
  readonly minor: number;
  readonly pageSize: number;
  readonly granuleSize: number;
  readonly tagBits: number;
  readonly codec: number;
  readonly checksum: number;
  readonly pagesPerChunk: number;
}

export type ChunkKind = 'ram' | 'tags';

/** One chunk of a region's pages, as the index and the chunk header both describe it. */
export interface ChunkLocation {
  readonly kind: ChunkKind;
  readonly region: number;
  /** Page index inside the region. */
  readonly firstPage: number;
  readonly pageCount: number;
  /** File offset of the chunk's section header. */
  readonly offset: bigint;
  /** Section header plus payload, in bytes. */
  readonly length: bigint;
}

/**
 * Every chunk of a snapshot, in file order: an array of ChunkLocation whose
 * elements are made when read (kept compact: issue 10), so compare them by
 * their fields, never by identity. Its fields can also be read by position
 * without making an element.
 */
export interface ChunkList extends ReadonlyArray<ChunkLocation> {
  kindOf(i: number): ChunkKind;
  regionOf(i: number): number;
  firstPageOf(i: number): number;
  pageCountOf(i: number): number;
  /** The position of the chunk of `kind` over `region`'s pages from `firstPage`, or -1 if there is none. */
  positionOf(kind: ChunkKind, region: number, firstPage: number): number;
}

/** A decoded RAM chunk: every page of its range, absent (all-zero) pages filled with zeros. */
export interface RamChunk extends ChunkLocation {
  /** One bit per page, LSB first: set where the page was stored (not all zero). */
  readonly present: Uint8Array;
  /** pageCount * pageSize bytes. */
  readonly data: Uint8Array;
  /**
   * The present pages alone, in order, when the reader kept them so: `data` is
   * then expanded from them when first read, and restore writes the present
   * pages straight from here.
   */
  readonly content?: Uint8Array;
}

/** A decoded tag chunk: one byte per 16-byte granule (the ioctl layout), zeros for absent pages. */
export interface TagChunk extends ChunkLocation {
  /** One bit per page, LSB first: set where the page has a nonzero tag. */
  readonly present: Uint8Array;
  /** pageCount * pageSize / 16 bytes, each 0..15. */
  readonly tags: Uint8Array;
  /**
   * The present pages' tags alone, packed two per byte (the stored layout), in
   * order, when the reader kept them so: `tags` is then expanded from them when
   * first read.
   */
  readonly packedTags?: Uint8Array;
}

/**
 * A diff snapshot's changed-page map of one grid chunk (a CHGP section): the
 * pages the diff gives whole. Every other page of the range is the parent's.
 */
export interface ChangedPagesLocation {
  readonly region: number;
  readonly firstPage: number;
  readonly pageCount: number;
  /** Pages marked changed (the section's present_count). */
  readonly changedCount: number;
  /** File offset of the section header. */
  readonly offset: bigint;
  readonly length: bigint;
}

/** A diff's changed-page maps, in file order: an array whose elements are made when read, as ChunkList's. */
export interface ChangedPagesList extends ReadonlyArray<ChangedPagesLocation> {
  /** The position of the map of `region`'s pages from `firstPage`, or -1 if there is none. */
  positionOf(region: number, firstPage: number): number;
}

export interface ChangedPages extends ChangedPagesLocation {
  /** One bit per page, LSB first: set where the diff gives the page (its RAM and its tags). */
  readonly changed: Uint8Array;
}

/** What makes a snapshot a diff: its parent (the DIFF section). */
export interface DiffInfo {
  readonly parentId: Uint8Array;
  /** Pages marked changed in all its changed-page maps together. */
  readonly changedPages: bigint;
}

/** A VCPU section, without its registers. */
export interface VcpuSummary {
  readonly id: number;
  readonly registers: number;
}

/** A BLOB section, without its data. */
export interface BlobSummary {
  readonly name: string;
  readonly bytes: number;
}

/**
 * A snapshot opened for random access. Opening checks everything but the
 * chunks' contents (header, trailer, index, every section header and chunk
 * header, metadata, vCPUs, blobs); every chunk read checks that chunk's
 * checksums and content. Memory use is bounded by the chunk size and the
 * format's limits, whatever the guest size.
 */
export interface SnapshotReader {
  readonly path: string;
  readonly header: SnapshotHeader;
  readonly metadata: SnapshotMetadata;
  readonly regions: readonly SnapshotRegion[];
  /** Every chunk in file order (each element made when read: compare by fields). */
  readonly chunks: ChunkList;
  readonly fileSize: bigint;
  /** The VCPU sections in file order, as checked when the file was opened: vcpus() decodes them. */
  readonly vcpuSummaries: readonly VcpuSummary[];
  /** The BLOB sections in file order: blobs() reads their data. */
  readonly blobSummaries: readonly BlobSummary[];
  /**
   * Set when the file is a diff snapshot: its chunks then hold only the pages
   * its changed-page maps mark, and the rest is its parent's. Read a diff
   * through a SnapshotChain (openChain) to see the guest it stands for.
   */
  readonly diff: DiffInfo | null;
  /** A diff's changed-page maps, one per RAM chunk, in file order (empty for a full snapshot). */
  readonly changedPageMaps: ChangedPagesList;

  readRamChunk(location: ChunkLocation): Promise<RamChunk>;
  readTagChunk(location: ChunkLocation): Promise<TagChunk>;
  /** A diff's changed-page map, read and checked. */
  readChangedPages(location: ChangedPagesLocation): Promise<ChangedPages>;
  /** Guest bytes of [guestAddress, guestAddress + length) inside one region. */
  readMemory(guestAddress: bigint, length: number): Promise<Uint8Array>;
  /** One tag per granule of [guestAddress, guestAddress + length), 16-byte aligned, inside one MTE region. */
  readTags(guestAddress: bigint, length: number): Promise<Uint8Array>;
  vcpus(): Promise<VcpuState[]>;
  blobs(): Promise<VmmBlob[]>;
  close(): Promise<void>;
}
