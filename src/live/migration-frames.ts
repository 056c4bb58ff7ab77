/**
 * The migration stream's bytes: what a live checkpoint's pre-copy rounds look
 * like on a pipe or socket, framed so that a destination restoring as data
 * arrives can tell a whole stream from a damaged or cut one before it resumes
 * anything (docs/migration.md has the layout).
 *
 *   stream header  8 bytes "VMSNAPMG", u32 version (1), u32 zero
 *   frame          u8 type, 3 zero bytes, u32 payload length, payload,
 *                  u64 xxHash64 of the type, padding, length and payload
 *
 * Frames: LAYOUT (JSON: page size, MTE, memslots), PAGES (one run of pages of
 * one slot in one round: memory, then one tag byte per granule for a tagged
 * slot), ROUND (end of a round), VCPU (one vCPU's registers, the snapshot
 * format's VCPU payload), END (counts the receiver checks). All integers are
 * little-endian. Nothing here does I/O.
 */
import { checksum } from '../format/checksum.js';
import { GRANULE_SIZE } from '../format/constants.js';
import { VmsnapError } from '../format/errors.js';

export const STREAM_MAGIC = 'VMSNAPMG';
export const STREAM_VERSION = 1;
export const STREAM_HEADER_BYTES = 16;
export const FRAME_HEADER_BYTES = 8;
export const FRAME_TRAILER_BYTES = 8;
/** The largest payload a receiver accepts: bounds its memory whatever the stream says. */
export const MAX_FRAME_PAYLOAD = 64 * 1024 * 1024;

export const FRAME_TYPE = { layout: 1, pages: 2, round: 3, vcpu: 4, end: 5 } as const;
export type FrameTypeName = keyof typeof FRAME_TYPE;
const NAME_BY_TYPE = new Map<number, FrameTypeName>(Object.entries(FRAME_TYPE).map(([name, type]) => [type, name as FrameTypeName]));

/** Bytes of a PAGES payload before its memory: slot, round, first page, page count, flags. */
export const PAGES_HEADER_BYTES = 24;
const PAGES_HAVE_TAGS = 1;

export type MigrationStreamErrorCode = 'migration-bad-header' | 'migration-bad-frame' | 'migration-checksum' | 'migration-truncated';

/**
 * The migration stream is damaged, cut or inconsistent; `offset` is where in the stream, `frame` which frame
 * (counted from 0, the LAYOUT frame) when the receiver got that far.
 */
export class MigrationStreamError extends VmsnapError {
  constructor(
    code: MigrationStreamErrorCode,
    readonly offset: number,
    readonly detail: string,
    readonly frame?: number,
  ) {
    super(code, 'invalid-input', `migration stream at byte ${offset}${frame === undefined ? '' : `, frame ${frame}`}: ${detail}`);
  }

  /** The same error, naming the frame it arose in. */
  inFrame(frame: number): MigrationStreamError {
    return this.frame === undefined
      ? new MigrationStreamError(this.code as MigrationStreamErrorCode, this.offset, this.detail, frame)
      : this;
  }
}

export function encodeStreamHeader(): Uint8Array {
  const header = new Uint8Array(STREAM_HEADER_BYTES);
  header.set(Buffer.from(STREAM_MAGIC, 'ascii'));
  new DataView(header.buffer).setUint32(8, STREAM_VERSION, true);
  return header;
}

export function checkStreamHeader(header: Uint8Array): void {
  if (Buffer.from(header.subarray(0, 8)).toString('latin1') !== STREAM_MAGIC) {
    throw new MigrationStreamError('migration-bad-header', 0, 'not a vmsnap migration stream (magic is not VMSNAPMG)');
  }
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const version = view.getUint32(8, true);
  if (version !== STREAM_VERSION || view.getUint32(12, true) !== 0) {
    throw new MigrationStreamError('migration-bad-header', 8, `version ${version} (this vmsnap reads ${STREAM_VERSION})`);
  }
}

