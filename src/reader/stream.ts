/**
 * Reading a snapshot front to back from a pipe, where nothing can be sought:
 * chunks describe themselves, so each section is checked as it arrives, with
 * the same rules (src/reader/sections.ts) the file reader applies when it
 * walks the index; the index at the end is then checked against what was
 * read, and the trailer against the byte count.
 *
 * Resources stay bounded whatever the stream says: every declared length is
 * checked against its limit before it is read, an unknown ancillary section
 * is read and dropped in pieces, what the index must say is kept as 48 bytes
 * per section, and a stream that stops sending ends with a StreamIdleError
 * after `idleTimeoutMs` instead of holding the reader forever.
 */
import type { Readable } from 'node:stream';
import { equalBytes } from '../format/bytes.js';
import { HEADER_LENGTH, INDEX_ENTRY_LENGTH, SECTION_HEADER_LENGTH, TRAILER_LENGTH } from '../format/constants.js';
import { decodeDiffSection } from '../format/diff.js';
import { SnapshotFormatError, VmsnapError } from '../format/errors.js';
import { decodeHeader } from '../format/header.js';
import { decodeIndexEntry, decodeTrailer, IndexBuilder } from '../format/index-section.js';
import { decodeBlob, decodeMetadata, decodeVcpu } from '../format/metadata.js';
import type { ChangedPages, SnapshotMetadata } from '../format/model.js';
import { checkPayload, decodeSectionHeader, type SectionHeader } from '../format/section.js';
import { unsealedStream } from '../io/sealed-file.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import { keptPayload, type SnapshotEvent } from './events.js';
import {
  checkStoredPagesMarked,
  decodeChangedPagesSection,
  decodeChunk,
  expectedIndexEntry,
  indexEntryFault,
  releaseOfTransient,
  SectionSequence,
} from './sections.js';

/** How long a pipe reader waits for the next bytes by default before it gives up: two minutes. */
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

/** The stream sent nothing for `idleMs` milliseconds; `offset` is how far it had come. */
export class StreamIdleError extends VmsnapError {
  declare readonly code: 'stream-idle';
  constructor(
    readonly offset: bigint,
    readonly idleMs: number,
  ) {
    super(
      'stream-idle',
      'io',
      `the stream sent nothing for ${idleMs} ms at offset ${offset} (0x${offset.toString(16)}): ` +
        'the writer stalled or the connection hangs (idle limit: idleTimeoutMs)',
    );
  }
}

type ByteSource = Readable | NodeJS.ReadableStream | AsyncIterable<Uint8Array>;

/** Exact-length reads from an async byte stream, counting the offset. */
class StreamBytes {
  private readonly iterator: AsyncIterator<Uint8Array>;
  /** Bytes received and not yet consumed: a view of the last piece the stream gave. */
  private rest: Uint8Array = new Uint8Array(0);
  private ended = false;
  position = 0n;

  constructor(
    source: ByteSource,
    private readonly idleMs: number,
    /** The stream `source` reads (when source is a decrypting view of it): the one a stall destroys. */
    private readonly underlying: ByteSource = source,
  ) {
    this.iterator = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  }

  /** The next piece of the stream, or null at its end; a stream silent for idleMs fails. */
  private async pull(): Promise<Uint8Array | null> {
    if (this.ended) return null;
    let timer: NodeJS.Timeout | undefined;
    const idle =
      this.idleMs > 0
        ? new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new StreamIdleError(this.position, this.idleMs)), this.idleMs);
          })
        : null;
    try {
      const next = await (idle ? Promise.race([this.iterator.next(), idle]) : this.iterator.next());
      if (next.done) {
        this.ended = true;
        return null;
      }
      return next.value;
    } catch (error) {
      if (error instanceof StreamIdleError) this.abandon();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Lets go of a stalled stream, so that it holds neither the reader nor the process. */
  private abandon(): void {
    this.ended = true;
    const source = this.underlying as { destroy?: () => void };
    if (typeof source.destroy === 'function') source.destroy();
    else void this.iterator.return?.()?.catch(() => {});
  }

  /** Stops reading a stream the reader is done with (a refused file): the rest is neither read nor kept. */
  release(): void {
    if (this.ended) return;
    this.ended = true;
    void this.iterator.return?.()?.catch(() => {});
  }

  private truncated(short: number, section: string): SnapshotFormatError {
    return new SnapshotFormatError('truncated', `stream ended ${short} bytes short`, { section, offset: this.position });
  }

  /** The next `length` bytes, in a buffer of their own (it may be handed to a worker thread), or in `into`. */
  async read(length: number, section: string, into?: Uint8Array): Promise<Uint8Array> {
    const out = into ?? new Uint8Array(length);
    let have = 0;
    while (have < length) {
      if (this.rest.length === 0) {
        const piece = await this.pull();
        if (!piece) throw this.truncated(length - have, section);
        this.rest = piece;
      }
      const take = Math.min(length - have, this.rest.length);
      out.set(this.rest.subarray(0, take), have);
      this.rest = this.rest.subarray(take);
      have += take;
      this.position += BigInt(take);
    }
    return out;
  }

  /** Reads and drops `length` bytes, one piece of the stream at a time: nothing is held. */
  async skip(length: bigint, section: string): Promise<void> {
    let left = length;
    while (left > 0n) {
      if (this.rest.length === 0) {
        const piece = await this.pull();
        if (!piece) throw this.truncated(Number(left), section);
        this.rest = piece;
      }
      const take = BigInt(this.rest.length) < left ? this.rest.length : Number(left);
      this.rest = this.rest.subarray(take);
      this.position += BigInt(take);
      left -= BigInt(take);
    }
  }

  async atEnd(): Promise<boolean> {
    while (this.rest.length === 0) {
      const piece = await this.pull();
      if (!piece) return true;
      this.rest = piece;
    }
    return false;
  }
}

