/**
 * Guest bytes and tags of one IPA range, copied out of the chunks that cover
 * it: the one implementation behind readMemory/readTags of a file
 * (open.ts) and of a merged chain (chain.ts), which differ only in how they
 * read a chunk.
 */
import { GRANULE_SIZE } from '../format/constants.js';
import type { ChunkList, ChunkLocation, RamChunk, SnapshotHeader, SnapshotRegion, TagChunk } from '../format/model.js';

/** What a range read needs of a reader. */
export interface ChunkSource {
  readonly header: SnapshotHeader;
  readonly regions: readonly SnapshotRegion[];
  readonly chunks: ChunkList;
  readChunk(location: ChunkLocation): Promise<RamChunk | TagChunk>;
}

function regionAt(source: ChunkSource, guestAddress: bigint, length: number): SnapshotRegion {
  const end = guestAddress + BigInt(length);
  const region = source.regions.find((r) => guestAddress >= r.guestAddress && end <= r.guestAddress + r.size);
  if (!region) throw new RangeError(`IPA range 0x${guestAddress.toString(16)}+${length} is not inside one region of this snapshot`);
  return region;
}

/** Copies [guestAddress, +length) out of the chunks of `kind` that cover it; `unit` guest bytes per output byte. */
async function gather(
  source: ChunkSource,
  region: SnapshotRegion,
  kind: 'ram' | 'tags',
  guestAddress: bigint,
  length: number,
  unit: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(length / unit);
  const pageSize = BigInt(source.header.pageSize);
  const u = BigInt(unit);
  const start = guestAddress - region.guestAddress;
  const end = start + BigInt(length);
  const chunks = source.chunks;
  for (let i = 0; i < chunks.length; i++) {
    if (chunks.kindOf(i) !== kind || chunks.regionOf(i) !== region.index) continue;
    const chunkStart = BigInt(chunks.firstPageOf(i)) * pageSize;
    const chunkEnd = chunkStart + BigInt(chunks.pageCountOf(i)) * pageSize;
    if (chunkEnd <= start || chunkStart >= end) continue;
    // The location is made only for a chunk the range needs.
    const chunk = await source.readChunk(chunks[i]);
    const bytes = 'data' in chunk ? chunk.data : chunk.tags;
    const from = start > chunkStart ? start : chunkStart;
    const to = end < chunkEnd ? end : chunkEnd;
    out.set(bytes.subarray(Number((from - chunkStart) / u), Number((to - chunkStart) / u)), Number((from - start) / u));
  }
  return out;
}

/** Guest bytes of [guestAddress, guestAddress + length) inside one region. */
export function readGuestMemory(source: ChunkSource, guestAddress: bigint, length: number): Promise<Uint8Array> {
  return gather(source, regionAt(source, guestAddress, length), 'ram', guestAddress, length, 1);
}

/** One tag per granule of [guestAddress, guestAddress + length), 16-byte aligned, inside one MTE region. */
export function readGuestTags(source: ChunkSource, guestAddress: bigint, length: number): Promise<Uint8Array> {
  if (guestAddress % BigInt(GRANULE_SIZE) || length % GRANULE_SIZE) throw new RangeError('tag reads must be 16-byte aligned');
  const region = regionAt(source, guestAddress, length);
  if (!region.mte) throw new RangeError(`region "${region.name}" has no tags (not an MTE region)`);
  return gather(source, region, 'tags', guestAddress, length, GRANULE_SIZE);
}
