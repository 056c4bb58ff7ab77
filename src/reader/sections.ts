/**
 * Section-level checks shared by the file and stream readers: payload length
 * limits (checked before allocating), and turning a decoded chunk into the
 * chunk types the library hands out, after checking it is the chunk the grid
 * expects at that place.
 */
import { bitmapLength, contentBytesPerPage } from '../format/chunk.js';
import type { GridChunk } from '../format/chunk-grid.js';
import { CHUNK_HEADER_LENGTH, LIMITS, SECTION, SECTION_HEADER_LENGTH } from '../format/constants.js';
import { SnapshotFormatError } from '../format/errors.js';
import type { ChunkLocation, RamChunk, SnapshotHeader, SnapshotRegion, TagChunk } from '../format/model.js';
import type { SectionHeader } from '../format/section.js';
import type { DecodedChunkResult } from '../parallel/chunk-jobs.js';
import type { ChunkExecutor } from '../parallel/chunk-pool.js';

export function chunkType(kind: 'ram' | 'tags'): string {
  return kind === 'ram' ? SECTION.ramChunk : SECTION.tagChunk;
}

/** The most bytes a section of this type may carry in this file; a larger declared length is refused unread. */
export function payloadLimit(type: string, header: SnapshotHeader): bigint {
  switch (type) {
    case SECTION.metadata:
      return BigInt(LIMITS.metadata);
    case SECTION.vcpu:
      return BigInt(LIMITS.vcpu);
    case SECTION.blob:
      return BigInt(LIMITS.blob);
    case SECTION.ramChunk:
    case SECTION.tagChunk: {
      // Stored content is never larger than the raw content: writers store raw when zstd does not help.
      const kind = type === SECTION.ramChunk ? 'ram' : 'tags';
      const content = header.pagesPerChunk * contentBytesPerPage(kind, header.pageSize);
      return BigInt(CHUNK_HEADER_LENGTH + bitmapLength(header.pagesPerChunk) + content);
    }
    default:
      return -1n;
  }
}

export function checkPayloadLength(section: SectionHeader, header: SnapshotHeader): number {
  const limit = payloadLimit(section.type, header);
  if (limit >= 0n && section.payloadLength > limit) {
    throw new SnapshotFormatError(
      'limit-exceeded',
      `${section.type} declares ${section.payloadLength} payload bytes, more than the ${limit} this file allows`,
      {
        section: section.type,
        offset: section.offset + 8n,
      },
    );
  }
  return Number(section.payloadLength);
}

/** Decodes a chunk payload on the executor and checks it is `expected`; errors name the section, offset and IPA. */
export async function decodeChunk(
  executor: ChunkExecutor,
  header: SnapshotHeader,
  regions: readonly SnapshotRegion[],
  section: SectionHeader,
  payload: Uint8Array,
  expected: GridChunk,
): Promise<RamChunk | TagChunk> {
  const region = regions[expected.region];
  const guestAddress = region.guestAddress + BigInt(expected.firstPage) * BigInt(header.pageSize);
  const payloadOffset = section.offset + BigInt(SECTION_HEADER_LENGTH);
  const result = await executor.run({
    op: 'decode',
    kind: expected.kind,
    pageSize: header.pageSize,
    zstd: header.codec !== 0,
    payload,
    payloadChecksum: section.payloadChecksum,
  });
  if ('failed' in result) {
    throw new SnapshotFormatError(result.code, result.message, {
      section: section.type,
      offset: result.fieldOffset === -1 ? payloadOffset : payloadOffset + BigInt(result.fieldOffset),
      region: expected.region,
      guestAddress,
    });
  }
  const decoded = result as DecodedChunkResult;
  const got = decoded.header;
  if (got.region !== expected.region || got.firstPage !== expected.firstPage || got.pageCount !== expected.pageCount) {
    throw new SnapshotFormatError(
      'layout-mismatch',
      `chunk says region ${got.region} pages ${got.firstPage}+${got.pageCount}, ` +
        `the file's layout expects region ${expected.region} pages ${expected.firstPage}+${expected.pageCount}`,
      { section: section.type, offset: payloadOffset, region: expected.region, guestAddress },
    );
  }
  const location: ChunkLocation = {
    kind: expected.kind,
    region: expected.region,
    firstPage: expected.firstPage,
    pageCount: expected.pageCount,
    offset: section.offset,
    length: BigInt(SECTION_HEADER_LENGTH) + section.payloadLength,
  };
  return expected.kind === 'ram'
    ? { ...location, present: decoded.bitmap, data: decoded.expanded }
    : { ...location, present: decoded.bitmap, tags: decoded.expanded };
}