export interface StreamReadOptions {
  threads?: number;
  /**
   * Milliseconds the reader waits for the next bytes before it fails with a
   * StreamIdleError (code "stream-idle") naming the offset; 0 waits forever.
   * Default DEFAULT_IDLE_TIMEOUT_MS (two minutes).
   */
  idleTimeoutMs?: number;
  /** The 32-byte secret of an encrypted snapshot (spec/STORE.md section 8); default: the one set with setDefaultSnapshotKey. */
  key?: Uint8Array;
  /**
   * Chunks come in memory the reader reuses: each chunk event carries
   * `release`, to call once done with the chunk, and no payload.
   */
  transient?: boolean;
}

/** Reads a snapshot from a stream, yielding events in file order; throws a SnapshotFormatError at the first fault. */
export async function* readSnapshotStream(stream: ByteSource, options: StreamReadOptions = {}): AsyncGenerator<SnapshotEvent> {
  // An encrypted snapshot is opened as it streams; a plain one passes through untouched.
  const plain = unsealedStream(stream as AsyncIterable<Uint8Array>, 'the stream', options.key);
  const bytes = new StreamBytes(plain, options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, stream);
  const header = decodeHeader(await bytes.read(HEADER_LENGTH, 'header'));
  const sequence = new SectionSequence(header);
  // What the index must hold, 48 bytes per section, as the writer keeps it.
  const index = new IndexBuilder();
  let metadata: SnapshotMetadata | undefined;
  let executor: ChunkExecutor | undefined;
  /** In a diff, the changed-page map of the pages whose chunks come next. */
  let changed: ChangedPages | undefined;
  try {
    for (;;) {
      const offset = bytes.position;
      const section = decodeSectionHeader(await bytes.read(SECTION_HEADER_LENGTH, 'section header'), offset);
      const role = sequence.place(section);
      if (role.role === 'index') {
        await readIndex(bytes, section, index);
        await checkTrailer(bytes, section.offset);
        return;
      }
      index.add(expectedIndexEntry(section, role));
      if (role.role === 'ancillary') {
        await bytes.skip(section.payloadLength, section.type);
        yield { type: 'skipped', sectionType: section.type, offset: section.offset };
        continue;
      }
      if (role.role === 'chunk') {
        executor ??= createChunkExecutor(options.threads);
        const length = Number(section.payloadLength);
        const reused = options.transient ? executor.allocate(length) : undefined;
        const payload = await bytes.read(length, section.type, reused);
        const chunk = await decodeChunk(executor, header, metadata!.regions, section, payload, role.chunk, reused !== undefined);
        if (changed) checkStoredPagesMarked(chunk, changed, header, metadata!.regions);
        if (reused) yield { type: 'chunk', chunk, release: releaseOfTransient(executor, chunk, reused) };
        else yield { type: 'chunk', chunk, payload: keptPayload(payload) };
        continue;
      }
      const payload = await bytes.read(Number(section.payloadLength), section.type);
      const payloadOffset = section.offset + BigInt(SECTION_HEADER_LENGTH);
      checkPayload(section, payload);
      if (role.role === 'changed') {
        changed = decodeChangedPagesSection(header, metadata!.regions, section, payload, role.chunk);
        yield { type: 'changed', pages: changed };
        continue;
      }
      if (role.role === 'diff') {
        const diff = decodeDiffSection(payload, payloadOffset);
        sequence.diffSection(diff, section);
        yield { type: 'diff', parentId: diff.parentId };
        continue;
      }
      if (role.role === 'metadata') {
        metadata = decodeMetadata(payload, payloadOffset);
        sequence.begin(metadata, section);
        yield { type: 'start', header, metadata };
      } else if (role.role === 'vcpu') {
        const vcpu = decodeVcpu(payload, payloadOffset);
        sequence.vcpu(vcpu, section);
        yield { type: 'vcpu', vcpu };
      } else yield { type: 'blob', blob: decodeBlob(payload, payloadOffset) };
    }
  } finally {
    bytes.release();
    await executor?.close();
  }
}

/**
 * The index: its length follows from the sections read (checked before it is
 * read, so a hostile stream cannot make the reader buffer more), and each
 * entry must say what was read.
 */
async function readIndex(bytes: StreamBytes, section: SectionHeader, expected: IndexBuilder): Promise<void> {
  const entries = expected.entries;
  if (section.payloadLength !== BigInt(entries * INDEX_ENTRY_LENGTH)) {
    throw new SnapshotFormatError(
      'bad-index',
      `index declares ${section.payloadLength} bytes; ${entries} sections came before it, so it must be ${entries * INDEX_ENTRY_LENGTH}`,
      { section: 'INDX', offset: section.offset + 8n },
    );
  }
  const payload = await bytes.read(entries * INDEX_ENTRY_LENGTH, 'INDX');
  checkPayload(section, payload);
  const want = expected.payload();
  if (equalBytes(payload, want)) return;
  const payloadOffset = section.offset + BigInt(SECTION_HEADER_LENGTH);
  for (let i = 0; i < entries; i++) {
    const entryOffset = payloadOffset + BigInt(i * INDEX_ENTRY_LENGTH);
    const fault = indexEntryFault(decodeIndexEntry(payload, i, payloadOffset), decodeIndexEntry(want, i, payloadOffset), i, entryOffset);
    if (fault) throw fault;
  }
  throw new SnapshotFormatError('bad-index', 'the index does not describe the sections read', { section: 'INDX', offset: section.offset });
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
