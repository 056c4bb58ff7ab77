/**
 * The reader-side rules of spec/FORMAT.md that concern sections, in one place
 * for both readers: the file reader (open.ts) walks the index and the pipe
 * reader (stream.ts) walks the stream, and both feed every section, in file
 * order, through the same checks. So the two cannot come to different
 * verdicts on a file:
 *
 *  - SectionSequence: what may come where (META first, chunks in grid order,
 *    VCPU and BLOB after the chunks, INDX last, unknown critical types
 *    refused), payload length limits, and the counts and totals of the
 *    "Limits" table, each checked before the payload is read;
 *  - expectedIndexEntry / indexEntryFault: what the index must say about each
 *    section;
 *  - chunkHeaderFault / decodeChunk: the chunk header against the grid, and a
 *    chunk decoded into the types the library hands out.
 */

import { equalBytes } from '../format/bytes.js';
import { bitmapLength, ChunkDecodeError, checkChunkFraming, contentBytesPerPage, readChunkHeader } from '../format/chunk.js';
import { checkRegions, chunkGrid, type GridChunk, type GridKind, regionPageCount } from '../format/chunk-grid.js';
import { ramChunk, ramChunkFromContent, tagChunk, tagChunkFromPacked } from '../format/chunk-objects.js';
import { CHUNK_HEADER_LENGTH, LIMITS, NO_REGION, SECTION, SECTION_HEADER_LENGTH } from '../format/constants.js';
import { type DiffSection, decodeChangedPages, pageStoredUnmarked, readChangedPagesHeader } from '../format/diff.js';
import { type FormatErrorLocation, SnapshotFormatError } from '../format/errors.js';
import { differingIndexField, type IndexEntry } from '../format/index-section.js';
import type { ChangedPages, ChunkLocation, RamChunk, SnapshotHeader, SnapshotMetadata, SnapshotRegion, TagChunk } from '../format/model.js';
import type { VcpuState } from '../format/registers.js';
import { isCritical, type SectionHeader } from '../format/section.js';
import type { DecodedChunkResult } from '../parallel/chunk-jobs.js';
import type { ChunkExecutor } from '../parallel/chunk-pool.js';

export function chunkType(kind: GridKind): string {
  return kind === 'ram' ? SECTION.ramChunk : kind === 'tags' ? SECTION.tagChunk : SECTION.changedPages;
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
    case SECTION.diff:
      return BigInt(LIMITS.diff);
    case SECTION.changedPages:
      return BigInt(CHUNK_HEADER_LENGTH + bitmapLength(header.pagesPerChunk));
    case SECTION.ramChunk:
    case SECTION.tagChunk: {
      // Stored content is never larger than the raw content: compressed content must be shorter (checkChunkFraming).
      const kind = type === SECTION.ramChunk ? 'ram' : 'tags';
      const content = header.pagesPerChunk * contentBytesPerPage(kind, header.pageSize);
      return BigInt(CHUNK_HEADER_LENGTH + bitmapLength(header.pagesPerChunk) + content);
    }
    default:
      return BigInt(LIMITS.ancillary);
  }
}

function where(section: SectionHeader, plus = 0n): FormatErrorLocation {
  return { section: section.type, offset: section.offset + plus };
}

export function checkPayloadLength(section: SectionHeader, header: SnapshotHeader): number {
  const limit = payloadLimit(section.type, header);
  if (section.payloadLength > limit) {
    throw new SnapshotFormatError(
      'limit-exceeded',
      `${section.type} declares ${section.payloadLength} payload bytes, more than the ${limit} this file allows`,
      where(section, 8n),
    );
  }
  return Number(section.payloadLength);
}

/** What a section is, once SectionSequence has placed it. */
export type SectionRole =
  | { readonly role: 'metadata' }
  | { readonly role: 'diff' }
  | { readonly role: 'changed'; readonly chunk: GridChunk }
  | { readonly role: 'chunk'; readonly chunk: GridChunk }
  | { readonly role: 'vcpu' }
  | { readonly role: 'blob' }
  | { readonly role: 'ancillary' }
  | { readonly role: 'index' };

/** Chunks the grid holds: what the index will list besides META and the sections after the chunks. */
export function gridChunkCount(regions: readonly SnapshotRegion[], pageSize: number, pagesPerChunk: number, diff = false): number {
  let count = 0;
  for (const region of regions) {
    count += Math.ceil(regionPageCount(region, pageSize) / pagesPerChunk) * ((region.mte ? 2 : 1) + (diff ? 1 : 0));
  }
  return count;
}

