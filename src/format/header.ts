/**
 * The fixed 64-byte file header (spec/FORMAT.md, "File header").
 *
 *   0  magic[8]          8  major u16   10 minor u16   12 header_length u32
 *  16  page_size u32    20  pages_per_chunk u32
 *  24  granule_size u16 26  tag_bits u8  27 codec u8   28 checksum u8  29 reserved[3]
 *  32  reserved[24]     56  header_xxh64 u64 (over bytes 0..55)
 */

import { equalBytes, view } from './bytes.js';
import { checksum } from './checksum.js';
import {
  CHECKSUM,
  CODEC,
  FILE_MAGIC,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  GRANULE_SIZE,
  HEADER_LENGTH,
  MAX_CHUNK_CONTENT,
  PAGE_SIZES,
  TAG_BITS,
} from './constants.js';
import { SnapshotFormatError } from './errors.js';
import type { SnapshotHeader } from './model.js';

/** `minor` is FORMAT_MINOR for a full snapshot, DIFF_FORMAT_MINOR for a diff. */
export function encodeHeader(pageSize: number, pagesPerChunk: number, codec: number, minor: number = FORMAT_MINOR): Uint8Array {
  const bytes = new Uint8Array(HEADER_LENGTH);
  const dv = view(bytes);
  bytes.set(FILE_MAGIC, 0);
  dv.setUint16(8, FORMAT_MAJOR, true);
  dv.setUint16(10, minor, true);
  dv.setUint32(12, HEADER_LENGTH, true);
  dv.setUint32(16, pageSize, true);
  dv.setUint32(20, pagesPerChunk, true);
  dv.setUint16(24, GRANULE_SIZE, true);
  bytes[26] = TAG_BITS;
  bytes[27] = codec;
  bytes[28] = CHECKSUM.xxh64;
  dv.setBigUint64(56, checksum(bytes.subarray(0, 56)), true);
  return bytes;
}

function fail(
  message: string,
  offset: number,
  code: 'bad-header' | 'bad-magic' | 'unsupported-version' | 'checksum-mismatch' = 'bad-header',
): never {
  throw new SnapshotFormatError(code, message, { section: 'header', offset });
}

/** Checks everything the header says before anything else of the file is trusted. */
export function decodeHeader(bytes: Uint8Array): SnapshotHeader {
  if (bytes.length < HEADER_LENGTH) {
    throw new SnapshotFormatError('truncated', `file is ${bytes.length} bytes, shorter than the ${HEADER_LENGTH}-byte header`, {
      section: 'header',
      offset: 0,
    });
  }
  if (!equalBytes(bytes.subarray(0, 8), FILE_MAGIC)) fail('not a vmsnap file (bad magic)', 0, 'bad-magic');
  const dv = view(bytes);
  const major = dv.getUint16(8, true);
  const minor = dv.getUint16(10, true);
  // The version is read before the checksum so that a newer file gets the right message.
  if (major !== FORMAT_MAJOR) {
    fail(
      `format version ${major}.${minor} is not supported: ` +
        `this vmsnap reads ${FORMAT_MAJOR}.x${major > FORMAT_MAJOR ? '; upgrade vmsnap' : ''}`,
      8,
      'unsupported-version',
    );
  }
  const stored = dv.getBigUint64(56, true);
  if (stored !== checksum(bytes.subarray(0, 56))) fail('header checksum mismatch', 56, 'checksum-mismatch');
  if (dv.getUint32(12, true) !== HEADER_LENGTH) fail(`header_length ${dv.getUint32(12, true)} is not ${HEADER_LENGTH}`, 12);
  const pageSize = dv.getUint32(16, true);
  if (!PAGE_SIZES.includes(pageSize)) fail(`page size ${pageSize} is not 4096, 16384 or 65536`, 16);
  const pagesPerChunk = dv.getUint32(20, true);
  if (pagesPerChunk < 1 || pagesPerChunk * pageSize > MAX_CHUNK_CONTENT) {
    fail(`pages_per_chunk ${pagesPerChunk} puts more than ${MAX_CHUNK_CONTENT} bytes in a chunk`, 20);
  }
  const granuleSize = dv.getUint16(24, true);
  if (granuleSize !== GRANULE_SIZE) fail(`granule size ${granuleSize} is not ${GRANULE_SIZE}`, 24);
  const tagBits = bytes[26];
  if (tagBits !== TAG_BITS) fail(`tag width ${tagBits} bits is not ${TAG_BITS}`, 26);
  const codec = bytes[27];
  if (codec !== CODEC.none && codec !== CODEC.zstd) fail(`unknown codec id ${codec}`, 27);
  const checksumId = bytes[28];
  if (checksumId !== CHECKSUM.xxh64) fail(`unknown checksum id ${checksumId}`, 28);
  return { major, minor, pageSize, granuleSize, tagBits, codec, checksum: checksumId, pagesPerChunk };
}
