/**
 * Reading a snapshot front to back from a pipe, where nothing can be sought:
 * chunks describe themselves, so each section is checked as it arrives
 * against the chunk grid the metadata defines; the index at the end is then
 * checked against what was read, and the trailer against the byte count.
 */
import type { Readable } from 'node:stream';
import { checkRegions, chunkGrid } from '../format/chunk-grid.js';
import { HEADER_LENGTH, INDEX_ENTRY_LENGTH, NO_REGION, SECTION, SECTION_HEADER_LENGTH, TRAILER_LENGTH } from '../format/constants.js';
import { SnapshotFormatError } from '../format/errors.js';
import { decodeHeader } from '../format/header.js';
import { decodeIndex, decodeTrailer, type IndexEntry } from '../format/index-section.js';
import { decodeBlob, decodeMetadata, decodeVcpu } from '../format/metadata.js';
import type { SnapshotHeader } from '../format/model.js';
import { checkPayload, decodeSectionHeader, isCritical, type SectionHeader } from '../format/section.js';
import { createChunkExecutor } from '../parallel/chunk-pool.js';
import type { SnapshotEvent } from './events.js';
import { checkPayloadLength, chunkType, decodeChunk } from './sections.js';

/** Exact-length reads from an async byte stream, counting the offset. */
class StreamBytes {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private buffer: Uint8Array = new Uint8Array(0);
  private ended = false;
  position = 0n;

  constructor(stream: Readable | NodeJS.ReadableStream | AsyncIterable<Uint8Array>) {
    this.iterator = (stream as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  }

  private async fill(length: number): Promise<void> {
    // An empty remainder may be a view of a buffer already transferred to a worker (detached): leave it out.
    const parts: Uint8Array[] = this.buffer.length ? [this.buffer] : [];
    let have = this.buffer.length;
    while (have < length && !this.ended) {
      const next = await this.iterator.next();
      if (next.done) this.ended = true;
      else {
        parts.push(next.value);
        have += next.value.length;
      }
    }
    if (parts.length > 1) this.buffer = Buffer.concat(parts);
    else if (parts.length === 1) this.buffer = parts[0];
  }

  async read(length: number, section: string): Promise<Uint8Array> {
    await this.fill(length);
    if (this.buffer.length < length) {
      throw new SnapshotFormatError('truncated', `stream ended ${length - this.buffer.length} bytes short`, {
        section,
        offset: this.position + BigInt(this.buffer.length),
      });
    }
    const bytes = this.buffer.slice(0, length);
    this.buffer = this.buffer.subarray(length);
    this.position += BigInt(length);
    return bytes;
  }

  /** Skips `length` bytes without holding them. */
  async skip(length: bigint, section: string): Promise<void> {
    let left = length;
    while (left > 0n) {
      const step = left > 1n << 20n ? 1 << 20 : Number(left);
      await this.read(step, section);
      left -= BigInt(step);
    }
  }

  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buffer.length === 0;
  }
}

/**
 * Reads the next section. `indexEntries` is how many sections came before:
 * an index must list exactly those, so its length is known before it is read
 * (a hostile stream cannot make the reader buffer more).
 */
async function readSection(
  bytes: StreamBytes,
  header: SnapshotHeader,
  indexEntries: number,
): Promise<{ section: SectionHeader; payload: Uint8Array | null }> {
  const offset = bytes.position;
  const section = decodeSectionHeader(await bytes.read(SECTION_HEADER_LENGTH, 'section header'), offset);
  const known = [SECTION.metadata, SECTION.ramChunk, SECTION.tagChunk, SECTION.vcpu, SECTION.blob, SECTION.index] as string[];
  if (!known.includes(section.type)) {
    if (isCritical(section.type)) {
      throw new SnapshotFormatError(
        'unknown-critical-section',
        `critical section type ${section.type} is unknown to this reader (written by a newer vmsnap?)`,
        { section: section.type, offset },
      );
    }
    await bytes.skip(section.payloadLength, section.type);
    return { section, payload: null };
  }
  if (section.type === SECTION.index && section.payloadLength !== BigInt(indexEntries * INDEX_ENTRY_LENGTH)) {
    throw new SnapshotFormatError(
      'bad-index',
      `index declares ${section.payloadLength} bytes; ` +
        `${indexEntries} sections came before it, so it must be ${indexEntries * INDEX_ENTRY_LENGTH}`,
      {
        section: 'INDX',
        offset: offset + 8n,
      },
    );
  }
  const length = section.type === SECTION.index ? indexEntries * INDEX_ENTRY_LENGTH : checkPayloadLength(section, header);
  return { section, payload: await bytes.read(length, section.type) };
}

export interface StreamReadOptions {
  threads?: number;
}

