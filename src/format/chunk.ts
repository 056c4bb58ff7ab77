/**
 * RAM and tag chunks (spec/FORMAT.md, "Chunks"). A chunk covers a fixed range
 * of one region's pages; RAMC holds their bytes and TAGC their tags, and both
 * share this payload layout:
 *
 *   0 region u32          4 page_count u32       8 first_page u64
 *  16 encoding u8        17 reserved[3]         20 present_count u32
 *  24 content_length u64 32 content_xxh64 u64   40 bitmap[ceil(page_count / 8)]
 *  40 + bitmap: stored content (raw, or one zstd frame) to the end of the payload
 *
 * The bitmap has one bit per page, LSB first; a clear bit leaves the page out
 * (RAM all zero, or tags all zero). The content is the present pages in order:
 * page_size bytes each for RAMC, page_size / 32 bytes each for TAGC (two tags
 * per byte, low nibble = lower address). content_xxh64 is over the content
 * uncompressed, so it also proves the decompressor right.
 */
import { type FormatErrorCode, VmsnapError } from './errors.js';

export type ChunkFaultCode = Extract<FormatErrorCode, 'bad-chunk' | 'checksum-mismatch' | 'decompression-failed'>;

import { isAllZero, view } from './bytes.js';
import { checksum } from './checksum.js';
import { CHUNK_HEADER_LENGTH, ENCODING, GRANULE_SIZE, GUEST_BYTES_PER_TAG_BYTE } from './constants.js';
import type { ChunkKind } from './model.js';
import { forEachRun } from './page-runs.js';
import { packTaggedPages, unpackTags } from './tag-packing.js';
import type { ZstdCodec } from './zstd.js';

export interface ChunkHeader {
  readonly region: number;
  readonly pageCount: number;
  readonly firstPage: number;
  readonly encoding: number;
  readonly presentCount: number;
  readonly contentLength: number;
  readonly contentChecksum: bigint;
}

export function bitmapLength(pageCount: number): number {
  return (pageCount + 7) >>> 3;
}

/** Bytes of content one present page contributes. */
export function contentBytesPerPage(kind: ChunkKind, pageSize: number): number {
  return kind === 'ram' ? pageSize : pageSize / GUEST_BYTES_PER_TAG_BYTE;
}

export function isPagePresent(bitmap: Uint8Array, page: number): boolean {
  return ((bitmap[page >>> 3] >>> (page & 7)) & 1) === 1;
}

export interface ChunkRange {
  readonly region: number;
  readonly firstPage: number;
  readonly pageCount: number;
  readonly pageSize: number;
}

export interface CompressionChoice {
  readonly codec: ZstdCodec | null;
  readonly level: number;
}

/**
 * Pages of `ram` that are not all zero: the bitmap, and their bytes packed in
 * order; `inPlace` packs them to the front of `ram` itself (no second buffer),
 * for a caller that owns `ram` and reads it into again afterwards.
 */
function gatherRamPages(range: ChunkRange, ram: Uint8Array, inPlace: boolean): GatheredChunk {
  const { pageCount, pageSize } = range;
  const bitmap = new Uint8Array(bitmapLength(pageCount));
  let present = 0;
  for (let page = 0; page < pageCount; page++) {
    // Most data pages have a nonzero first byte: answer those without a view or a call.
    if (ram[page * pageSize] === 0 && isAllZero(ram.subarray(page * pageSize, (page + 1) * pageSize))) continue;
    bitmap[page >>> 3] |= 1 << (page & 7);
    present++;
  }
  if (present === pageCount) return { bitmap, content: ram, present };
  const content = inPlace ? ram : new Uint8Array(present * pageSize);
  let at = 0;
  forEachRun(
    pageCount,
    (page) => isPagePresent(bitmap, page),
    (first, count) => {
      if (!inPlace) content.set(ram.subarray(first * pageSize, (first + count) * pageSize), at);
      else if (first * pageSize !== at) ram.copyWithin(at, first * pageSize, (first + count) * pageSize);
      at += count * pageSize;
    },
  );
  return { bitmap, content: content.subarray(0, at), present };
}