/**
 * The order, counts and totals of a file's sections (spec sections 4 and
 * 10.3), fed with each section header in file order. `place` says what the
 * section is and throws when it may not come there; the caller then reads
 * the payload (META: `begin` with its metadata; VCPU: `vcpu`) and, at INDX,
 * `finish` says whether every chunk came.
 */
export class SectionSequence {
  /** Sections placed so far, INDX not counted: the entries the index must hold. */
  sections = 0;
  private grid: Generator<GridChunk> | undefined;
  private pending: IteratorResult<GridChunk> | undefined;
  private metadata: SnapshotMetadata | undefined;
  /** A DIFF section came: the grid has a changed-page map before each RAM chunk. */
  diff = false;
  private vcpus = 0;
  private vcpuBytes = 0n;
  private blobs = 0;
  private blobBytes = 0n;
  private readonly vcpuIds = new Set<number>();
  private registers = 0;

  constructor(readonly header: SnapshotHeader) {}

  place(section: SectionHeader): SectionRole {
    const { type } = section;
    if (this.sections === 0 && type !== SECTION.metadata) {
      throw new SnapshotFormatError('bad-section', `the first section is ${type}, not META`, where(section));
    }
    if (type === SECTION.index) {
      this.finish(section);
      return { role: 'index' };
    }
    if (type === SECTION.metadata && this.sections > 0)
      throw new SnapshotFormatError('bad-section', 'a second META section', where(section));
    const known = (Object.values(SECTION) as string[]).includes(type);
    if (!known && isCritical(type)) {
      throw new SnapshotFormatError(
        'unknown-critical-section',
        `critical section type ${type} is unknown to this reader (written by a newer vmsnap?)`,
        where(section),
      );
    }
    let role: SectionRole;
    if (type === SECTION.metadata) role = { role: 'metadata' };
    else if (type === SECTION.diff) role = this.placeDiff(section);
    else if (type === SECTION.changedPages) role = { role: 'changed', chunk: this.nextChunk(section) };
    else if (type === SECTION.ramChunk || type === SECTION.tagChunk) role = { role: 'chunk', chunk: this.nextChunk(section) };
    else if (type === SECTION.vcpu || type === SECTION.blob) role = this.afterChunks(section);
    else role = { role: 'ancillary' };
    if (++this.sections > LIMITS.sections) {
      throw new SnapshotFormatError('limit-exceeded', `more than ${LIMITS.sections} sections`, where(section));
    }
    checkPayloadLength(section, this.header);
    this.count(section, role);
    return role;
  }

  /** The chunk grid of the metadata META carried: checks the regions, and that the file's sections stay within the limit. */
  begin(metadata: SnapshotMetadata, metaSection: SectionHeader): void {
    checkRegions(metadata.regions, this.header.pageSize);
    this.metadata = metadata;
    this.checkGridSize(metaSection);
  }

  private checkGridSize(section: SectionHeader): void {
    const chunks = gridChunkCount(this.metadata!.regions, this.header.pageSize, this.header.pagesPerChunk, this.diff);
    if (1 + (this.diff ? 1 : 0) + chunks > LIMITS.sections) {
      throw new SnapshotFormatError(
        'limit-exceeded',
        `the regions need ${chunks} chunk sections with ${this.header.pagesPerChunk} pages per chunk; ` +
          `a file holds at most ${LIMITS.sections} sections`,
        where(section, BigInt(SECTION_HEADER_LENGTH)),
      );
    }
  }

  /** A DIFF section: only right after META (spec 4.1). */
  private placeDiff(section: SectionHeader): SectionRole {
    if (this.sections !== 1 || this.grid) {
      throw new SnapshotFormatError('bad-section', 'a DIFF section anywhere but right after META', where(section));
    }
    this.diff = true;
    this.checkGridSize(section);
    return { role: 'diff' };
  }

  /** The DIFF section's payload, decoded: it names the parent META names. */
  diffSection(diff: DiffSection, section: SectionHeader): void {
    const parentId = this.metadata!.parentId;
    if (!parentId || !equalBytes(parentId, diff.parentId)) {
      throw new SnapshotFormatError(
        'bad-metadata',
        `the DIFF section names parent ${hex(diff.parentId)}, META's parent_id is ${parentId ? hex(parentId) : 'nil'}`,
        where(section, BigInt(SECTION_HEADER_LENGTH)),
      );
    }
  }

