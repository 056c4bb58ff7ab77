/**
 * Random access to a snapshot's guest memory and tags for readers that jump
 * around: a page-table walk reads one 8-byte descriptor per level, each from a
 * different table, and the pointer scan looks up the tag of whatever granule
 * a pointer names. Decoding a whole chunk for each such read would cost a
 * chunk's decompression per descriptor, so the last few decoded chunks are
 * kept (least recently used first out), each in the memory the reader
 * decoded it into (held-chunk.ts), given back when it leaves the cache; every
 * read copies out of it. Memory stays bounded by `cachedChunks` chunks,
 * whatever the guest size.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { ChunkKind, ChunkList, SnapshotReader, SnapshotRegion } from '../format/model.js';
import { regionEnd, regionHolding } from './addresses.js';
import { AddressNotMappedError, hex, RegionNotTaggedError } from './errors.js';
import { copyFromChunk, type HeldChunk, holdChunk } from './held-chunk.js';

/** Chunks kept decoded: enough for the four or five tables of one walk plus the data being read. */
const DEFAULT_CACHED_CHUNKS = 6;

export class GuestMemory {
  /** Decoded chunks by their position in `chunks`. */
  private readonly cache = new Map<number, HeldChunk>();
  /** Per region and kind, the chunks' positions sorted by first page, for a binary search: no location is kept per chunk. */
  private readonly byRegion = new Map<string, number[]>();
  private readonly pageSize: bigint;
  private readonly chunks: ChunkList;

  constructor(
    readonly reader: SnapshotReader,
    private readonly cachedChunks = DEFAULT_CACHED_CHUNKS,
  ) {
    this.pageSize = BigInt(reader.header.pageSize);
    const chunks = reader.chunks;
    this.chunks = chunks;
    for (let i = 0; i < chunks.length; i++) {
      const key = `${chunks.kindOf(i)}:${chunks.regionOf(i)}`;
      const list = this.byRegion.get(key) ?? [];
      this.byRegion.set(key, list);
      list.push(i);
    }
    for (const list of this.byRegion.values()) list.sort((a, b) => chunks.firstPageOf(a) - chunks.firstPageOf(b));
  }

  get regions(): readonly SnapshotRegion[] {
    return this.reader.regions;
  }

  /** The region holding `ipa`, or undefined. */
  regionAt(ipa: bigint): SnapshotRegion | undefined {
    return regionHolding(this.reader.regions, ipa);
  }

  /** A little-endian 64-bit word at an 8-byte-aligned IPA. */
  async readU64(ipa: bigint): Promise<bigint> {
    const bytes = await this.read(ipa, 8);
    return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  }

  /** Guest bytes [ipa, ipa + length); the range may cross from one region into an adjacent one, never into a hole. */
  async read(ipa: bigint, length: number): Promise<Uint8Array> {
    return this.gather('ram', ipa, length, 1);
  }

  /** One tag per granule of [ipa, ipa + length), granule aligned; every byte must be in an MTE region. */
  async readTags(ipa: bigint, length: number): Promise<Uint8Array> {
    return this.gather('tags', ipa, length, GRANULE_SIZE);
  }

  /** The allocation tag of the granule holding `ipa`. */
  async tagAt(ipa: bigint): Promise<number> {
    const granule = ipa - (ipa % BigInt(GRANULE_SIZE));
    return (await this.readTags(granule, GRANULE_SIZE))[0] & 0xf;
  }

  private async gather(kind: ChunkKind, ipa: bigint, length: number, unit: number): Promise<Uint8Array> {
    const out = new Uint8Array(length / unit);
    let at = ipa;
    const end = ipa + BigInt(length);
    while (at < end) {
      const region = this.regionAt(at);
      if (!region) {
        throw new AddressNotMappedError(
          at,
          at === ipa ? 'no region of the snapshot holds it' : `the range from ${hex(ipa)} runs into a hole between regions`,
        );
      }
      if (kind === 'tags' && !region.mte) throw new RegionNotTaggedError(at, region.name);
      const stop = regionEnd(region) < end ? regionEnd(region) : end;
      await this.copyFromRegion(kind, region, at, stop, out.subarray(Number((at - ipa) / BigInt(unit))), unit);
      at = stop;
    }
    return out;
  }

  /** Copies [from, to) of one region into `out` (which starts at `from`); pages no chunk covers stay zero. */
  private async copyFromRegion(kind: ChunkKind, region: SnapshotRegion, from: bigint, to: bigint, out: Uint8Array, unit: number) {
    const list = this.byRegion.get(`${kind}:${region.index}`) ?? [];
    let i = this.firstChunkEndingAfter(list, from - region.guestAddress);
    for (; i < list.length; i++) {
      const position = list[i];
      const start = region.guestAddress + BigInt(this.chunks.firstPageOf(position)) * this.pageSize;
      if (start >= to) break;
      const stop = start + BigInt(this.chunks.pageCountOf(position)) * this.pageSize;
      const chunk = await this.decoded(position);
      const a = from > start ? from : start;
      const b = to < stop ? to : stop;
      const first = Number((a - start) / BigInt(unit));
      copyFromChunk(chunk, first, Number((b - start) / BigInt(unit)), out, Number((a - from) / BigInt(unit)), Number(this.pageSize));
    }
  }

  private firstChunkEndingAfter(list: readonly number[], offset: bigint): number {
    const page = Number(offset / this.pageSize);
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.chunks.firstPageOf(list[mid]) + this.chunks.pageCountOf(list[mid]) <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private async decoded(position: number): Promise<HeldChunk['chunk']> {
    const hit = this.cache.get(position);
    if (hit) {
      // Map order is insertion order: re-inserting makes this the most recently used.
      this.cache.delete(position);
      this.cache.set(position, hit);
      return hit.chunk;
    }
    const held = await holdChunk(this.reader, this.chunks[position]);
    this.cache.set(position, held);
    if (this.cache.size > this.cachedChunks) {
      const [oldest, evicted] = this.cache.entries().next().value as [number, HeldChunk];
      this.cache.delete(oldest);
      evicted.release();
    }
    return held.chunk;
  }

  /** Gives every cached chunk back to the reader; later reads decode again. */
  close(): void {
    for (const held of this.cache.values()) held.release();
    this.cache.clear();
  }
}