/** Pages with a nonzero tag: the bitmap, and their tags packed two per byte, low nibble first. */
function gatherTagPages(range: ChunkRange, tags: Uint8Array): GatheredChunk {
  const { pageCount, pageSize } = range;
  const granulesPerPage = pageSize / GRANULE_SIZE;
  const packedPerPage = granulesPerPage / 2;
  const bitmap = new Uint8Array(bitmapLength(pageCount));
  // Most chunks carry no tag at all: one comparison answers for all their pages.
  if (isAllZero(tags.subarray(0, pageCount * granulesPerPage))) return { bitmap, content: new Uint8Array(0), present: 0 };
  const content = new Uint8Array(pageCount * packedPerPage);
  // Tags are 4 bits: only the low nibble of each byte counts.
  const present = packTaggedPages(tags.subarray(0, pageCount * granulesPerPage), granulesPerPage, content, bitmap);
  return { bitmap, content: content.subarray(0, present * packedPerPage), present };
}

/** A chunk's pages sorted out: which are present, and their content in order (RAM bytes, or tags packed). */
export interface GatheredChunk {
  readonly bitmap: Uint8Array;
  readonly content: Uint8Array;
  readonly present: number;
}

/**
 * Leaves out the pages that need not be stored (all-zero RAM, all-zero tags)
 * and packs the rest; `inPlace` lets it pack RAM pages inside `input`.
 */
export function gatherChunk(kind: ChunkKind, range: ChunkRange, input: Uint8Array, inPlace = false): GatheredChunk {
  return kind === 'ram' ? gatherRamPages(range, input, inPlace) : gatherTagPages(range, input);
}

/** Bytes before the stored content in a chunk payload: the header and the bitmap. */
export function chunkPrefixLength(pageCount: number): number {
  return CHUNK_HEADER_LENGTH + bitmapLength(pageCount);
}

/**
 * Fills in the header and bitmap of `payload`, whose stored content (raw, or
 * one zstd frame when `compressed`) is already in place after them.
 */
export function fillChunkPrefix(payload: Uint8Array, range: ChunkRange, gathered: GatheredChunk, compressed: boolean): void {
  const dv = view(payload);
  dv.setUint32(0, range.region, true);
  dv.setUint32(4, range.pageCount, true);
  dv.setBigUint64(8, BigInt(range.firstPage), true);
  payload[16] = compressed ? ENCODING.compressed : ENCODING.raw;
  payload.fill(0, 17, 20);
  dv.setUint32(20, gathered.present, true);
  dv.setBigUint64(24, BigInt(gathered.content.length), true);
  dv.setBigUint64(32, checksum(gathered.content), true);
  payload.set(gathered.bitmap, CHUNK_HEADER_LENGTH);
}

/**
 * Builds a chunk payload from a page range's bytes (RAMC) or its tags, one
 * byte per granule as KVM returns them (TAGC). Compresses when a codec is
 * given and compression saves space; stores raw otherwise.
 */
export function encodeChunkPayload(kind: ChunkKind, range: ChunkRange, input: Uint8Array, compression: CompressionChoice): Uint8Array {
  const gathered = gatherChunk(kind, range, input);
  const { content } = gathered;
  let stored = content;
  let compressed = false;
  if (compression.codec && content.length > 0) {
    const frame = compression.codec.compress(content, compression.level);
    if (frame.length < content.length) {
      stored = frame;
      compressed = true;
    }
  }
  const prefix = chunkPrefixLength(range.pageCount);
  const payload = new Uint8Array(prefix + stored.length);
  payload.set(stored, prefix);
  fillChunkPrefix(payload, range, gathered, compressed);
  return payload;
}

/** Reads the chunk header fields; the caller checks them against the file's layout (decodeChunkPayload does). */
export function readChunkHeader(payload: Uint8Array): ChunkHeader {
  if (payload.length < CHUNK_HEADER_LENGTH) {
    throw new ChunkDecodeError(`payload of ${payload.length} bytes is shorter than the ${CHUNK_HEADER_LENGTH}-byte chunk header`, 0);
  }
  const dv = view(payload);
  if (payload[17] !== 0 || payload[18] !== 0 || payload[19] !== 0)
    throw new ChunkDecodeError('reserved bytes of the chunk header are not zero', 17);
  const firstPage = dv.getBigUint64(8, true);
  const contentLength = dv.getBigUint64(24, true);
  if (firstPage > 0xffff_ffffn) throw new ChunkDecodeError(`first_page ${firstPage} is out of range`, 8);
  if (contentLength > 0xffff_ffffn) throw new ChunkDecodeError(`content_length ${contentLength} is out of range`, 24);
  return {
    region: dv.getUint32(0, true),
    pageCount: dv.getUint32(4, true),
    firstPage: Number(firstPage),
    encoding: payload[16],
    presentCount: dv.getUint32(20, true),
    contentLength: Number(contentLength),
    contentChecksum: dv.getBigUint64(32, true),
  };
}