/** Reads a snapshot from a stream, yielding events in file order; throws a SnapshotFormatError at the first fault. */
export async function* readSnapshotStream(
  stream: Readable | NodeJS.ReadableStream | AsyncIterable<Uint8Array>,
  options: StreamReadOptions = {},
): AsyncGenerator<SnapshotEvent> {
  const bytes = new StreamBytes(stream);
  const header = decodeHeader(await bytes.read(HEADER_LENGTH, 'header'));
  const first = await readSection(bytes, header, 0);
  if (first.section.type !== SECTION.metadata || !first.payload)
    throw new SnapshotFormatError('bad-section', 'the first section is not META', {
      section: first.section.type,
      offset: first.section.offset,
    });
  checkPayload(first.section, first.payload);
  const metadata = decodeMetadata(first.payload, first.section.offset + BigInt(SECTION_HEADER_LENGTH));
  checkRegions(metadata.regions, header.pageSize);
  yield { type: 'start', header, metadata };

  const seen: IndexEntry[] = [indexEntryOf(first.section)];
  const grid = chunkGrid(metadata.regions, header.pageSize, header.pagesPerChunk);
  let expected = grid.next();
  const executor = createChunkExecutor(options.threads);
  try {
    for (;;) {
      const { section, payload } = await readSection(bytes, header, seen.length);
      if (section.type === SECTION.index) {
        if (!expected.done)
          throw new SnapshotFormatError(
            'truncated',
            `the index came before ${chunkType(expected.value.kind)} region ${expected.value.region} page ${expected.value.firstPage}`,
            { section: 'INDX', offset: section.offset },
          );
        checkPayload(section, payload!);
        checkIndexMatches(decodeIndex(payload!, section.offset + BigInt(SECTION_HEADER_LENGTH)), seen, section.offset);
        await checkTrailer(bytes, section.offset);
        return;
      }
      if (section.type === SECTION.ramChunk || section.type === SECTION.tagChunk) {
        if (expected.done || chunkType(expected.value.kind) !== section.type) {
          throw new SnapshotFormatError(
            'bad-section',
            `unexpected ${section.type}: the layout wants ${expected.done ? 'no more chunks' : chunkType(expected.value.kind)}`,
            { section: section.type, offset: section.offset },
          );
        }
        const chunk = await decodeChunk(executor, header, metadata.regions, section, payload!, expected.value);
        seen.push(indexEntryOf(section, chunk));
        expected = grid.next();
        yield { type: 'chunk', chunk };
        continue;
      }
      seen.push(indexEntryOf(section));
      if (!payload) {
        yield { type: 'skipped', sectionType: section.type, offset: section.offset };
        continue;
      }
      checkPayload(section, payload);
      const payloadOffset = section.offset + BigInt(SECTION_HEADER_LENGTH);
      if (section.type === SECTION.vcpu) yield { type: 'vcpu', vcpu: decodeVcpu(payload, payloadOffset) };
      else if (section.type === SECTION.blob) yield { type: 'blob', blob: decodeBlob(payload, payloadOffset) };
      else
        throw new SnapshotFormatError('bad-section', `a second ${section.type} section`, { section: section.type, offset: section.offset });
    }
  } finally {
    await executor.close();
  }
}

function indexEntryOf(section: SectionHeader, chunk?: { region: number; firstPage: number; pageCount: number }): IndexEntry {
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

function checkIndexMatches(index: IndexEntry[], seen: IndexEntry[], offset: bigint): void {
  const same = (a: IndexEntry, b: IndexEntry) =>
    a.type === b.type &&
    a.region === b.region &&
    a.firstPage === b.firstPage &&
    a.offset === b.offset &&
    a.length === b.length &&
    a.pageCount === b.pageCount &&
    a.payloadChecksum === b.payloadChecksum;
  if (index.length !== seen.length || index.some((entry, i) => !same(entry, seen[i]))) {
    const at = index.findIndex((entry, i) => !seen[i] || !same(entry, seen[i]));
    throw new SnapshotFormatError(
      'bad-index',
      `the index does not describe the sections read (first difference at entry ${at === -1 ? seen.length : at})`,
      { section: 'INDX', offset },
    );
  }
}

async function checkTrailer(bytes: StreamBytes, indexOffset: bigint): Promise<void> {
  const offset = bytes.position;
  const trailer = decodeTrailer(await bytes.read(TRAILER_LENGTH, 'trailer'), offset);
  if (trailer.indexOffset !== indexOffset || trailer.fileLength !== bytes.position) {
    throw new SnapshotFormatError('bad-trailer', 'trailer does not match the stream read', { section: 'trailer', offset });
  }
  if (!(await bytes.atEnd()))
    throw new SnapshotFormatError('bad-trailer', 'bytes follow the trailer', { section: 'trailer', offset: bytes.position });
}
