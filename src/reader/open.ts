/**
 * Opening a snapshot file for random access. Before anything is returned the
 * header, the trailer, the index and the metadata are read and checked, and
 * the index is checked against the chunk grid: its sections must tile the file
 * from the header to the index, with exactly the chunks the regions call for,
 * in order. Chunk payloads are checked when read.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { checkRegions, chunkGrid, type GridChunk } from '../format/chunk-grid.js';
import { GRANULE_SIZE, HEADER_LENGTH, INDEX_ENTRY_LENGTH, SECTION, SECTION_HEADER_LENGTH, TRAILER_LENGTH } from '../format/constants.js';
import { SnapshotFormatError } from '../format/errors.js';
import { decodeHeader } from '../format/header.js';
import { decodeIndex, decodeTrailer, type IndexEntry } from '../format/index-section.js';
import { decodeBlob, decodeMetadata, decodeVcpu } from '../format/metadata.js';
import type {
  ChunkLocation,
  RamChunk,
  SnapshotHeader,
  SnapshotMetadata,
  SnapshotReader,
  SnapshotRegion,
  TagChunk,
  VmmBlob,
} from '../format/model.js';
import { checkPayload, decodeSectionHeader, isCritical, type SectionHeader } from '../format/section.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import type { VcpuState } from '../vm/vm.js';
import type { SnapshotEvent } from './events.js';
import { checkPayloadLength, chunkType, decodeChunk } from './sections.js';

export interface OpenOptions {
  /** Worker threads for chunk decoding; 0 decodes inline. Default: one per core. */
  threads?: number;
}

/** Positional reads that fail with a located error instead of returning short. */
class FileBytes {
  constructor(
    readonly fd: number,
    readonly size: bigint,
  ) {}

  read(offset: bigint, length: number, section: string): Uint8Array {
    if (offset < 0n || offset + BigInt(length) > this.size) {
      throw new SnapshotFormatError('truncated', `${length} bytes at this offset run past the end of the ${this.size}-byte file`, {
        section,
        offset,
      });
    }
    const bytes = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, bytes, done, length - done, offset + BigInt(done));
      if (n === 0) throw new SnapshotFormatError('truncated', 'file ended while reading', { section, offset: offset + BigInt(done) });
      done += n;
    }
    return bytes;
  }
}

function readTrailerAndIndex(file: FileBytes): { entries: IndexEntry[]; indexOffset: bigint } {
  const minimum = BigInt(HEADER_LENGTH + 2 * SECTION_HEADER_LENGTH + TRAILER_LENGTH);
  if (file.size < minimum)
    throw new SnapshotFormatError('truncated', `file of ${file.size} bytes is too short to be a snapshot`, { offset: file.size });
  const trailerOffset = file.size - BigInt(TRAILER_LENGTH);
  const trailer = decodeTrailer(file.read(trailerOffset, TRAILER_LENGTH, 'trailer'), trailerOffset);
  if (trailer.fileLength !== file.size) {
    throw new SnapshotFormatError('truncated', `trailer says the file is ${trailer.fileLength} bytes, it is ${file.size}`, {
      section: 'trailer',
      offset: trailerOffset + 8n,
    });
  }
  const { indexOffset } = trailer;
  if (indexOffset < BigInt(HEADER_LENGTH) || indexOffset + BigInt(SECTION_HEADER_LENGTH) > trailerOffset) {
    throw new SnapshotFormatError('bad-trailer', `index offset ${indexOffset} is outside the file`, {
      section: 'trailer',
      offset: trailerOffset,
    });
  }
  const section = decodeSectionHeader(file.read(indexOffset, SECTION_HEADER_LENGTH, 'INDX'), indexOffset);
  if (section.type !== SECTION.index)
    throw new SnapshotFormatError('bad-index', `the trailer points at a ${section.type} section, not INDX`, {
      section: section.type,
      offset: indexOffset,
    });
  const payloadOffset = indexOffset + BigInt(SECTION_HEADER_LENGTH);
  if (section.payloadLength !== trailerOffset - payloadOffset) {
    throw new SnapshotFormatError('bad-index', `index payload length ${section.payloadLength} does not reach the trailer`, {
      section: 'INDX',
      offset: indexOffset + 8n,
    });
  }
  const payload = file.read(payloadOffset, Number(section.payloadLength), 'INDX');
  checkPayload(section, payload);
  return { entries: decodeIndex(payload, payloadOffset), indexOffset };
}

