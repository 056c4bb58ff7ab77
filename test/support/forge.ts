/**
 * Takes a snapshot apart into sections and seals it again with every checksum,
 * the index and the trailer recomputed: so tests can forge hostile files that
 * pass all checksums and must be caught by the limits and layout checks.
 */

import { checksum } from '../../src/format/checksum.js';
import { HEADER_LENGTH, SECTION_HEADER_LENGTH, TRAILER_LENGTH } from '../../src/format/constants.js';
import { encodeIndex, encodeTrailer, type IndexEntry } from '../../src/format/index-section.js';
import { encodeSectionHeader } from '../../src/format/section.js';

export interface ForgedSection {
  type: string;
  payload: Uint8Array;
  /** For chunks: what the index says. */
  region: number;
  firstPage: number;
  pageCount: number;
  /** A nonzero value for the section header's reserved field (its header checksum is recomputed). */
  reserved?: number;
  /** Fields of this section's index entry to write instead of the true ones. */
  entry?: Partial<IndexEntry>;
}

export function takeApart(file: Uint8Array): { header: Uint8Array; sections: ForgedSection[] } {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const indexOffset = Number(dv.getBigUint64(file.length - TRAILER_LENGTH, true));
  const indexPayload = file.subarray(indexOffset + SECTION_HEADER_LENGTH, file.length - TRAILER_LENGTH);
  const ix = new DataView(indexPayload.buffer, indexPayload.byteOffset, indexPayload.byteLength);
  const sections: ForgedSection[] = [];
  for (let at = 0; at < indexPayload.length; at += 48) {
    const offset = Number(ix.getBigUint64(at + 16, true));
    const length = Number(ix.getBigUint64(at + 24, true));
    sections.push({
      type: String.fromCharCode(...indexPayload.subarray(at, at + 4)),
      payload: file.slice(offset + SECTION_HEADER_LENGTH, offset + length),
      region: ix.getUint32(at + 4, true),
      firstPage: Number(ix.getBigUint64(at + 8, true)),
      pageCount: ix.getUint32(at + 32, true),
    });
  }
  return { header: file.slice(0, HEADER_LENGTH), sections };
}

export function seal(header: Uint8Array, sections: ForgedSection[]): Uint8Array {
  const parts: Uint8Array[] = [header];
  const entries: IndexEntry[] = [];
  let offset = BigInt(header.length);
  for (const section of sections) {
    const sectionHeader = encodeSectionHeader(section.type, section.payload);
    if (section.reserved) {
      const dv = new DataView(sectionHeader.buffer, sectionHeader.byteOffset, sectionHeader.byteLength);
      dv.setUint32(4, section.reserved, true);
      dv.setBigUint64(24, checksum(sectionHeader.subarray(0, 24)), true);
    }
    parts.push(sectionHeader, section.payload);
    const length = BigInt(SECTION_HEADER_LENGTH + section.payload.length);
    entries.push({
      type: section.type,
      region: section.region,
      firstPage: section.firstPage,
      offset,
      length,
      pageCount: section.pageCount,
      payloadChecksum: checksum(section.payload),
      ...section.entry,
    });
    offset += length;
  }
  const index = encodeIndex(entries);
  parts.push(encodeSectionHeader('INDX', index), index);
  const indexOffset = offset;
  const fileLength = offset + BigInt(SECTION_HEADER_LENGTH + index.length + TRAILER_LENGTH);
  parts.push(encodeTrailer({ indexOffset, fileLength }));
  return Buffer.concat(parts);
}
