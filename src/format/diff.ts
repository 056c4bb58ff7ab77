/**
 * Diff snapshots (spec/FORMAT.md, section 4.1, version 1.1): the DIFF section
 * that names the parent, and the per-chunk changed-page maps (CHGP).
 *
 * A diff gives whole only the pages its CHGP map marks; every other page is
 * the parent's. A marked page's RAMC bit says whether its bytes are nonzero
 * and its TAGC bit whether its tags are, exactly as in a full snapshot, so a
 * page that became all zero (or whose tags did) is a marked page with its bit
 * clear. Both section types are critical: a reader that does not know diffs
 * refuses the file instead of restoring a guest with holes.
 *
 * CHGP payload: the 40-byte chunk header of RAMC/TAGC (region, page_count,
 * first_page, encoding 0, present_count = pages marked, content_length 0,
 * content_checksum = XXH64 of nothing) and the bitmap; no content.
 */
import { view } from './bytes.js';
import { checksum } from './checksum.js';
import { bitmapLength, ChunkDecodeError, popcount, readChunkHeader } from './chunk.js';
import { CHUNK_HEADER_LENGTH, ENCODING } from './constants.js';
import { SnapshotFormatError } from './errors.js';
import { packValue } from './metadata.js';
import { decodeMessagePack, MessagePackError } from './msgpack.js';

/** What a DIFF section says. */
export interface DiffSection {
  /** The parent's snapshot_id; META's parent_id says the same. */
  readonly parentId: Uint8Array;
}

const EMPTY_CHECKSUM = checksum(new Uint8Array(0));

export function encodeDiffSection(diff: DiffSection): Uint8Array {
  return packValue({ parent_id: diff.parentId });
}

export function decodeDiffSection(payload: Uint8Array, offset: bigint): DiffSection {
  let value: unknown;
  try {
    value = decodeMessagePack(payload);
  } catch (error) {
    if (!(error instanceof MessagePackError)) throw error;
    throw new SnapshotFormatError('bad-metadata', `not valid MessagePack for this format: ${error.message}`, {
      section: 'DIFF',
      offset: offset + BigInt(error.offset),
    });
  }
  const parent = value instanceof Map ? value.get('parent_id') : undefined;
  if (!(parent instanceof Uint8Array) || parent.length !== 16) {
    throw new SnapshotFormatError('bad-metadata', 'field "parent_id" must be binary of 16 bytes', { section: 'DIFF', offset });
  }
  return { parentId: parent.slice() };
}

/** A CHGP payload for pages [firstPage, firstPage + pageCount) of `region`, `changed` one bit per page. */
export function encodeChangedPages(region: number, firstPage: number, pageCount: number, changed: Uint8Array): Uint8Array {
  const bitmap = changed.subarray(0, bitmapLength(pageCount));
  const payload = new Uint8Array(CHUNK_HEADER_LENGTH + bitmap.length);
  const dv = view(payload);
  dv.setUint32(0, region, true);
  dv.setUint32(4, pageCount, true);
  dv.setBigUint64(8, BigInt(firstPage), true);
  payload[16] = ENCODING.raw;
  dv.setUint32(20, popcount(bitmap), true);
  dv.setBigUint64(24, 0n, true);
  dv.setBigUint64(32, EMPTY_CHECKSUM, true);
  payload.set(bitmap, CHUNK_HEADER_LENGTH);
  return payload;
}

export interface ChangedPagesHeader {
  readonly region: number;
  readonly firstPage: number;
  readonly pageCount: number;
  /** Pages the map marks (present_count). */
  readonly changedCount: number;
}

/**
 * The rules of a CHGP payload that its 40-byte header and its length decide:
 * encoding 0, no content, the checksum of nothing, present_count <=
 * page_count, and a payload of exactly header + bitmap. Errors carry the
 * field's offset inside the payload.
 */
export function readChangedPagesHeader(head: Uint8Array, payloadLength: number): ChangedPagesHeader {
  const header = readChunkHeader(head);
  if (header.encoding !== ENCODING.raw) throw new ChunkDecodeError(`a changed-page map has encoding ${header.encoding}, not 0`, 16);
  if (header.contentLength !== 0) throw new ChunkDecodeError(`a changed-page map has content_length ${header.contentLength}, not 0`, 24);
  if (header.contentChecksum !== EMPTY_CHECKSUM) throw new ChunkDecodeError('content_checksum is not the checksum of no bytes', 32);
  if (header.presentCount > header.pageCount)
    throw new ChunkDecodeError(`present_count ${header.presentCount} is more than page_count ${header.pageCount}`, 20);
  if (payloadLength !== CHUNK_HEADER_LENGTH + bitmapLength(header.pageCount)) {
    throw new ChunkDecodeError(`payload of ${payloadLength} bytes is not the chunk header and a bitmap of ${header.pageCount} pages`, 4);
  }
  return { region: header.region, firstPage: header.firstPage, pageCount: header.pageCount, changedCount: header.presentCount };
}

/** A whole CHGP payload: its header (readChangedPagesHeader), then the bitmap: no bit past page_count, present_count bits set. */
export function decodeChangedPages(payload: Uint8Array): { header: ChangedPagesHeader; changed: Uint8Array } {
  const header = readChangedPagesHeader(payload.subarray(0, CHUNK_HEADER_LENGTH), payload.length);
  const bitmap = payload.subarray(CHUNK_HEADER_LENGTH);
  const tail = header.pageCount % 8;
  if (tail && bitmap[bitmap.length - 1] >>> tail) throw new ChunkDecodeError('bitmap has bits set past page_count', payload.length - 1);
  const marked = popcount(bitmap);
  if (marked !== header.changedCount)
    throw new ChunkDecodeError(`present_count ${header.changedCount} but the bitmap marks ${marked} pages`, 20);
  return { header, changed: bitmap.slice() };
}

/** The first page a RAMC/TAGC of a diff stores that its changed-page map does not mark, or -1: such a page must not be stored. */
export function pageStoredUnmarked(present: Uint8Array, changed: Uint8Array, pageCount: number): number {
  for (let byte = 0; byte < bitmapLength(pageCount); byte++) {
    const stray = present[byte] & ~changed[byte];
    if (stray) for (let bit = 0; bit < 8; bit++) if ((stray >>> bit) & 1) return byte * 8 + bit;
  }
  return -1;
}