  /** The grid, made when the first section after META shows whether the file is a diff. */
  private startGrid(): void {
    if (this.grid || !this.metadata) return;
    this.grid = chunkGrid(this.metadata.regions, this.header.pageSize, this.header.pagesPerChunk, this.diff);
    this.pending = this.grid.next();
  }

  private nextChunk(section: SectionHeader): GridChunk {
    this.startGrid();
    const want = this.pending;
    if (!want || want.done || chunkType(want.value.kind) !== section.type) {
      const wanted = !want || want.done ? 'no more chunks' : describeChunk(want.value);
      throw new SnapshotFormatError('layout-mismatch', `a ${section.type} section where the chunk grid wants ${wanted}`, where(section));
    }
    this.pending = this.grid!.next();
    return want.value;
  }

  private afterChunks(section: SectionHeader): SectionRole {
    this.startGrid();
    if (this.pending && !this.pending.done) {
      throw new SnapshotFormatError(
        'bad-section',
        `a ${section.type} section before the last chunk (the grid still wants ${describeChunk(this.pending.value)}); ` +
          'VCPU and BLOB sections come after the chunks',
        where(section),
      );
    }
    return section.type === SECTION.vcpu ? { role: 'vcpu' } : { role: 'blob' };
  }

  private count(section: SectionHeader, role: SectionRole): void {
    const over = (what: string, limit: number) => {
      throw new SnapshotFormatError('limit-exceeded', `more than ${limit} ${what} in one file`, where(section, 8n));
    };
    if (role.role === 'vcpu') {
      if (++this.vcpus > LIMITS.vcpus) over('vCPUs', LIMITS.vcpus);
      this.vcpuBytes += section.payloadLength;
      if (this.vcpuBytes > BigInt(LIMITS.vcpuTotal)) over('bytes of VCPU payloads', LIMITS.vcpuTotal);
    } else if (role.role === 'blob') {
      if (++this.blobs > LIMITS.blobs) over('blobs', LIMITS.blobs);
      this.blobBytes += section.payloadLength;
      if (this.blobBytes > BigInt(LIMITS.blobTotal)) over('bytes of BLOB payloads', LIMITS.blobTotal);
    }
  }

  /** A decoded vCPU: each vCPU id at most once per file, and a bound on the registers of all of them. */
  vcpu(state: VcpuState, section: SectionHeader): void {
    if (this.vcpuIds.has(state.id)) {
      throw new SnapshotFormatError('bad-metadata', `vCPU ${state.id} is saved twice`, where(section, BigInt(SECTION_HEADER_LENGTH)));
    }
    this.vcpuIds.add(state.id);
    this.registers += state.registers.length;
    if (this.registers > LIMITS.registers) {
      throw new SnapshotFormatError(
        'limit-exceeded',
        `more than ${LIMITS.registers} registers in all vCPUs together`,
        where(section, BigInt(SECTION_HEADER_LENGTH)),
      );
    }
  }