/** The index must tile the file from the header to the index section, META first. */
function checkTiling(entries: IndexEntry[], indexOffset: bigint): void {
  let expected = BigInt(HEADER_LENGTH);
  entries.forEach((entry, i) => {
    const where = { section: 'INDX', offset: indexOffset + BigInt(SECTION_HEADER_LENGTH + i * INDEX_ENTRY_LENGTH) };
    if (entry.offset !== expected)
      throw new SnapshotFormatError(
        'bad-index',
        `index entry ${i} (${entry.type}) is at offset ${entry.offset}, expected ${expected}`,
        where,
      );
    if (entry.length < BigInt(SECTION_HEADER_LENGTH))
      throw new SnapshotFormatError('bad-index', `index entry ${i} has length ${entry.length}`, where);
    expected += entry.length;
  });
  if (expected !== indexOffset)
    throw new SnapshotFormatError('bad-index', `indexed sections end at ${expected}, the index starts at ${indexOffset}`, {
      section: 'INDX',
      offset: indexOffset,
    });
  if (entries[0]?.type !== SECTION.metadata)
    throw new SnapshotFormatError('bad-index', 'the first section is not META', { section: 'INDX', offset: indexOffset });
}

/** Every chunk the grid calls for, once, in order; other sections known or ancillary. */
function checkIndexAgainstGrid(
  entries: IndexEntry[],
  regions: readonly SnapshotRegion[],
  header: SnapshotHeader,
): { chunks: ChunkLocation[]; others: IndexEntry[] } {
  const grid = chunkGrid(regions, header.pageSize, header.pagesPerChunk);
  const chunks: ChunkLocation[] = [];
  const others: IndexEntry[] = [];
  for (const entry of entries.slice(1)) {
    const where = { section: entry.type, offset: entry.offset };
    if (entry.type === SECTION.ramChunk || entry.type === SECTION.tagChunk) {
      const next = grid.next();
      const want = next.done ? undefined : next.value;
      if (
        !want ||
        chunkType(want.kind) !== entry.type ||
        want.region !== entry.region ||
        want.firstPage !== entry.firstPage ||
        want.pageCount !== entry.pageCount
      ) {
        const wanted = want ? `${chunkType(want.kind)} region ${want.region} pages ${want.firstPage}+${want.pageCount}` : 'no more chunks';
        throw new SnapshotFormatError(
          'bad-index',
          `index lists ${entry.type} region ${entry.region} pages ${entry.firstPage}+${entry.pageCount} where the layout wants ${wanted}`,
          where,
        );
      }
      chunks.push({
        kind: want.kind,
        region: want.region,
        firstPage: want.firstPage,
        pageCount: want.pageCount,
        offset: entry.offset,
        length: entry.length,
      });
    } else if (entry.type === SECTION.vcpu || entry.type === SECTION.blob || !isCritical(entry.type)) {
      others.push(entry);
    } else {
      throw new SnapshotFormatError(
        'unknown-critical-section',
        `critical section type ${entry.type} is unknown to this reader (written by a newer vmsnap?)`,
        where,
      );
    }
  }
  const missing = grid.next();
  if (!missing.done) {
    const m = missing.value;
    throw new SnapshotFormatError(
      'bad-index',
      `${chunkType(m.kind)} for region ${m.region} pages ${m.firstPage}+${m.pageCount} is missing`,
      { section: 'INDX', region: m.region, guestAddress: regions[m.region].guestAddress + BigInt(m.firstPage) * BigInt(header.pageSize) },
    );
  }
  return { chunks, others };
}

class FileSnapshotReader implements SnapshotReader {
  readonly regions: readonly SnapshotRegion[];
  readonly fileSize: bigint;