export interface DecodedChunk {
  readonly header: ChunkHeader;
  readonly bitmap: Uint8Array;
  /** RAMC: pageCount * pageSize bytes. TAGC: one byte per granule, pageCount * pageSize / 16 bytes. */
  readonly expanded: Uint8Array;
}

/** What the reader already knows a chunk must be, from the header, metadata and grid. */
export interface ChunkExpectation {
  readonly kind: ChunkKind;
  readonly pageSize: number;
  /** The codec for compressed content, or null when the file's codec is "none". */
  readonly codec: ZstdCodec | null;
}

/** A chunk payload breaks a rule; `fieldOffset` is the bad field's offset inside the payload. */
export class ChunkDecodeError extends VmsnapError {
  declare readonly code: ChunkFaultCode;
  constructor(
    message: string,
    readonly fieldOffset: number,
    code: ChunkFaultCode = 'bad-chunk',
  ) {
    super(code, 'invalid-input', message);
  }
}

/** Set bits in a page bitmap: its present (or changed) count. */
export function popcount(bitmap: Uint8Array): number {
  let count = 0;
  for (let byte of bitmap) {
    while (byte) {
      count += byte & 1;
      byte >>>= 1;
    }
  }
  return count;
}

/**
 * The rules a chunk header and its payload's length must keep, checked before
 * anything is read past the chunk header (a file reader checks them when it
 * opens the file, from the 40 bytes of the chunk header alone):
 * the bitmap fits, present_count <= page_count, content_length is
 * present_count pages, the encoding is known, raw content is exactly
 * content_length bytes, and compressed content is shorter than it would be raw
 * (a writer stores raw otherwise, so a reader refuses anything else).
 */
export function checkChunkFraming(header: ChunkHeader, kind: ChunkKind, pageSize: number, zstd: boolean, payloadLength: number): void {
  const bitmapBytes = bitmapLength(header.pageCount);
  if (CHUNK_HEADER_LENGTH + bitmapBytes > payloadLength)
    throw new ChunkDecodeError('bitmap runs past the end of the payload', CHUNK_HEADER_LENGTH);
  if (header.presentCount > header.pageCount)
    throw new ChunkDecodeError(`present_count ${header.presentCount} is more than page_count ${header.pageCount}`, 20);
  const perPage = contentBytesPerPage(kind, pageSize);
  if (header.contentLength !== header.presentCount * perPage) {
    throw new ChunkDecodeError(`content_length ${header.contentLength} is not ${header.presentCount} pages of ${perPage} bytes`, 24);
  }
  const stored = payloadLength - CHUNK_HEADER_LENGTH - bitmapBytes;
  if (header.encoding === ENCODING.raw) {
    if (stored !== header.contentLength) {
      throw new ChunkDecodeError(`raw content is ${stored} bytes, content_length says ${header.contentLength}`, 24);
    }
    return;
  }
  if (header.encoding !== ENCODING.compressed) throw new ChunkDecodeError(`unknown encoding ${header.encoding}`, 16);
  if (!zstd) throw new ChunkDecodeError('compressed chunk in a file whose codec is "none"', 16);
  if (stored >= header.contentLength) {
    throw new ChunkDecodeError(
      `compressed content of ${stored} bytes is not shorter than its ${header.contentLength} raw bytes: it must be stored raw`,
      16,
    );
  }
}

/** A chunk payload whose framing and bitmap are checked; its content is still to be decoded and checked. */
export interface OpenedChunk {
  readonly header: ChunkHeader;
  readonly kind: ChunkKind;
  readonly pageSize: number;
  readonly bitmap: Uint8Array;
  /** The stored content: raw, or one zstd frame (header.encoding says which). */
  readonly stored: Uint8Array;
}

/** Everything decodeChunkPayload checks before it decodes the content: lengths, then the bitmap against present_count. */
export function openChunkPayload(payload: Uint8Array, header: ChunkHeader, kind: ChunkKind, pageSize: number, zstd: boolean): OpenedChunk {
  checkChunkFraming(header, kind, pageSize, zstd, payload.length);
  const bitmapBytes = bitmapLength(header.pageCount);
  const bitmap = payload.subarray(CHUNK_HEADER_LENGTH, CHUNK_HEADER_LENGTH + bitmapBytes);
  if (header.pageCount % 8 && bitmap[bitmapBytes - 1] >>> (header.pageCount % 8)) {
    throw new ChunkDecodeError('bitmap has bits set past page_count', CHUNK_HEADER_LENGTH + bitmapBytes - 1);
  }
  const present = popcount(bitmap);
  if (present !== header.presentCount)
    throw new ChunkDecodeError(`present_count ${header.presentCount} but the bitmap has ${present} pages`, 20);
  return { header, kind, pageSize, bitmap, stored: payload.subarray(CHUNK_HEADER_LENGTH + bitmapBytes) };
}

