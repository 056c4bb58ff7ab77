/**
 * Opening a snapshot file for random access. Before anything is returned,
 * everything but the chunks' contents is read and checked, with the same
 * rules (src/reader/sections.ts) the pipe reader applies as sections arrive:
 * the header, the trailer, the index; then, walking the index, every
 * section's header against its index entry and its place in the file, the
 * chunk header of every chunk against the chunk grid, and the META, VCPU and
 * BLOB payloads. So every command that opens a file (info, verify, restore,
 * the forensics commands) gives the verdict the pipe reader gives on the same
 * bytes, except for the faults inside a chunk's content, which are found when
 * that chunk is read.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { uninitialisedBytes } from '../format/bytes.js';
import type { GridChunk } from '../format/chunk-grid.js';
import { HEADER_LENGTH, INDEX_ENTRY_LENGTH, LIMITS, SECTION, SECTION_HEADER_LENGTH, TRAILER_LENGTH } from '../format/constants.js';
import { decodeDiffSection } from '../format/diff.js';
import { SnapshotFormatError } from '../format/errors.js';
import { changedPagesList, chunkList, GridTable } from '../format/grid-table.js';
import { decodeHeader } from '../format/header.js';
import { decodeIndexEntry, decodeTrailer, type IndexEntry, indexEntryCount } from '../format/index-section.js';
import { decodeBlob, decodeMetadata, decodeVcpu } from '../format/metadata.js';
import type {
  BlobSummary,
  ChangedPages,
  ChangedPagesList,
  ChangedPagesLocation,
  ChunkList,
  ChunkLocation,
  DiffInfo,
  RamChunk,
  SnapshotHeader,
  SnapshotMetadata,
  SnapshotReader,
  SnapshotRegion,
  TagChunk,
  VcpuSummary,
  VmmBlob,
} from '../format/model.js';
import { checkPayload, decodeSectionHeader, type SectionHeader } from '../format/section.js';
import { isSealed, SealedFileReader } from '../io/sealed-file.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import { timed, timedAsync } from '../parallel/phase-clock.js';
import type { VcpuState } from '../vm/vm.js';
import { keptPayload, type SnapshotEvent } from './events.js';
import { readGuestMemory, readGuestTags } from './guest-range.js';
import {
  checkPayloadLength,
  checkStoredPagesMarked,
  chunkHeaderFault,
  chunkType,
  decodeChangedPagesSection,
  decodeChunk,
  expectedIndexEntry,
  indexEntryFault,
  releaseOfTransient,
  SectionSequence,
} from './sections.js';

export interface OpenOptions {
  /** Chunks decoded at once; 0 decodes inline. Default: one per core, one more with the system libzstd (createChunkExecutor). */
  threads?: number;
  /** The 32-byte secret of an encrypted snapshot file (spec/STORE.md section 8); default: the one set with setDefaultSnapshotKey. */
  key?: Uint8Array;
}

/** Bytes read ahead for the small reads of opening (section and chunk headers): many small sections cost one read. */
const HEADER_WINDOW = 16 * 1024;

/** Positional reads that fail with a located error instead of returning short. */
class FileBytes {
  /** Read into again for every window: a fresh buffer per section header was most of opening's time (garbage to collect). */
  private readonly windowBuffer = uninitialisedBytes(HEADER_WINDOW);
  private window: Uint8Array = this.windowBuffer.subarray(0, 0);
  private windowStart = 0n;

  constructor(
    readonly fd: number,
    readonly size: bigint,
    /** An encrypted file: reads are of its plaintext, decrypted a segment at a time. */
    private readonly sealed?: SealedFileReader,
  ) {}

  /**
   * `length` (small) bytes at `offset`, from a window read ahead up to `limit`:
   * a view, valid until the next call. For the headers read when opening.
   */
  peek(offset: bigint, length: number, limit: bigint, section: string): Uint8Array {
    const at = offset - this.windowStart;
    if (at < 0n || at + BigInt(length) > BigInt(this.window.length)) {
      const end = offset + BigInt(HEADER_WINDOW) < limit ? offset + BigInt(HEADER_WINDOW) : limit;
      this.window = this.read(offset, Number(end - offset), section, this.windowBuffer.subarray(0, Number(end - offset)));
      this.windowStart = offset;
      return this.window.subarray(0, length);
    }
    return this.window.subarray(Number(at), Number(at) + length);
  }

