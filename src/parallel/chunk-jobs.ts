/**
 * The heavy, independent per-chunk work, as plain functions of plain data so
 * that it runs the same on the calling thread or in a worker: encoding zeroes
 * out absent pages, packs tags, hashes and compresses; decoding checks the
 * payload checksum, decompresses, checks the content checksum and expands.
 */
import { uninitialisedBytes } from '../format/bytes.js';
import { checksum } from '../format/checksum.js';
import {
  ChunkDecodeError,
  type ChunkFaultCode,
  type ChunkHeader,
  type ChunkRange,
  checkChunkContent,
  chunkPrefixLength,
  decodeChunkPayload,
  encodeChunkPayload,
  fillChunkPrefix,
  finishChunkDecode,
  gatherChunk,
  openChunkPayload,
  readChunkHeader,
} from '../format/chunk.js';
import { CHUNK_HEADER_LENGTH, ENCODING } from '../format/constants.js';
import type { ChunkKind } from '../format/model.js';
import { defaultZstd } from '../format/zstd.js';
import type { Libzstd } from './libzstd.js';
import { timed } from './phase-clock.js';

export interface EncodeJob {
  readonly op: 'encode';
  readonly kind: ChunkKind;
  readonly range: ChunkRange;
  /** RAM bytes of the range, or its tags one byte per granule. */
  readonly input: Uint8Array;
  /** The caller gives the input up until the job returns it: present pages may be packed inside it (no second buffer). */
  readonly inputIsScratch?: boolean;
  /** zstd level, or 0 to store raw. */
  readonly level: number;
  /** The caller writes the payload out and then gives it back (`scratch`): it may live in the executor's memory. */
  readonly payloadIsScratch?: boolean;
}

export interface EncodedChunk {
  readonly payload: Uint8Array;
  readonly payloadChecksum: bigint;
  /** The job's input, handed back so the writer can reuse its memory for the next chunk. */
  readonly input: Uint8Array;
  /** Set when `payload` lives in the executor's memory: `ChunkExecutor.release` it once written. */
  readonly scratch?: Uint8Array;
}

export interface DecodeJob {
  readonly op: 'decode';
  readonly kind: ChunkKind;
  readonly pageSize: number;
  /** The file's codec is zstd (else compressed chunks are an error). */
  readonly zstd: boolean;
  readonly payload: Uint8Array;
  readonly payloadChecksum: bigint;
  /**
   * The caller gives a chunk's `content` back (ChunkExecutor.release) once
   * done with it: a RAM chunk's present pages, or a tag chunk's packed tags,
   * may stay in the executor's memory instead of a copy (or an expansion).
   */
  readonly contentIsScratch?: boolean;
  /**
   * A chunk stored raw (not compressed) may give its content as a view of
   * `payload`, packed as stored, instead of an expansion: the caller keeps the
   * payload until it is done with the chunk.
   */
  readonly contentMayViewPayload?: boolean;
}

export interface DecodedChunkResult {
  readonly header: ChunkHeader;
  readonly bitmap: Uint8Array;
  /** Every page of the range (tags one byte per granule); absent when `content` is given instead. */
  readonly expanded?: Uint8Array;
  /**
   * A RAM chunk's present pages in order (checked), left to expand when read
   * (ramChunkFromContent); with contentIsScratch, a tag chunk's packed tags of
   * its present pages (tagChunkFromPacked); with contentMayViewPayload, for a
   * chunk stored raw, a view of the payload.
   */
  readonly content?: Uint8Array;
}

/** A decode failure that crosses thread boundaries as plain data. */
export interface ChunkJobFailure {
  readonly failed: true;
  readonly code: ChunkFaultCode;
  readonly message: string;
  /** Offset inside the payload of the bad field; -1 for the payload checksum. */
  readonly fieldOffset: number;
}

export type ChunkJob = EncodeJob | DecodeJob;
export type ChunkJobResult = EncodedChunk | DecodedChunkResult | ChunkJobFailure;

function checksumFailure(job: DecodeJob): ChunkJobFailure {
  return {
    failed: true,
    code: 'checksum-mismatch',
    message: `${job.kind === 'ram' ? 'RAMC' : 'TAGC'} payload checksum mismatch`,
    fieldOffset: -1,
  };
}

function asFailure(error: unknown): ChunkJobFailure {
  if (error instanceof ChunkDecodeError) return { failed: true, code: error.code, message: error.message, fieldOffset: error.fieldOffset };
  throw error;
}