/** Checks decoded content (its checksum, no stored zero page) and expands it to every page of the chunk's range. */
export function finishChunkDecode(opened: OpenedChunk, content: Uint8Array): DecodedChunk {
  checkChunkContent(opened, content);
  const { header, kind, pageSize, bitmap } = opened;
  const expanded =
    kind === 'ram' ? expandRam(bitmap, header.pageCount, content, pageSize) : expandTags(bitmap, header.pageCount, content, pageSize);
  return { header, bitmap, expanded };
}

/** Checks decoded content: its checksum, and that no stored page is one that must be left out. */
export function checkChunkContent(opened: OpenedChunk, content: Uint8Array): void {
  const { header, kind, pageSize, bitmap } = opened;
  if (checksum(content) !== header.contentChecksum) throw new ChunkDecodeError('content checksum mismatch', 32, 'checksum-mismatch');
  checkNoZeroPages(bitmap, header.pageCount, content, contentBytesPerPage(kind, pageSize), kind);
}

/**
 * Checks a chunk payload's internal consistency and expands it to every page
 * of its range. Lengths are checked before anything is allocated. Errors carry
 * the offset of the bad field inside the payload; the caller adds the section.
 */
export function decodeChunkPayload(payload: Uint8Array, expect: ChunkExpectation, header: ChunkHeader): DecodedChunk {
  const opened = openChunkPayload(payload, header, expect.kind, expect.pageSize, expect.codec !== null);
  return finishChunkDecode(opened, decodeContent(opened.stored, header, expect));
}

/** A present page is one that could not be left out: all-zero bytes (RAMC) or all-zero tags (TAGC) must be absent. */
function checkNoZeroPages(bitmap: Uint8Array, pageCount: number, content: Uint8Array, perPage: number, kind: ChunkKind): void {
  let next = 0;
  for (let page = 0; page < pageCount; page++) {
    if (!isPagePresent(bitmap, page)) continue;
    if (isAllZero(content.subarray(next * perPage, (next + 1) * perPage))) {
      throw new ChunkDecodeError(
        `page ${page} of the chunk is stored but its ${kind === 'ram' ? 'bytes' : 'tags'} are all zero: it must be left out`,
        CHUNK_HEADER_LENGTH + (page >>> 3),
      );
    }
    next++;
  }
}

function decodeContent(stored: Uint8Array, header: ChunkHeader, expect: ChunkExpectation): Uint8Array {
  // checkChunkFraming has checked the encoding and the stored length.
  if (header.encoding === ENCODING.raw) return stored;
  try {
    return expect.codec!.decompress(stored, header.contentLength);
  } catch (error) {
    throw new ChunkDecodeError(`content does not decompress: ${(error as Error).message}`, CHUNK_HEADER_LENGTH, 'decompression-failed');
  }
}

export function expandRam(bitmap: Uint8Array, pageCount: number, content: Uint8Array, pageSize: number): Uint8Array {
  // Every page present: the content already is the chunk (a fresh buffer when it was decompressed).
  if (content.length === pageCount * pageSize) return content;
  const out = new Uint8Array(pageCount * pageSize);
  let next = 0;
  forEachRun(
    pageCount,
    (page) => isPagePresent(bitmap, page),
    (first, count) => {
      out.set(content.subarray(next * pageSize, (next + count) * pageSize), first * pageSize);
      next += count;
    },
  );
  return out;
}

export function expandTags(bitmap: Uint8Array, pageCount: number, content: Uint8Array, pageSize: number): Uint8Array {
  const granulesPerPage = pageSize / GRANULE_SIZE;
  const out = new Uint8Array(pageCount * granulesPerPage);
  let next = 0;
  for (let page = 0; page < pageCount; page++) {
    if (!isPagePresent(bitmap, page)) continue;
    unpackTags(content, next * granulesPerPage, out.subarray(page * granulesPerPage, (page + 1) * granulesPerPage));
    next++;
  }
  return out;
}