  /**
   * `length` bytes at `offset`, into `into` when given (reused memory), else
   * into a buffer of their own (every byte is read into: no zero fill). On the
   * calling thread: from the page cache this costs less than a hand-off to
   * libuv's pool, whose threads are decompressing (a 1 GiB restore took
   * 1.8-2.2 s this way, 2.5-2.7 s with its reads on the pool).
   */
  read(offset: bigint, length: number, section: string, into?: Uint8Array): Uint8Array {
    if (offset < 0n || offset + BigInt(length) > this.size) {
      throw new SnapshotFormatError('truncated', `${length} bytes at this offset run past the end of the ${this.size}-byte file`, {
        section,
        offset,
      });
    }
    const bytes = into ?? uninitialisedBytes(length);
    let done = 0;
    while (done < length) {
      const n = this.sealed
        ? this.sealed.readInto(bytes, done, length - done, offset + BigInt(done))
        : readSync(this.fd, bytes, done, length - done, offset + BigInt(done));
      if (n === 0) throw new SnapshotFormatError('truncated', 'file ended while reading', { section, offset: offset + BigInt(done) });
      done += n;
    }
    return bytes;
  }

  /** A section's payload, as long as its header says (already checked against the limits). */
  payload(section: SectionHeader): Uint8Array {
    return this.read(section.offset + BigInt(SECTION_HEADER_LENGTH), Number(section.payloadLength), section.type);
  }
}

/** A section other than a chunk, located by the index. */
interface SectionEntry {
  readonly type: string;
  readonly offset: bigint;
  readonly length: bigint;
}

function readTrailerAndIndex(file: FileBytes): { index: Uint8Array; indexSection: SectionHeader } {
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
  if (section.payloadLength > BigInt(LIMITS.sections * INDEX_ENTRY_LENGTH)) {
    throw new SnapshotFormatError('limit-exceeded', `the index lists more than ${LIMITS.sections} sections`, {
      section: 'INDX',
      offset: indexOffset + 8n,
    });
  }
  const index = file.payload(section);
  checkPayload(section, index);
  return { index, indexSection: section };
}

/**
 * Walks the index and the sections it lists together, front to back, with
 * the pipe reader's rules (SectionSequence), and the index's own: its
 * entries tile the file from the header to the index, and each says what the
 * section at its offset is. Where a chunk header or an index entry is wrong,
 * the section's payload checksum is checked first, as the pipe reader (which
 * reads the payload before it looks inside) would, so both report the same
 * fault.
 */
interface WalkedSections {
  metadata: SnapshotMetadata;
  chunks: GridTable;
  others: SectionEntry[];
  vcpus: VcpuSummary[];
  blobs: BlobSummary[];
  diff: DiffInfo | null;
  changedMaps: GridTable;
}