/** One frame, header to checksum, ready to write. */
export function encodeFrame(type: FrameTypeName, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError(`a ${type} frame of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length + FRAME_TRAILER_BYTES);
  const view = new DataView(frame.buffer);
  frame[0] = FRAME_TYPE[type];
  view.setUint32(4, payload.length, true);
  frame.set(payload, FRAME_HEADER_BYTES);
  view.setBigUint64(FRAME_HEADER_BYTES + payload.length, checksum(frame.subarray(0, FRAME_HEADER_BYTES + payload.length)), true);
  return frame;
}

/** What a frame header says: its type and payload length, checked before the payload is read. */
export function decodeFrameHeader(header: Uint8Array, offset: number): { type: FrameTypeName; length: number } {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const type = NAME_BY_TYPE.get(header[0]);
  if (!type || header[1] !== 0 || header[2] !== 0 || header[3] !== 0) {
    throw new MigrationStreamError('migration-bad-frame', offset, `unknown frame type ${header[0]} (or nonzero padding)`);
  }
  const length = view.getUint32(4, true);
  if (length > MAX_FRAME_PAYLOAD) {
    throw new MigrationStreamError('migration-bad-frame', offset + 4, `a ${type} frame of ${length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  }
  return { type, length };
}

/** Checks the checksum of a whole frame (header, payload, trailer). */
export function checkFrame(frame: Uint8Array, offset: number, type: FrameTypeName): void {
  const end = frame.length - FRAME_TRAILER_BYTES;
  const stored = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getBigUint64(end, true);
  const actual = checksum(frame.subarray(0, end));
  if (stored !== actual) {
    throw new MigrationStreamError(
      'migration-checksum',
      offset,
      `${type.toUpperCase()} frame checksum 0x${stored.toString(16)} does not match its bytes (0x${actual.toString(16)})`,
    );
  }
}

/** A run of pages of one slot, copied in one round. */
export interface PagesFrame {
  readonly slot: number;
  readonly round: number;
  readonly firstPage: number;
  readonly pageCount: number;
  readonly memory: Uint8Array;
  /** One byte per granule, values 0..15; null for a slot whose tags the stream does not carry. */
  readonly tags: Uint8Array | null;
}

export function encodePages(frame: PagesFrame): Uint8Array {
  const payload = new Uint8Array(PAGES_HEADER_BYTES + frame.memory.length + (frame.tags?.length ?? 0));
  const view = new DataView(payload.buffer);
  view.setUint32(0, frame.slot, true);
  view.setUint32(4, frame.round, true);
  view.setBigUint64(8, BigInt(frame.firstPage), true);
  view.setUint32(16, frame.pageCount, true);
  view.setUint32(20, frame.tags ? PAGES_HAVE_TAGS : 0, true);
  payload.set(frame.memory, PAGES_HEADER_BYTES);
  if (frame.tags) payload.set(frame.tags, PAGES_HEADER_BYTES + frame.memory.length);
  return payload;
}

export function decodePages(payload: Uint8Array, pageSize: number, offset: number): PagesFrame {
  const fail = (detail: string): never => {
    throw new MigrationStreamError('migration-bad-frame', offset, `PAGES frame: ${detail}`);
  };
  if (payload.length < PAGES_HEADER_BYTES) fail(`${payload.length} bytes, shorter than its ${PAGES_HEADER_BYTES}-byte header`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const flags = view.getUint32(20, true);
  if ((flags & ~PAGES_HAVE_TAGS) !== 0) fail(`unknown flags 0x${flags.toString(16)}`);
  const pageCount = view.getUint32(16, true);
  const firstPage = view.getBigUint64(8, true);
  if (firstPage > BigInt(Number.MAX_SAFE_INTEGER)) fail(`first page ${firstPage} is too large`);
  const memoryBytes = pageCount * pageSize;
  const tagBytes = flags & PAGES_HAVE_TAGS ? memoryBytes / GRANULE_SIZE : 0;
  if (payload.length !== PAGES_HEADER_BYTES + memoryBytes + tagBytes) {
    fail(`${payload.length} bytes for ${pageCount} pages of ${pageSize} bytes${tagBytes ? ' with tags' : ''}`);
  }
  return {
    slot: view.getUint32(0, true),
    round: view.getUint32(4, true),
    firstPage: Number(firstPage),
    pageCount,
    memory: payload.subarray(PAGES_HEADER_BYTES, PAGES_HEADER_BYTES + memoryBytes),
    tags: tagBytes ? payload.subarray(PAGES_HEADER_BYTES + memoryBytes) : null,
  };
}

/** ROUND: the end of pre-copy round `round`, which sent `pages` pages. */
export function encodeRound(round: number, pages: number): Uint8Array {
  const payload = new Uint8Array(16);
  const view = new DataView(payload.buffer);
  view.setUint32(0, round, true);
  view.setBigUint64(8, BigInt(pages), true);
  return payload;
}

export function decodeRound(payload: Uint8Array, offset: number): { round: number; pages: number } {
  if (payload.length !== 16)
    throw new MigrationStreamError('migration-bad-frame', offset, `ROUND frame of ${payload.length} bytes, not 16`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { round: view.getUint32(0, true), pages: Number(view.getBigUint64(8, true)) };
}

/** END: what the receiver must have seen, so a stream cut at a frame boundary is still caught. */
export interface EndFrame {
  readonly rounds: number;
  readonly vcpus: number;
  /** Frames before END, LAYOUT included. */
  readonly frames: number;
}

export function encodeEnd(end: EndFrame): Uint8Array {
  const payload = new Uint8Array(16);
  const view = new DataView(payload.buffer);
  view.setUint32(0, end.rounds, true);
  view.setUint32(4, end.vcpus, true);
  view.setBigUint64(8, BigInt(end.frames), true);
  return payload;
}

export function decodeEnd(payload: Uint8Array, offset: number): EndFrame {
  if (payload.length !== 16) throw new MigrationStreamError('migration-bad-frame', offset, `END frame of ${payload.length} bytes, not 16`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { rounds: view.getUint32(0, true), vcpus: view.getUint32(4, true), frames: Number(view.getBigUint64(8, true)) };
}