  constructor(
    readonly path: string,
    private readonly file: FileBytes,
    readonly header: SnapshotHeader,
    readonly metadata: SnapshotMetadata,
    readonly chunks: readonly ChunkLocation[],
    private readonly others: readonly IndexEntry[],
    private readonly executor: ChunkExecutor,
  ) {
    this.regions = metadata.regions;
    this.fileSize = file.size;
  }

  /** Reads a section the index located, checking its header against the index entry; the payload is checked by the caller. */
  private readSection(offset: bigint, length: bigint, type: string): { section: SectionHeader; payload: Uint8Array } {
    const section = decodeSectionHeader(this.file.read(offset, SECTION_HEADER_LENGTH, type), offset);
    if (section.type !== type || BigInt(SECTION_HEADER_LENGTH) + section.payloadLength !== length) {
      throw new SnapshotFormatError(
        'bad-index',
        `section is ${section.type} of ${section.payloadLength} payload bytes, ` +
          `the index says ${type} of ${length - BigInt(SECTION_HEADER_LENGTH)}`,
        { section: type, offset },
      );
    }
    const payloadLength = checkPayloadLength(section, this.header);
    return { section, payload: this.file.read(offset + BigInt(SECTION_HEADER_LENGTH), payloadLength, type) };
  }

  private readChecked(entry: { offset: bigint; length: bigint }, type: string): { section: SectionHeader; payload: Uint8Array } {
    const read = this.readSection(entry.offset, entry.length, type);
    checkPayload(read.section, read.payload);
    return read;
  }

  async readChunk(location: ChunkLocation): Promise<RamChunk | TagChunk> {
    const { section, payload } = this.readSection(location.offset, location.length, chunkType(location.kind));
    return decodeChunk(this.executor, this.header, this.regions, section, payload, location as GridChunk);
  }

  async readRamChunk(location: ChunkLocation): Promise<RamChunk> {
    if (location.kind !== 'ram') throw new TypeError('readRamChunk takes a RAM chunk');
    return (await this.readChunk(location)) as RamChunk;
  }

  async readTagChunk(location: ChunkLocation): Promise<TagChunk> {
    if (location.kind !== 'tags') throw new TypeError('readTagChunk takes a tag chunk');
    return (await this.readChunk(location)) as TagChunk;
  }

  private regionAt(guestAddress: bigint, length: number): SnapshotRegion {
    const end = guestAddress + BigInt(length);
    const region = this.regions.find((r) => guestAddress >= r.guestAddress && end <= r.guestAddress + r.size);
    if (!region) throw new RangeError(`IPA range 0x${guestAddress.toString(16)}+${length} is not inside one region of this snapshot`);
    return region;
  }

  /** Copies [guestAddress, +length) out of the chunks of `kind` that cover it; `unit` guest bytes per output byte. */
  private async gather(kind: 'ram' | 'tags', guestAddress: bigint, length: number, unit: number): Promise<Uint8Array> {
    const region = this.regionAt(guestAddress, length);
    const out = new Uint8Array(length / unit);
    const pageSize = BigInt(this.header.pageSize);
    const start = guestAddress - region.guestAddress;
    const end = start + BigInt(length);
    for (const location of this.chunks) {
      if (location.kind !== kind || location.region !== region.index) continue;
      const chunkStart = BigInt(location.firstPage) * pageSize;
      const chunkEnd = chunkStart + BigInt(location.pageCount) * pageSize;
      if (chunkEnd <= start || chunkStart >= end) continue;
      const chunk = await this.readChunk(location);
      const bytes = 'data' in chunk ? chunk.data : chunk.tags;
      const from = start > chunkStart ? start : chunkStart;
      const to = end < chunkEnd ? end : chunkEnd;
      out.set(
        bytes.subarray(Number((from - chunkStart) / BigInt(unit)), Number((to - chunkStart) / BigInt(unit))),
        Number((from - start) / BigInt(unit)),
      );
    }
    return out;
  }

  readMemory(guestAddress: bigint, length: number): Promise<Uint8Array> {
    return this.gather('ram', guestAddress, length, 1);
  }

