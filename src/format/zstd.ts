/**
 * zstd behind one small interface, with two implementations:
 *  - zstd-napi, native (built from its bundled source at install), the default;
 *  - zstd-codec, WebAssembly with a fixed 16 MiB heap, the portable fallback
 *    used when the native module cannot load.
 * Frames the format allows (one frame, content size in the header, at most
 * MAX_CHUNK_CONTENT bytes, a window of at most MAX_ZSTD_WINDOW) decode with
 * either; both are handed a frame only once its header has been checked.
 */

import { createRequire } from 'node:module';
import { MAX_CHUNK_CONTENT, MAX_ZSTD_LEVEL, MAX_ZSTD_WINDOW } from './constants.js';
import { VmsnapError } from './errors.js';

const require = createRequire(import.meta.url);

export interface ZstdCodec {
  readonly name: 'zstd-napi' | 'zstd-codec';
  /** One frame with the content size in its header. */
  compress(content: Uint8Array, level: number): Uint8Array;
  /** Decodes one frame whose content size the caller has already checked. */
  decompress(frame: Uint8Array, contentSize: number): Uint8Array;
}

export class ZstdFrameError extends VmsnapError {
  constructor(message: string) {
    super('decompression-failed', 'invalid-input', message);
  }
}

const ZSTD_MAGIC = 0xfd2fb528;

/** What a zstd frame header (RFC 8878, 3.1.1.1) says, as far as the format cares. */
export interface FrameHeader {
  readonly contentSize: number;
  /** Window_Size: the content size for a single-segment frame, else what the window descriptor says. */
  readonly windowSize: number;
  /** Content_Checksum_Flag: four bytes of checksum follow the last block. */
  readonly checksum: boolean;
  /** Bytes of the header, magic included: where the first block starts. */
  readonly length: number;
}

/**
 * Reads and checks a frame header before anything is decoded, because both
 * decoders allocate whatever size and window the frame claims: the content
 * size must be declared, no dictionary, the reserved bit clear, and the window
 * at most MAX_ZSTD_WINDOW (spec/FORMAT.md, "Chunks").
 */
export function readFrameHeader(frame: Uint8Array): FrameHeader {
  if (frame.length < 6) throw new ZstdFrameError('zstd frame shorter than its header');
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (dv.getUint32(0, true) !== ZSTD_MAGIC) throw new ZstdFrameError('not a zstd frame (bad magic)');
  const descriptor = frame[4];
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictionaryFlag = descriptor & 3;
  if ((descriptor >> 3) & 1) throw new ZstdFrameError('zstd frame header has its reserved bit set');
  if (dictionaryFlag !== 0) throw new ZstdFrameError('zstd frame names a dictionary; the format uses none');
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][dictionaryFlag];
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag];
  if (fcsBytes === 0) throw new ZstdFrameError('zstd frame does not declare its content size');
  if (frame.length < at + fcsBytes) throw new ZstdFrameError('zstd frame header truncated');
  let contentSize: number;
  switch (fcsBytes) {
    case 1:
      contentSize = frame[at];
      break;
    case 2:
      contentSize = dv.getUint16(at, true) + 256;
      break;
    case 4:
      contentSize = dv.getUint32(at, true);
      break;
    default: {
      const big = dv.getBigUint64(at, true);
      if (big > BigInt(MAX_CHUNK_CONTENT)) throw new ZstdFrameError(`zstd frame declares ${big} bytes`);
      contentSize = Number(big);
    }
  }
  let windowSize = contentSize;
  if (!singleSegment) {
    const windowLog = 10 + (frame[5] >> 3);
    windowSize = 2 ** windowLog + (2 ** windowLog / 8) * (frame[5] & 7);
  }
  if (windowSize > MAX_ZSTD_WINDOW) {
    throw new ZstdFrameError(`zstd frame asks for a ${windowSize}-byte window; the format allows at most ${MAX_ZSTD_WINDOW}`);
  }
  return { contentSize, windowSize, checksum: ((descriptor >> 2) & 1) === 1, length: at + fcsBytes };
}

/** The content size a zstd frame header declares, after the checks of readFrameHeader. */
export function frameContentSize(frame: Uint8Array): number {
  return readFrameHeader(frame).contentSize;
}

/**
 * The frame's length in bytes, header, blocks and checksum, found by walking
 * its block headers (RFC 8878, 3.1.1.2) without decoding: the stored content
 * must be exactly one frame, with no second or skippable frame after it.
 */
export function frameLength(frame: Uint8Array, header: FrameHeader): number {
  let at = header.length;
  for (;;) {
    if (at + 3 > frame.length) throw new ZstdFrameError('zstd frame ends inside a block header');
    const blockHeader = frame[at] | (frame[at + 1] << 8) | (frame[at + 2] << 16);
    at += 3;
    const blockType = (blockHeader >> 1) & 3;
    if (blockType === 3) throw new ZstdFrameError(`zstd block at byte ${at - 3} has the reserved block type`);
    // An RLE block stores one byte, repeated Block_Size times; raw and compressed blocks store Block_Size bytes.
    at += blockType === 1 ? 1 : blockHeader >>> 3;
    if (at > frame.length) throw new ZstdFrameError('zstd frame ends inside a block');
    if (blockHeader & 1) break;
  }
  if (header.checksum) at += 4;
  if (at > frame.length) throw new ZstdFrameError('zstd frame ends inside its content checksum');
  return at;
}

