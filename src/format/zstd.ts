/**
 * zstd behind one small interface, with two implementations:
 *  - zstd-napi, native (built from its bundled source at install), the default;
 *  - zstd-codec, WebAssembly with a fixed 16 MiB heap, the portable fallback
 *    used when the native module cannot load.
 * Frames the format allows (content size in the header, at most
 * MAX_CHUNK_CONTENT bytes, level <= MAX_ZSTD_LEVEL) decode with either.
 */

import { createRequire } from 'node:module';
import { MAX_CHUNK_CONTENT, MAX_ZSTD_LEVEL } from './constants.js';
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

/**
 * The content size a zstd frame header declares (RFC 8878, 3.1.1.1), or
 * throws. Checked before decoding because both decoders allocate whatever
 * size the frame claims.
 */
export function frameContentSize(frame: Uint8Array): number {
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
  let size: number;
  switch (fcsBytes) {
    case 1:
      size = frame[at];
      break;
    case 2:
      size = dv.getUint16(at, true) + 256;
      break;
    case 4:
      size = dv.getUint32(at, true);
      break;
    default: {
      const big = dv.getBigUint64(at, true);
      if (big > BigInt(MAX_CHUNK_CONTENT)) throw new ZstdFrameError(`zstd frame declares ${big} bytes`);
      size = Number(big);
    }
  }
  return size;
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

function checkedDecode(frame: Uint8Array, contentSize: number, decode: () => Uint8Array): Uint8Array {
  const declared = frameContentSize(frame);
  if (declared !== contentSize) {
    throw new ZstdFrameError(`zstd frame declares ${declared} bytes, the chunk ${contentSize}`);
  }
  const out = plain(decode());
  if (out.length !== contentSize) throw new ZstdFrameError(`zstd frame decoded to ${out.length} bytes, expected ${contentSize}`);
  return out;
}

export function loadNativeZstd(): ZstdCodec {
  const napi = require('zstd-napi') as typeof import('zstd-napi');
  const compressor = new napi.Compressor();
  const decompressor = new napi.Decompressor();
  // The frame window never needs to exceed the chunk size; refuse bigger ones.
  decompressor.setParameters({ windowLogMax: 23 });
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