  readTags(guestAddress: bigint, length: number): Promise<Uint8Array> {
    if (guestAddress % BigInt(GRANULE_SIZE) || length % GRANULE_SIZE) throw new RangeError('tag reads must be 16-byte aligned');
    const region = this.regionAt(guestAddress, length);
    if (!region.mte) throw new RangeError(`region "${region.name}" has no tags (not an MTE region)`);
    return this.gather('tags', guestAddress, length, GRANULE_SIZE);
  }

  async vcpus(): Promise<VcpuState[]> {
    return this.others
      .filter((e) => e.type === SECTION.vcpu)
      .map((e) => {
        const { section, payload } = this.readChecked(e, SECTION.vcpu);
        return decodeVcpu(payload, section.offset);
      });
  }

  async blobs(): Promise<VmmBlob[]> {
    return this.others
      .filter((e) => e.type === SECTION.blob)
      .map((e) => {
        const { section, payload } = this.readChecked(e, SECTION.blob);
        return decodeBlob(payload, section.offset);
      });
  }

  /** Every chunk in order, then vCPUs and blobs, decoding up to `ahead` chunks in parallel. */
  async *events(ahead = Math.max(2, this.executor.threads * 2)): AsyncGenerator<SnapshotEvent> {
    yield { type: 'start', header: this.header, metadata: this.metadata };
    const pending: Array<Promise<RamChunk | TagChunk>> = [];
    let next = 0;
    while (next < this.chunks.length || pending.length) {
      while (next < this.chunks.length && pending.length < ahead) {
        const read = this.readChunk(this.chunks[next++]);
        read.catch(() => {}); // Observed when its turn comes; avoids an unhandled rejection meanwhile.
        pending.push(read);
      }
      yield { type: 'chunk', chunk: await pending.shift()! };
    }
    for (const vcpu of await this.vcpus()) yield { type: 'vcpu', vcpu };
    for (const blob of await this.blobs()) yield { type: 'blob', blob };
    for (const entry of this.others)
      if (entry.type !== SECTION.vcpu && entry.type !== SECTION.blob)
        yield { type: 'skipped', sectionType: entry.type, offset: entry.offset };
  }

  async close(): Promise<void> {
    closeSync(this.file.fd);
    await this.executor.close();
  }
}

export type FileSnapshot = FileSnapshotReader;

/** Opens and checks a snapshot file; see the module comment for what is checked. */
export async function openSnapshot(path: string, options: OpenOptions = {}): Promise<FileSnapshot> {
  const fd = openSync(path, 'r');
  try {
    const file = new FileBytes(fd, BigInt(fstatSync(fd).size));
    const header = decodeHeader(file.read(0n, Math.min(HEADER_LENGTH, Number(file.size)), 'header'));
    const { entries, indexOffset } = readTrailerAndIndex(file);
    checkTiling(entries, indexOffset);
    const metaEntry = entries[0];
    const metaSection = decodeSectionHeader(file.read(metaEntry.offset, SECTION_HEADER_LENGTH, SECTION.metadata), metaEntry.offset);
    if (metaSection.type !== SECTION.metadata || BigInt(SECTION_HEADER_LENGTH) + metaSection.payloadLength !== metaEntry.length) {
      throw new SnapshotFormatError('bad-index', 'META section does not match its index entry', {
        section: SECTION.metadata,
        offset: metaEntry.offset,
      });
    }
    const metaPayload = file.read(
      metaEntry.offset + BigInt(SECTION_HEADER_LENGTH),
      checkPayloadLength(metaSection, header),
      SECTION.metadata,
    );
    checkPayload(metaSection, metaPayload);
    const metadata = decodeMetadata(metaPayload, metaEntry.offset + BigInt(SECTION_HEADER_LENGTH));
    checkRegions(metadata.regions, header.pageSize);
    const { chunks, others } = checkIndexAgainstGrid(entries, metadata.regions, header);
    return new FileSnapshotReader(path, file, header, metadata, chunks, others, createChunkExecutor(options.threads));
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}