function checkLevel(level: number): void {
  if (!Number.isInteger(level) || level < 1 || level > MAX_ZSTD_LEVEL) {
    throw new RangeError(`zstd level must be 1..${MAX_ZSTD_LEVEL}, got ${level}`);
  }
}

/** The library hands out plain Uint8Arrays, whatever the binding returns (zstd-napi returns Buffers). */
function plain(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
}

/**
 * What every decoder is told before it sees a frame: the header keeps the
 * format's rules (readFrameHeader), declares `contentSize` bytes, and the
 * stored content is exactly that one frame.
 */
export function checkFrame(frame: Uint8Array, contentSize: number): void {
  const header = readFrameHeader(frame);
  if (header.contentSize !== contentSize) {
    throw new ZstdFrameError(`zstd frame declares ${header.contentSize} bytes, the chunk ${contentSize}`);
  }
  const length = frameLength(frame, header);
  if (length !== frame.length) {
    throw new ZstdFrameError(`${frame.length - length} bytes follow the zstd frame; the stored content must be exactly one frame`);
  }
}

function checkedDecode(frame: Uint8Array, contentSize: number, decode: () => Uint8Array): Uint8Array {
  checkFrame(frame, contentSize);
  const out = plain(decode());
  if (out.length !== contentSize) throw new ZstdFrameError(`zstd frame decoded to ${out.length} bytes, expected ${contentSize}`);
  return out;
}

export function loadNativeZstd(): ZstdCodec {
  const napi = require('zstd-napi') as typeof import('zstd-napi');
  const compressor = new napi.Compressor();
  const decompressor = new napi.Decompressor();
  // readFrameHeader already refused windows over MAX_ZSTD_WINDOW (2^22); the decoder refuses them too.
  decompressor.setParameters({ windowLogMax: 22 });
  let currentLevel = -1;
  return {
    name: 'zstd-napi',
    compress(content, level) {
      checkLevel(level);
      if (level !== currentLevel) {
        compressor.setParameters({ compressionLevel: level, contentSizeFlag: true, checksumFlag: false });
        currentLevel = level;
      }
      return plain(compressor.compress(Buffer.from(content.buffer, content.byteOffset, content.byteLength)));
    },
    decompress(frame, contentSize) {
      return checkedDecode(frame, contentSize, () =>
        decompressor.decompress(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)),
      );
    },
  };
}

interface WasmSimple {
  compress(content: Uint8Array, level: number): Uint8Array | null;
  decompress(frame: Uint8Array): Uint8Array | null;
}

/** The wasm codec initialises asynchronously, once. */
let wasmSimple: Promise<WasmSimple> | undefined;
function loadWasmSimple(): Promise<WasmSimple> {
  wasmSimple ??= new Promise((resolve) => {
    const { ZstdCodec: Wasm } = require('zstd-codec') as { ZstdCodec: { run(cb: (zstd: { Simple: new () => WasmSimple }) => void): void } };
    Wasm.run((zstd) => resolve(new zstd.Simple()));
  });
  return wasmSimple;
}

/**
 * Measured with zstd-codec 0.1.5: its compressor runs out of its 16 MiB heap
 * (abort(OOM)) on chunks over 2 MiB above level 5; decoding works for every
 * frame the format allows, at any level.
 */
const WASM_LARGE_CHUNK = 2 * 1024 * 1024;
const WASM_LARGE_CHUNK_MAX_LEVEL = 5;

export async function loadWasmZstd(): Promise<ZstdCodec> {
  const simple = await loadWasmSimple();
  return {
    name: 'zstd-codec',
    compress(content, level) {
      checkLevel(level);
      const fitting = content.length > WASM_LARGE_CHUNK ? Math.min(level, WASM_LARGE_CHUNK_MAX_LEVEL) : level;
      const frame = simple.compress(content, fitting);
      if (!frame) throw new ZstdFrameError(`zstd-codec failed to compress ${content.length} bytes`);
      return frame;
    },
    decompress(frame, contentSize) {
      return checkedDecode(frame, contentSize, () => {
        const out = simple.decompress(frame);
        if (!out) throw new ZstdFrameError('zstd-codec could not decode the frame');
        return out;
      });
    },
  };
}

let defaultCodec: Promise<ZstdCodec> | undefined;
/** The native codec when it loads, else the wasm one. VMSNAP_ZSTD=wasm forces the fallback. */
export function defaultZstd(): Promise<ZstdCodec> {
  defaultCodec ??= (async () => {
    if (process.env.VMSNAP_ZSTD !== 'wasm') {
      try {
        return loadNativeZstd();
      } catch {
        // Native module missing or built for another ABI: fall through to wasm.
      }
    }
    return loadWasmZstd();
  })();
  return defaultCodec;
}
