/**
 * The heavy, independent per-chunk work, as plain functions of plain data so
 * that it runs the same on the calling thread or in a worker: encoding zeroes
 * out absent pages, packs tags, hashes and compresses; decoding checks the
 * payload checksum, decompresses, checks the content checksum and expands.
 */
import { checksum } from '../format/checksum.js';
import {
  ChunkDecodeError,
  type ChunkFaultCode,
  type ChunkHeader,
  type ChunkRange,
  decodeChunkPayload,
  encodeChunkPayload,
  readChunkHeader,
} from '../format/chunk.js';
import type { ChunkKind } from '../format/model.js';
import { defaultZstd } from '../format/zstd.js';

export interface EncodeJob {
  readonly op: 'encode';
  readonly kind: ChunkKind;
  readonly range: ChunkRange;
  /** RAM bytes of the range, or its tags one byte per granule. */
  readonly input: Uint8Array;
  /** zstd level, or 0 to store raw. */
  readonly level: number;
}

export interface EncodedChunk {
  readonly payload: Uint8Array;
  readonly payloadChecksum: bigint;
  /** The job's input, handed back so the writer can reuse its memory for the next chunk. */
  readonly input: Uint8Array;
}

export interface DecodeJob {
  readonly op: 'decode';
  readonly kind: ChunkKind;
  readonly pageSize: number;
  /** The file's codec is zstd (else compressed chunks are an error). */
  readonly zstd: boolean;
  readonly payload: Uint8Array;
  readonly payloadChecksum: bigint;
}

export interface DecodedChunkResult {
  readonly header: ChunkHeader;
  readonly bitmap: Uint8Array;
  readonly expanded: Uint8Array;
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

export async function runChunkJob(job: ChunkJob): Promise<ChunkJobResult> {
  const codec = job.op === 'encode' ? (job.level > 0 ? await defaultZstd() : null) : job.zstd ? await defaultZstd() : null;
  if (job.op === 'encode') {
    const payload = encodeChunkPayload(job.kind, job.range, job.input, { codec, level: job.level });
    return { payload, payloadChecksum: checksum(payload), input: job.input };
  }
  if (checksum(job.payload) !== job.payloadChecksum)
    return {
      failed: true,
      code: 'checksum-mismatch',
      message: `${job.kind === 'ram' ? 'RAMC' : 'TAGC'} payload checksum mismatch`,
      fieldOffset: -1,
    };
  try {
    const header = readChunkHeader(job.payload);
    const { bitmap, expanded } = decodeChunkPayload(job.payload, { kind: job.kind, pageSize: job.pageSize, codec }, header);
    return { header, bitmap: bitmap.slice(), expanded };
  } catch (error) {
    if (error instanceof ChunkDecodeError)
      return { failed: true, code: error.code, message: error.message, fieldOffset: error.fieldOffset };
    throw error;
  }
}

/** Buffers a result owns outright, to move rather than copy between threads. */
export function transferables(result: ChunkJobResult | ChunkJob): ArrayBuffer[] {
  const owned = (bytes: Uint8Array) =>
    bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? [bytes.buffer as ArrayBuffer] : [];
  if ('failed' in result) return [];
  if ('op' in result) return owned(result.op === 'encode' ? result.input : result.payload);
  if ('payload' in result) return [...owned(result.payload), ...owned(result.input)];
  return owned(result.expanded);
}