function walkSections(file: FileBytes, header: SnapshotHeader, index: Uint8Array, indexSection: SectionHeader): WalkedSections {
  const indexOffset = indexSection.offset;
  const payloadOffset = indexOffset + BigInt(SECTION_HEADER_LENGTH);
  const count = indexEntryCount(index, payloadOffset);
  const sequence = new SectionSequence(header);
  let metadata: SnapshotMetadata | undefined;
  const chunks = new GridTable(header.pagesPerChunk);
  const others: SectionEntry[] = [];
  const vcpus: VcpuSummary[] = [];
  const blobs: BlobSummary[] = [];
  let diffParent: Uint8Array | null = null;
  const changedMaps = new GridTable(header.pagesPerChunk);
  let changedPages = 0n;
  let next = BigInt(HEADER_LENGTH);
  const indexView = new DataView(index.buffer, index.byteOffset, index.byteLength);
  for (let i = 0; i < count; i++) {
    const entryOffset = payloadOffset + BigInt(i * INDEX_ENTRY_LENGTH);
    const entry = decodeIndexEntry(index, i, payloadOffset, indexView);
    if (entry.offset !== next) throw tilingError(i, entry, entryOffset, `is at offset ${entry.offset}, expected ${next}`);
    if (indexOffset - entry.offset < BigInt(SECTION_HEADER_LENGTH))
      throw tilingError(i, entry, entryOffset, 'starts where no section header fits before the index');
    // The section header and, for a chunk, its chunk header: one read (or none, from the window of the last one).
    const head = file.peek(entry.offset, Number(bigMin(72n, indexOffset - entry.offset)), indexOffset, 'section header');
    const section = decodeSectionHeader(head, entry.offset);
    // Placed before the entry's length is looked at: a pipe reader meets the section header's claims first.
    const role = sequence.place(section);
    if (entry.length < BigInt(SECTION_HEADER_LENGTH) || entry.offset + entry.length > indexOffset)
      throw tilingError(i, entry, entryOffset, `has length ${entry.length}, which does not fit before the index`);
    const expected = expectedIndexEntry(section, role);
    switch (role.role) {
      case 'diff': {
        const payload = file.payload(section);
        checkPayload(section, payload);
        const diff = decodeDiffSection(payload, section.offset + BigInt(SECTION_HEADER_LENGTH));
        sequence.diffSection(diff, section);
        diffParent = diff.parentId;
        break;
      }
      case 'changed': {
        // A changed-page map is small (a header and a bitmap): checked whole when the file is opened, as a pipe reader does.
        const payload = file.payload(section);
        checkPayload(section, payload);
        const map = decodeChangedPagesSection(header, metadata!.regions, section, payload, role.chunk);
        const fault = indexEntryFault(entry, expected, i, entryOffset);
        if (fault) throw fault;
        changedMaps.push('changed', map.region, map.firstPage, map.pageCount, map.offset, map.length, map.changedCount);
        changedPages += BigInt(map.changedCount);
        break;
      }
      case 'metadata':
      case 'vcpu':
      case 'blob': {
        const payload = file.payload(section);
        checkPayload(section, payload);
        const at = section.offset + BigInt(SECTION_HEADER_LENGTH);
        if (role.role === 'metadata') {
          metadata = decodeMetadata(payload, at);
          sequence.begin(metadata, section);
        } else if (role.role === 'vcpu') {
          const vcpu = decodeVcpu(payload, at);
          sequence.vcpu(vcpu, section);
          vcpus.push({ id: vcpu.id, registers: vcpu.registers.length });
        } else {
          const blob = decodeBlob(payload, at);
          blobs.push({ name: blob.name, bytes: blob.data.length });
        }
        if (role.role !== 'metadata') others.push({ type: section.type, offset: section.offset, length: entry.length });
        break;
      }
      case 'chunk': {
        const fault =
          chunkHeaderFault(section, head.subarray(SECTION_HEADER_LENGTH), role.chunk, header, metadata!.regions) ??
          indexEntryFault(entry, expected, i, entryOffset);
        if (fault) {
          checkPayload(section, file.payload(section));
          throw fault;
        }
        const { kind, region, firstPage, pageCount } = role.chunk;
        if (kind === 'changed') throw new TypeError('a chunk role holds a RAM or tag chunk');
        chunks.push(kind, region, firstPage, pageCount, section.offset, entry.length);
        break;
      }
      case 'ancillary':
        others.push({ type: section.type, offset: section.offset, length: entry.length });
        break;
      case 'index':
        throw new SnapshotFormatError('bad-index', `index entry ${i} lists an INDX section; the index lists the sections before it`, {
          section: 'INDX',
          offset: entryOffset,
        });
    }
    const fault = indexEntryFault(entry, expected, i, entryOffset);
    if (fault) throw fault;
    next += entry.length;
  }
  if (next !== indexOffset)
    throw new SnapshotFormatError('bad-index', `indexed sections end at ${next}, the index starts at ${indexOffset}`, {
      section: 'INDX',
      offset: indexOffset,
    });
  sequence.finish(indexSection);
  chunks.trim();
  changedMaps.trim();
  const diff = diffParent ? { parentId: diffParent, changedPages } : null;
  return { metadata: metadata!, chunks, others, vcpus, blobs, diff, changedMaps };
}

function tilingError(i: number, entry: IndexEntry, entryOffset: bigint, message: string): SnapshotFormatError {
  return new SnapshotFormatError('bad-index', `index entry ${i} (${printable(entry.type)}) ${message}`, {
    section: 'INDX',
    offset: entryOffset,
  });
}

