/**
 * The index (INDX section, always the last section) and the trailer that
 * locates it (spec/FORMAT.md, "Index" and "Trailer").
 *
 * Index entry, 48 bytes:
 *   0 type[4]  4 region u32 (0xFFFFFFFF: none)  8 first_page u64  16 offset u64
 *  24 length u64 (section header + payload)     32 page_count u32  36 reserved u32
 *  40 payload_xxh64 u64 (the section header's)
 *
 * Trailer, 32 bytes at the very end of the file:
 *   0 index_offset u64  8 file_length u64  16 magic "VMSNAPND"  24 trailer_xxh64 u64 (over 0..23)
 */
import { equalBytes, view } from './bytes.js';
import { checksum } from './checksum.js';
import { INDEX_ENTRY_LENGTH, TRAILER_LENGTH, TRAILER_MAGIC } from './constants.js';
import { SnapshotFormatError } from './errors.js';

export interface IndexEntry {
  readonly type: string;
  readonly region: number;
  readonly firstPage: number;
  readonly offset: bigint;
  readonly length: bigint;
  readonly pageCount: number;
  readonly payloadChecksum: bigint;
}

function encodeEntry(entry: IndexEntry, bytes: Uint8Array, at: number): void {
  const dv = view(bytes);
  for (let c = 0; c < 4; c++) bytes[at + c] = entry.type.charCodeAt(c);
  dv.setUint32(at + 4, entry.region, true);
  dv.setBigUint64(at + 8, BigInt(entry.firstPage), true);
  dv.setBigUint64(at + 16, entry.offset, true);
  dv.setBigUint64(at + 24, entry.length, true);
  dv.setUint32(at + 32, entry.pageCount, true);
  dv.setBigUint64(at + 40, entry.payloadChecksum, true);
}

export function encodeIndex(entries: readonly IndexEntry[]): Uint8Array {
  const bytes = new Uint8Array(entries.length * INDEX_ENTRY_LENGTH);
  for (const [i, entry] of entries.entries()) encodeEntry(entry, bytes, i * INDEX_ENTRY_LENGTH);
  return bytes;
}

/**
 * Builds the index payload as sections are written, already encoded: the
 * index is the one part of a save that grows with the guest, so it costs the
 * 48 bytes an entry takes in the file and no more (about 96 KiB per GiB of
 * guest with 1 MiB chunks and tags).
 */
export class IndexBuilder {
  private bytes: Uint8Array;
  private count = 0;

  /**
   * `expected`: the entries the caller expects, when it knows: room for them
   * is made at once, not doubled up to (a 16 GiB guest's 1.5 MiB index grew to
   * 3 MiB, both buffers alive at the last doubling: issue 10).
   */
  constructor(expected = 64) {
    this.bytes = new Uint8Array(Math.max(1, expected) * INDEX_ENTRY_LENGTH);
  }

  add(entry: IndexEntry): void {
    const at = this.count * INDEX_ENTRY_LENGTH;
    if (at + INDEX_ENTRY_LENGTH > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.bytes.length * 2, 64 * INDEX_ENTRY_LENGTH));
      grown.set(this.bytes);
      this.bytes = grown;
    }
    encodeEntry(entry, this.bytes, at);
    this.count++;
  }

  get entries(): number {
    return this.count;
  }

  payload(): Uint8Array {
    return this.bytes.subarray(0, this.count * INDEX_ENTRY_LENGTH);
  }
}

/** Decodes entry `i` of an index payload whose length is a multiple of 48; `offset` is the payload's file offset. */
export function decodeIndexEntry(payload: Uint8Array, i: number, offset: bigint, dv: DataView = view(payload)): IndexEntry {
  const at = i * INDEX_ENTRY_LENGTH;
  const firstPage = dv.getBigUint64(at + 8, true);
  if (firstPage > 0xffff_ffffn || dv.getUint32(at + 36, true) !== 0) {
    throw new SnapshotFormatError('bad-index', `index entry ${i} has a bad first_page or reserved field`, {
      section: 'INDX',
      offset: offset + BigInt(at),
    });
  }
  return {
    type: String.fromCharCode(payload[at], payload[at + 1], payload[at + 2], payload[at + 3]),
    region: dv.getUint32(at + 4, true),
    firstPage: Number(firstPage),
    offset: dv.getBigUint64(at + 16, true),
    length: dv.getBigUint64(at + 24, true),
    pageCount: dv.getUint32(at + 32, true),
    payloadChecksum: dv.getBigUint64(at + 40, true),
  };
}

/** Checks the payload is whole entries and returns how many. */
export function indexEntryCount(payload: Uint8Array, offset: bigint): number {
  if (payload.length % INDEX_ENTRY_LENGTH !== 0) {
    throw new SnapshotFormatError(
      'bad-index',
      `index payload of ${payload.length} bytes is not a whole number of ${INDEX_ENTRY_LENGTH}-byte entries`,
      { section: 'INDX', offset },
    );
  }
  return payload.length / INDEX_ENTRY_LENGTH;
}

/** The first field in which two entries differ, by the spec's name, or null when they are equal. */
export function differingIndexField(actual: IndexEntry, expected: IndexEntry): string | null {
  if (actual.type !== expected.type) return 'type';
  if (actual.region !== expected.region) return 'region';
  if (actual.firstPage !== expected.firstPage) return 'first_page';
  if (actual.offset !== expected.offset) return 'offset';
  if (actual.length !== expected.length) return 'length';
  if (actual.pageCount !== expected.pageCount) return 'page_count';
  if (actual.payloadChecksum !== expected.payloadChecksum) return 'payload_checksum';
  return null;
}

export interface Trailer {
  readonly indexOffset: bigint;
  readonly fileLength: bigint;
}

export function encodeTrailer(trailer: Trailer): Uint8Array {
  const bytes = new Uint8Array(TRAILER_LENGTH);
  const dv = view(bytes);
  dv.setBigUint64(0, trailer.indexOffset, true);
  dv.setBigUint64(8, trailer.fileLength, true);
  bytes.set(TRAILER_MAGIC, 16);
  dv.setBigUint64(24, checksum(bytes.subarray(0, 24)), true);
  return bytes;
}

/** `offset` is where the trailer was read, so errors point at it. */
export function decodeTrailer(bytes: Uint8Array, offset: bigint): Trailer {
  const where = { section: 'trailer', offset };
  if (bytes.length !== TRAILER_LENGTH || !equalBytes(bytes.subarray(16, 24), TRAILER_MAGIC)) {
    throw new SnapshotFormatError(
      'bad-trailer',
      'no trailer at the end of the file: it is truncated, or was not written to the end',
      where,
    );
  }
  const dv = view(bytes);
  if (dv.getBigUint64(24, true) !== checksum(bytes.subarray(0, 24)))
    throw new SnapshotFormatError('checksum-mismatch', 'trailer checksum mismatch', where);
  return { indexOffset: dv.getBigUint64(0, true), fileLength: dv.getBigUint64(8, true) };
}
