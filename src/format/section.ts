/**
 * Section framing (spec/FORMAT.md, "Sections"): every part of the file after
 * the header is a section, a 32-byte section header and a payload.
 *
 *   0 type[4] (ASCII)   4 reserved u32   8 payload_length u64
 *  16 payload_xxh64 u64 24 header_xxh64 u64 (over bytes 0..23)
 *
 * The first letter's case says what a reader that does not know the type must
 * do, as in PNG: uppercase = critical (refuse the file), lowercase = ancillary
 * (skip it).
 */
import { ascii, view } from './bytes.js';
import { checksum } from './checksum.js';
import { SECTION_HEADER_LENGTH } from './constants.js';
import { SnapshotFormatError } from './errors.js';

export interface SectionHeader {
  readonly type: string;
  readonly payloadLength: bigint;
  readonly payloadChecksum: bigint;
  /** File offset of the section header. */
  readonly offset: bigint;
}

export function isCritical(type: string): boolean {
  const first = type.charCodeAt(0);
  return first >= 0x41 && first <= 0x5a;
}

function isTypeByte(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}

export function encodeSectionHeader(type: string, payload: Uint8Array | { length: number; checksum: bigint }): Uint8Array {
  const bytes = new Uint8Array(SECTION_HEADER_LENGTH);
  const dv = view(bytes);
  for (let i = 0; i < 4; i++) bytes[i] = type.charCodeAt(i);
  dv.setBigUint64(8, BigInt(payload.length), true);
  const payloadChecksum = payload instanceof Uint8Array ? checksum(payload) : payload.checksum;
  dv.setBigUint64(16, payloadChecksum, true);
  dv.setBigUint64(24, checksum(bytes.subarray(0, 24)), true);
  return bytes;
}

/** Decodes and checks a section header read at `offset`; the payload is checked separately by `checkPayload`. */
export function decodeSectionHeader(bytes: Uint8Array, offset: bigint): SectionHeader {
  if (bytes.length < SECTION_HEADER_LENGTH) {
    throw new SnapshotFormatError('truncated', 'file ends inside a section header', { section: 'section header', offset });
  }
  const dv = view(bytes);
  const type = ascii(bytes.subarray(0, 4));
  if (dv.getBigUint64(24, true) !== checksum(bytes.subarray(0, 24))) {
    throw new SnapshotFormatError('checksum-mismatch', `section header checksum mismatch (type reads "${printable(type)}")`, {
      section: 'section header',
      offset,
    });
  }
  if (![0, 1, 2, 3].every((i) => isTypeByte(bytes[i]))) {
    throw new SnapshotFormatError('bad-section', `section type "${printable(type)}" is not four ASCII letters`, {
      section: 'section header',
      offset,
    });
  }
  if (dv.getUint32(4, true) !== 0) {
    throw new SnapshotFormatError('bad-section', 'reserved field of a section header is not zero', { section: type, offset: offset + 4n });
  }
  return { type, payloadLength: dv.getBigUint64(8, true), payloadChecksum: dv.getBigUint64(16, true), offset };
}

export function checkPayload(header: SectionHeader, payload: Uint8Array): void {
  if (checksum(payload) !== header.payloadChecksum) {
    throw new SnapshotFormatError('checksum-mismatch', `${header.type} payload checksum mismatch`, {
      section: header.type,
      offset: header.offset + BigInt(SECTION_HEADER_LENGTH),
    });
  }
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}