  /** At the index: META came, and every chunk of the grid. `at` locates the index. */
  finish(at: { type: string; offset: bigint }): void {
    this.startGrid();
    if (!this.grid) throw new SnapshotFormatError('bad-section', 'the file has no META section', { section: at.type, offset: at.offset });
    if (!this.pending!.done) {
      throw new SnapshotFormatError('layout-mismatch', `the index comes before ${describeChunk(this.pending!.value)}`, {
        section: at.type,
        offset: at.offset,
      });
    }
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function describeChunk(chunk: GridChunk): string {
  return `${chunkType(chunk.kind)} region ${chunk.region} pages ${chunk.firstPage}+${chunk.pageCount}`;
}

/** What the index must say about a section read at its place (spec section 8). */
export function expectedIndexEntry(section: SectionHeader, role: SectionRole): IndexEntry {
  const chunk = role.role === 'chunk' || role.role === 'changed' ? role.chunk : undefined;
  return {
    type: section.type,
    region: chunk?.region ?? NO_REGION,
    firstPage: chunk?.firstPage ?? 0,
    offset: section.offset,
    length: BigInt(SECTION_HEADER_LENGTH) + section.payloadLength,
    pageCount: chunk?.pageCount ?? 0,
    payloadChecksum: section.payloadChecksum,
  };
}

/** What is wrong with index entry `i` (at file offset `entryOffset`) against what it must say, field by field, or null. */
export function indexEntryFault(entry: IndexEntry, expected: IndexEntry, i: number, entryOffset: bigint): SnapshotFormatError | null {
  const field = differingIndexField(entry, expected);
  if (field === null) return null;
  const shown = (e: IndexEntry) => {
    const value = {
      type: e.type,
      region: e.region,
      first_page: e.firstPage,
      offset: e.offset,
      length: e.length,
      page_count: e.pageCount,
      payload_checksum: `0x${e.payloadChecksum.toString(16)}`,
    }[field];
    return String(value).replace(/[^\x20-\x7e]/g, '?');
  };
  return new SnapshotFormatError(
    'bad-index',
    `index entry ${i} says ${field} ${shown(entry)}, the ${expected.type} section it lists has ${shown(expected)}`,
    { section: 'INDX', offset: entryOffset },
  );
}

function chunkAddress(regions: readonly SnapshotRegion[], header: SnapshotHeader, chunk: GridChunk): bigint {
  return regions[chunk.region].guestAddress + BigInt(chunk.firstPage) * BigInt(header.pageSize);
}

/** The chunk header names the grid's chunk, or the chunk is not where the grid places it. */
function checkChunkPlace(
  got: { region: number; firstPage: number; pageCount: number },
  expected: GridChunk,
  section: SectionHeader,
  guestAddress: bigint,
): void {
  if (got.region !== expected.region || got.firstPage !== expected.firstPage || got.pageCount !== expected.pageCount) {
    throw new SnapshotFormatError(
      'layout-mismatch',
      `chunk says region ${got.region} pages ${got.firstPage}+${got.pageCount}, ` +
        `the file's layout expects region ${expected.region} pages ${expected.firstPage}+${expected.pageCount}`,
      { section: section.type, offset: section.offset + BigInt(SECTION_HEADER_LENGTH), region: expected.region, guestAddress },
    );
  }
}

/**
 * What is wrong with a chunk's header, from its first 40 payload bytes and
 * its declared length alone (spec 10.1: a file reader checks this when it
 * opens the file), or null. The caller reports it only once the payload
 * checksum is known to be good, as the pipe reader, which checks the payload
 * first, would.
 */
export function chunkHeaderFault(
  section: SectionHeader,
  chunkHeader: Uint8Array,
  expected: GridChunk,
  header: SnapshotHeader,
  regions: readonly SnapshotRegion[],
): SnapshotFormatError | null {
  const guestAddress = chunkAddress(regions, header, expected);
  const payloadOffset = section.offset + BigInt(SECTION_HEADER_LENGTH);
  try {
    const head = chunkHeader.subarray(0, Number(section.payloadLength < 40n ? section.payloadLength : 40n));
    if (expected.kind === 'changed') {
      checkChunkPlace(readChangedPagesHeader(head, Number(section.payloadLength)), expected, section, guestAddress);
      return null;
    }
    const read = readChunkHeader(head);
    checkChunkFraming(read, expected.kind, header.pageSize, header.codec !== 0, Number(section.payloadLength));
    checkChunkPlace(read, expected, section, guestAddress);
    return null;
  } catch (error) {
    if (error instanceof SnapshotFormatError) return error;
    if (!(error instanceof ChunkDecodeError)) throw error;
    return new SnapshotFormatError(error.code, error.message, {
      section: section.type,
      offset: payloadOffset + BigInt(error.fieldOffset),
      region: expected.region,
      guestAddress,
    });
  }
}

/** Decodes a chunk payload on the executor and checks it is `expected`; errors name the section, offset and IPA. */
export async function decodeChunk(
  executor: ChunkExecutor,
  header: SnapshotHeader,
  regions: readonly SnapshotRegion[],
  section: SectionHeader,
  payload: Uint8Array,
  expected: GridChunk,
  /**
   * A chunk's content (RAM pages, packed tags) may stay in the executor's memory, or for a chunk stored raw
   * in `payload`: the caller releases both (releaseOfTransient; DecodeJob.contentIsScratch, contentMayViewPayload).
   */
  contentIsScratch = false,
): Promise<RamChunk | TagChunk> {
  const guestAddress = chunkAddress(regions, header, expected);
  const payloadOffset = section.offset + BigInt(SECTION_HEADER_LENGTH);
  if (expected.kind === 'changed') throw new TypeError('decodeChunk takes a RAM or tag chunk');
  const result = await executor.run({
    op: 'decode',
    kind: expected.kind,
    pageSize: header.pageSize,
    zstd: header.codec !== 0,
    payload,
    payloadChecksum: section.payloadChecksum,
    contentIsScratch,
    contentMayViewPayload: contentIsScratch,
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
  checkChunkPlace(decoded.header, expected, section, guestAddress);
  const location: ChunkLocation = {
    kind: expected.kind,
    region: expected.region,
    firstPage: expected.firstPage,
    pageCount: expected.pageCount,
    offset: section.offset,
    length: BigInt(SECTION_HEADER_LENGTH) + section.payloadLength,
  };
  return decodedChunk(location, decoded, header.pageSize);
}

/**
 * What gives back the reused memory a transient chunk lives in: the buffer its
 * section was read into (given back at once unless the chunk views it, as a
 * chunk stored raw may, or `keepSection`: its payload is handed on too) and a
 * compressed chunk's content (executor memory): a RAM chunk's present pages or
 * a tag chunk's packed tags.
 */
export function releaseOfTransient(
  executor: Pick<ChunkExecutor, 'release'>,
  chunk: RamChunk | TagChunk,
  section: Uint8Array,
  keepSection = false,
): () => void {
  // The packed content first: reading `tags` or `data` of a chunk that has it would expand it.
  const content = 'tags' in chunk ? chunk.packedTags : chunk.content;
  const viewed = content ?? ('tags' in chunk ? chunk.tags : chunk.data);
  const held: Uint8Array[] = [];
  if (keepSection || viewed.buffer === section.buffer) held.push(section);
  else executor.release(section);
  if (content && content.buffer !== section.buffer) held.push(content);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const bytes of held) executor.release(bytes);
  };
}

/** The chunk a decode job gave: its present pages (or tags) are expanded when first read, if the job left them packed. */
export function decodedChunk(location: ChunkLocation, decoded: DecodedChunkResult, pageSize: number): RamChunk | TagChunk {
  if (location.kind === 'tags') {
    return decoded.content
      ? tagChunkFromPacked(location, decoded.bitmap, decoded.content, pageSize)
      : tagChunk(location, decoded.bitmap, decoded.expanded!);
  }
  return decoded.content
    ? ramChunkFromContent(location, decoded.bitmap, decoded.content, pageSize)
    : ramChunk(location, decoded.bitmap, decoded.expanded!);
}

/** A CHGP payload (its payload checksum already checked), checked against the grid: the changed-page map it holds. */
export function decodeChangedPagesSection(
  header: SnapshotHeader,
  regions: readonly SnapshotRegion[],
  section: SectionHeader,
  payload: Uint8Array,
  expected: GridChunk,
): ChangedPages {
  const guestAddress = chunkAddress(regions, header, expected);
  const payloadOffset = section.offset + BigInt(SECTION_HEADER_LENGTH);
  try {
    const decoded = decodeChangedPages(payload);
    checkChunkPlace(decoded.header, expected, section, guestAddress);
    return {
      region: expected.region,
      firstPage: expected.firstPage,
      pageCount: expected.pageCount,
      changedCount: decoded.header.changedCount,
      offset: section.offset,
      length: BigInt(SECTION_HEADER_LENGTH) + section.payloadLength,
      changed: decoded.changed,
    };
  } catch (error) {
    if (!(error instanceof ChunkDecodeError)) throw error;
    throw new SnapshotFormatError(error.code, error.message, {
      section: section.type,
      offset: payloadOffset + BigInt(error.fieldOffset),
      region: expected.region,
      guestAddress,
    });
  }
}

/**
 * In a diff, a RAMC or TAGC stores only pages its changed-page map marks
 * (spec 4.1): otherwise the file would say two things about one page.
 */
export function checkStoredPagesMarked(
  chunk: RamChunk | TagChunk,
  changed: ChangedPages,
  header: SnapshotHeader,
  regions: readonly SnapshotRegion[],
): void {
  const page = pageStoredUnmarked(chunk.present, changed.changed, chunk.pageCount);
  if (page < 0) return;
  const type = 'data' in chunk ? SECTION.ramChunk : SECTION.tagChunk;
  throw new SnapshotFormatError('bad-chunk', `page ${page} of the chunk is stored but its changed-page map does not mark it`, {
    section: type,
    offset: chunk.offset + BigInt(SECTION_HEADER_LENGTH + CHUNK_HEADER_LENGTH + (page >>> 3)),
    region: chunk.region,
    guestAddress: regions[chunk.region].guestAddress + BigInt((chunk.firstPage + page) * header.pageSize),
  });
}