/** Runs a job with the bundled codec (zstd-napi, else wasm), synchronously inside: on the calling thread or in a worker. */
export async function runChunkJob(job: ChunkJob): Promise<ChunkJobResult> {
  const codec = job.op === 'encode' ? (job.level > 0 ? await defaultZstd() : null) : job.zstd ? await defaultZstd() : null;
  if (job.op === 'encode') {
    const payload = encodeChunkPayload(job.kind, job.range, job.input, { codec, level: job.level });
    return { payload, payloadChecksum: checksum(payload), input: job.input };
  }
  if (checksum(job.payload) !== job.payloadChecksum) return checksumFailure(job);
  try {
    const header = readChunkHeader(job.payload);
    const { bitmap, expanded } = decodeChunkPayload(job.payload, { kind: job.kind, pageSize: job.pageSize, codec }, header);
    return { header, bitmap: bitmap.slice(), expanded };
  } catch (error) {
    return asFailure(error);
  }
}

/**
 * Runs a job on the calling thread but for its zstd call, which runs on
 * libuv's thread pool: the same payload as runChunkJob, built in place (the
 * frame is compressed straight into the payload, after its header and bitmap).
 */
export function runChunkJobNative(job: ChunkJob, zstd: Libzstd): Promise<ChunkJobResult> {
  return job.op === 'encode' ? encodeNative(job, zstd) : decodeNative(job, zstd);
}

async function encodeNative(job: EncodeJob, zstd: Libzstd): Promise<EncodedChunk> {
  const gathered = timed('zero detection', () => gatherChunk(job.kind, job.range, job.input, job.inputIsScratch === true));
  const { content } = gathered;
  const prefix = chunkPrefixLength(job.range.pageCount);
  // Every byte of the payload is written below (header, bitmap, frame or raw content): no zero fill needed.
  const scratch = job.payloadIsScratch ? zstd.allocate(prefix + content.length) : undefined;
  const payload = scratch ?? uninitialisedBytes(prefix + content.length);
  // Room for one byte less than the content: a frame that is not shorter must not be used (stored raw instead).
  const frameLength =
    job.level > 0 && content.length > 0
      ? await zstd.compressInto(content, job.level, payload.subarray(prefix, prefix + content.length - 1))
      : -1;
  if (frameLength < 0) payload.set(content, prefix);
  const stored = frameLength < 0 ? payload : payload.subarray(0, prefix + frameLength);
  return timed('checksums', () => {
    fillChunkPrefix(stored, job.range, gathered, frameLength >= 0);
    return { payload: stored, payloadChecksum: checksum(stored), input: job.input, scratch };
  });
}

async function decodeNative(job: DecodeJob, zstd: Libzstd): Promise<ChunkJobResult> {
  if (timed('checksums', () => checksum(job.payload)) !== job.payloadChecksum) return checksumFailure(job);
  try {
    const header = readChunkHeader(job.payload);
    const opened = openChunkPayload(job.payload, header, job.kind, job.pageSize, job.zstd);
    if (header.encoding !== ENCODING.compressed) {
      if (job.contentMayViewPayload) {
        // The stored content is the packed content: no buffer per chunk for its expansion.
        timed('checksums', () => checkChunkContent(opened, opened.stored));
        return { header, bitmap: opened.bitmap.slice(), content: opened.stored };
      }
      const { bitmap, expanded } = timed('expanding', () => finishChunkDecode(opened, opened.stored));
      return { header, bitmap: bitmap.slice(), expanded };
    }
    // Decoded in native memory, which zstd writes in place.
    const content = zstd.allocate(header.contentLength);
    let handedOut = false;
    try {
      try {
        await zstd.decompressInto(opened.stored, content);
      } catch (error) {
        const message = `content does not decompress: ${(error as Error).message}`;
        throw new ChunkDecodeError(message, CHUNK_HEADER_LENGTH, 'decompression-failed');
      }
      if (job.kind === 'ram') {
        // Only the present pages are kept: the zeros between them are added if ever read. On the heap,
        // unless the caller gives the native block back itself.
        timed('checksums', () => checkChunkContent(opened, content));
        handedOut = job.contentIsScratch === true;
        return { header, bitmap: opened.bitmap.slice(), content: handedOut ? content : timed('expanding', () => content.slice()) };
      }
      if (job.contentIsScratch) {
        // Tags stay packed in the caller's memory: it unpacks what it reads (no buffer per chunk).
        timed('checksums', () => checkChunkContent(opened, content));
        handedOut = true;
        return { header, bitmap: opened.bitmap.slice(), content };
      }
      const { bitmap, expanded } = timed('expanding', () => finishChunkDecode(opened, content));
      return { header, bitmap: bitmap.slice(), expanded };
    } finally {
      if (!handedOut) zstd.release(content);
    }
  } catch (error) {
    return asFailure(error);
  }
}

/** Buffers a result owns outright, to move rather than copy between threads. */
export function transferables(result: ChunkJobResult | ChunkJob): ArrayBuffer[] {
  const owned = (bytes: Uint8Array) =>
    bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? [bytes.buffer as ArrayBuffer] : [];
  if ('failed' in result) return [];
  if ('op' in result) return owned(result.op === 'encode' ? result.input : result.payload);
  if ('payload' in result) return [...owned(result.payload), ...owned(result.input)];
  return result.expanded ? owned(result.expanded) : [];
}
