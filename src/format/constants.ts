/**
 * The format's constants, all in one place, in the order spec/FORMAT.md
 * introduces them. Every limit below exists so that a hostile file cannot make
 * a reader allocate or loop without bound: a reader checks a declared length
 * against its limit before it allocates anything.
 */

/** File magic: 0x89 (catches 7-bit transfers), "VMS", CR LF (catches newline conversion), ^Z, LF. */
export const FILE_MAGIC = Uint8Array.of(0x89, 0x56, 0x4d, 0x53, 0x0d, 0x0a, 0x1a, 0x0a);
/** Trailer magic: "VMSNAPND" marks a complete file. */
export const TRAILER_MAGIC = Uint8Array.of(0x56, 0x4d, 0x53, 0x4e, 0x41, 0x50, 0x4e, 0x44);

export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;
/** Diff snapshots (spec section 4.1) are written as 1.1; full snapshots stay 1.0, byte for byte. */
export const DIFF_FORMAT_MINOR = 1;

export const HEADER_LENGTH = 64;
export const SECTION_HEADER_LENGTH = 32;
export const CHUNK_HEADER_LENGTH = 40;
export const INDEX_ENTRY_LENGTH = 48;
export const TRAILER_LENGTH = 32;

export const GRANULE_SIZE = 16;
export const TAG_BITS = 4;
/** Tags are stored two per byte: a page of `pageSize` bytes has pageSize / 32 tag bytes. */
export const GUEST_BYTES_PER_TAG_BYTE = GRANULE_SIZE * 2;
export const PAGE_SIZES: readonly number[] = [4096, 16384, 65536];

export const CODEC = { none: 0, zstd: 1 } as const;
export const CHECKSUM = { xxh64: 1 } as const;
export const ENCODING = { raw: 0, compressed: 1 } as const;

/** Section types. An uppercase first letter marks a critical section (see isCritical). */
export const SECTION = {
  metadata: 'META',
  ramChunk: 'RAMC',
  tagChunk: 'TAGC',
  vcpu: 'VCPU',
  blob: 'BLOB',
  index: 'INDX',
  /** A diff snapshot (1.1): right after META, names the parent. Critical: a 1.0 reader refuses the file. */
  diff: 'DIFF',
  /** A diff snapshot's changed-page map of one grid chunk (1.1), right before that chunk's RAMC. */
  changedPages: 'CHGP',
} as const;

/** A chunk's uncompressed content never exceeds this: it keeps every zstd frame decodable by the 16 MiB-heap wasm codec. */
export const MAX_CHUNK_CONTENT = 4 * 1024 * 1024;
/** The highest zstd level a writer may use: higher levels need windows the wasm codec cannot hold. */
export const MAX_ZSTD_LEVEL = 9;

/**
 * Upper bounds (spec/FORMAT.md, "Limits"), checked before anything is
 * allocated: each declared length against its limit, each count and total as
 * sections arrive. They bound what any reader holds, whatever the file says.
 */
export const LIMITS = {
  metadata: 16 * 1024 * 1024,
  /** The DIFF payload: a small map naming the parent. */
  diff: 64 * 1024,
  vcpu: 4 * 1024 * 1024,
  blob: 16 * 1024 * 1024,
  /** An unknown ancillary section's payload: skipped, never held, but not read forever either. */
  ancillary: 16 * 1024 * 1024,
  /** Every section before the index (META, chunks, VCPU, BLOB, ancillary): the index is at most 48 MiB. */
  sections: 1_048_576,
  regions: 65_536,
  vcpus: 4_096,
  /** All VCPU payloads of a file together: a restore holds every vCPU until the end of the file. */
  vcpuTotal: 16 * 1024 * 1024,
  blobs: 4_096,
  /** All BLOB payloads of a file together: a restore hands every blob back in memory. */
  blobTotal: 64 * 1024 * 1024,
  registersPerVcpu: 65_536,
  /** Registers of all vCPUs of a file together: decoded, each is a small object, so their number bounds memory too. */
  registers: 524_288,
  /** 2^52 bytes of guest memory per region: the whole of the largest arm64 IPA space (52 bits). */
  regionSize: 1n << 52n,
  /** Unicode code points (not UTF-16 units, not bytes) of a region's or a blob's name. */
  name: 256,
  /** Code points of META's `tool` and of an annotation's key. */
  text: 4_096,
  /** Code points of an annotation's value. */
  annotationValue: 65_536,
  /** Arrays and maps inside arrays and maps, counting the payload's own map as depth 1. */
  nesting: 32,
} as const;

/** The largest zstd window a chunk's frame may ask for (Window_Size): as large as the largest chunk content, no larger. */
export const MAX_ZSTD_WINDOW = 4 * 1024 * 1024;

/** Region index written in index entries of sections that belong to no region. */
export const NO_REGION = 0xffff_ffff;