function bigMin(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

class FileSnapshotReader implements SnapshotReader {
  readonly regions: readonly SnapshotRegion[];
  readonly fileSize: bigint;
  readonly chunks: ChunkList;
  readonly changedPageMaps: ChangedPagesList;

  constructor(
    readonly path: string,
    private readonly file: FileBytes,
    readonly header: SnapshotHeader,
    readonly metadata: SnapshotMetadata,
    /** The chunks' rows: `chunks` seen as columns, read by position without making a location. */
    readonly chunkTable: GridTable,
    private readonly others: readonly SectionEntry[],
    readonly vcpuSummaries: readonly VcpuSummary[],
    readonly blobSummaries: readonly BlobSummary[],
    readonly diff: DiffInfo | null,
    private readonly changedMapTable: GridTable,
    private readonly executor: ChunkExecutor,
  ) {
    this.regions = metadata.regions;
    this.fileSize = file.size;
    this.chunks = chunkList(chunkTable);
    this.changedPageMaps = changedPagesList(changedMapTable);
  }

  async readChangedPages(location: ChangedPagesLocation): Promise<ChangedPages> {
    const { section, payload } = this.readChecked(location, SECTION.changedPages);
    const grid = { kind: 'changed' as const, region: location.region, firstPage: location.firstPage, pageCount: location.pageCount };
    return decodeChangedPagesSection(this.header, this.regions, section, payload, grid);
  }

  /** A diff's changed-page map of the chunk at `location`'s pages. */
  changedPagesOf(location: { region: number; firstPage: number }): ChangedPagesLocation {
    const at = this.changedMapTable.positionOf('changed', location.region, location.firstPage);
    if (at < 0) throw new RangeError(`no changed-page map for region ${location.region} page ${location.firstPage}`);
    return this.changedMapTable.changedPagesAt(at);
  }

  /** Reads a section the index located, checking its header against the index entry; the payload is checked by the caller. */
  private readSection(offset: bigint, length: bigint, type: string): { section: SectionHeader; payload: Uint8Array } {
    const section = this.checkedSectionHeader(this.file.read(offset, SECTION_HEADER_LENGTH, type), offset, length, type);
    return { section, payload: this.file.read(offset + BigInt(SECTION_HEADER_LENGTH), Number(section.payloadLength), type) };
  }

  /** readSection of a chunk, header and payload in one read (opening checked the length), into `into` if given. */
  private readChunkSection(location: ChunkLocation, into?: Uint8Array): { section: SectionHeader; payload: Uint8Array } {
    const type = chunkType(location.kind);
    const bytes = this.file.read(location.offset, Number(location.length), type, into);
    const section = this.checkedSectionHeader(bytes.subarray(0, SECTION_HEADER_LENGTH), location.offset, location.length, type);
    return { section, payload: bytes.subarray(SECTION_HEADER_LENGTH) };
  }

  private checkedSectionHeader(bytes: Uint8Array, offset: bigint, length: bigint, type: string): SectionHeader {
    const section = decodeSectionHeader(bytes, offset);
    if (section.type !== type || BigInt(SECTION_HEADER_LENGTH) + section.payloadLength !== length) {
      throw new SnapshotFormatError(
        'bad-index',
        `section is ${section.type} of ${section.payloadLength} payload bytes, ` +
          `the index says ${type} of ${length - BigInt(SECTION_HEADER_LENGTH)}`,
        { section: type, offset },
      );
    }
    checkPayloadLength(section, this.header);
    return section;
  }

  private readChecked(entry: { offset: bigint; length: bigint }, type: string): { section: SectionHeader; payload: Uint8Array } {
    const read = this.readSection(entry.offset, entry.length, type);
    checkPayload(read.section, read.payload);
    return read;
  }

  async readChunk(location: ChunkLocation): Promise<RamChunk | TagChunk> {
    return (await this.readChunkAndPayload(location)).chunk;
  }

  /** The chunk at `location`, decoded and checked, with its payload as stored (when a worker did not take it). */
  private async readChunkAndPayload(location: ChunkLocation): Promise<ReadChunk> {
    const { section, payload } = timed('reading', () => this.readChunkSection(location));
    const chunk = await decodeChunk(this.executor, this.header, this.regions, section, payload, location as GridChunk);
    await this.checkDiffPages(chunk, location);
    return { chunk, payload: keptPayload(payload) };
  }

  /**
   * The chunk at `location` in memory the reader reuses (see events'
   * `transient`): the section is read into it and a RAM chunk's content is
   * decoded into it. For a caller done with each chunk before it asks for many
   * more, such as verify: call `release` once done with the chunk. With
   * `withPayload`, the payload as stored (checked) is kept in that memory too,
   * valid until `release`, for a caller that stores it again (push).
   */
  async readTransientChunk(
    location: ChunkLocation,
    withPayload = false,
  ): Promise<{ chunk: RamChunk | TagChunk; payload?: Uint8Array; release: () => void }> {
    const buffer = this.executor.allocate(Number(location.length));
    let chunk: RamChunk | TagChunk;
    let payload: Uint8Array;
    try {
      const read = timed('reading', () => this.readChunkSection(location, buffer));
      payload = read.payload;
      chunk = await decodeChunk(this.executor, this.header, this.regions, read.section, payload, location as GridChunk, true);
    } catch (error) {
      // A bad chunk (verify reads on past it) gives its buffer back at once.
      this.executor.release(buffer);
      throw error;
    }
    const release = releaseOfTransient(this.executor, chunk, buffer, withPayload);
    try {
      await this.checkDiffPages(chunk, location);
    } catch (error) {
      release();
      throw error;
    }
    return { chunk, payload: withPayload ? keptPayload(payload) : undefined, release };
  }

  /** In a diff, a stored page must be a marked one: checked with the map, as the pipe reader checks it. */
  private async checkDiffPages(chunk: RamChunk | TagChunk, location: ChunkLocation): Promise<void> {
    if (this.diff) checkStoredPagesMarked(chunk, await this.readChangedPages(this.changedPagesOf(location)), this.header, this.regions);
  }

  async readRamChunk(location: ChunkLocation): Promise<RamChunk> {
    if (location.kind !== 'ram') throw new TypeError('readRamChunk takes a RAM chunk');
    return (await this.readChunk(location)) as RamChunk;
  }

  async readTagChunk(location: ChunkLocation): Promise<TagChunk> {
    if (location.kind !== 'tags') throw new TypeError('readTagChunk takes a tag chunk');
    return (await this.readChunk(location)) as TagChunk;
  }

  readMemory(guestAddress: bigint, length: number): Promise<Uint8Array> {
    return readGuestMemory(this, guestAddress, length);
  }

  readTags(guestAddress: bigint, length: number): Promise<Uint8Array> {
    return readGuestTags(this, guestAddress, length);
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

  /**
   * Every chunk in order, then vCPUs and blobs, decoding up to `ahead` chunks
   * in parallel. With `transient`, chunks come in memory the reader reuses:
   * each chunk event carries `release`, to call once done with the chunk, and
   * no payload unless `payloads` (then in that memory too, until `release`).
   */
  async *events(
    ahead = Math.max(2, this.executor.threads * 2),
    options: { transient?: boolean; payloads?: boolean } = {},
  ): AsyncGenerator<SnapshotEvent> {
    yield { type: 'start', header: this.header, metadata: this.metadata };
    if (this.diff) yield { type: 'diff', parentId: this.diff.parentId };
    const pending: Array<Promise<ReadChunk>> = [];
    let next = 0;
    while (next < this.chunkTable.length || pending.length) {
      while (next < this.chunkTable.length && pending.length < ahead) {
        const location = this.chunkTable.chunkAt(next++);
        const read: Promise<ReadChunk> = options.transient
          ? this.readTransientChunk(location, options.payloads)
          : this.readChunkAndPayload(location);
        read.catch(() => {}); // Observed when its turn comes; avoids an unhandled rejection meanwhile.
        pending.push(read);
      }
      const { chunk, payload, release } = await timedAsync('waiting on results', pending.shift()!);
      // A diff's map comes before the RAM chunk of its pages, as in the file.
      if (this.diff && chunk.kind === 'ram') yield { type: 'changed', pages: await this.readChangedPages(this.changedPagesOf(chunk)) };
      yield { type: 'chunk', chunk, payload, release };
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

/** A chunk as read: with its stored payload, or with the release of the reused memory it lives in. */
interface ReadChunk {
  readonly chunk: RamChunk | TagChunk;
  readonly payload?: Uint8Array;
  readonly release?: () => void;
}

export type FileSnapshot = FileSnapshotReader;

/** Opens and checks a snapshot file; see the module comment for what is checked. */
export async function openSnapshot(path: string, options: OpenOptions = {}): Promise<FileSnapshot> {
  const fd = openSync(path, 'r');
  try {
    const size = BigInt(fstatSync(fd).size);
    const magic = new Uint8Array(8);
    const sealed = isSealed(magic.subarray(0, readSync(fd, magic, 0, 8, 0)))
      ? new SealedFileReader(fd, size, path, options.key)
      : undefined;
    const file = new FileBytes(fd, sealed?.plainSize ?? size, sealed);
    const header = decodeHeader(file.read(0n, Math.min(HEADER_LENGTH, Number(file.size)), 'header'));
    const { index, indexSection } = readTrailerAndIndex(file);
    const { metadata, chunks, others, vcpus, blobs, diff, changedMaps } = walkSections(file, header, index, indexSection);
    const executor = createChunkExecutor(options.threads);
    return new FileSnapshotReader(path, file, header, metadata, chunks, others, vcpus, blobs, diff, changedMaps, executor);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}
