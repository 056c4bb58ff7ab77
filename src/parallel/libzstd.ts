/**
 * The system's zstd library (libzstd.so.1), called through koffi on libuv's
 * thread pool: chunks compress and decompress on other cores while the
 * calling thread reads, checksums and writes, with no worker thread and so no
 * V8 heap per core (each worker cost about 50 MiB of resident memory).
 *
 * Optional twice over: koffi is loaded only here, lazily, and only when asked
 * (the root 'vmsnap' entry runs where koffi is not installed), and the
 * library may be missing. Either way `loadLibzstd()` answers null and the
 * caller uses the bundled codec (src/format/zstd.ts) instead.
 *
 * Frames follow the format's rules whoever compresses them: the content size
 * in the header, no checksum, and a window no larger than the content (a
 * one-shot compression with a known size of at most 4 MiB). Before decoding,
 * the frame header is checked as for the bundled codec (checkFrame), and the
 * decoder refuses windows over 4 MiB too.
 */
import { createRequire } from 'node:module';
import { MAX_ZSTD_LEVEL } from '../format/constants.js';
import { checkFrame, ZstdFrameError } from '../format/zstd.js';

const require = createRequire(import.meta.url);

/** zstd's parameter numbers (zstd.h, stable since 1.4.0). */
const C_COMPRESSION_LEVEL = 100;
const C_CONTENT_SIZE_FLAG = 200;
const C_CHECKSUM_FLAG = 201;
const D_WINDOW_LOG_MAX = 100;
/** ZSTD_error_dstSize_tooSmall: the frame would not be shorter than the content. */
const ERROR_DST_SIZE_TOO_SMALL = 70;
/** 1.4.0: ZSTD_compress2 and the advanced parameter API became stable. */
const MIN_VERSION = 10400;

type Callback = (error: unknown, result: number) => void;
interface AsyncFunction {
  (...args: unknown[]): number;
  async(...args: unknown[]): void;
}

export interface Libzstd {
  /** "libzstd 1.5.4": what compresses, for reports. */
  readonly name: string;
  /**
   * Compresses `content` into `destination` as one frame; resolves to the
   * frame's length, or to -1 when the frame would not fit (the caller then
   * stores the content raw, as it must when compression saves nothing).
   */
  compressInto(content: Uint8Array, level: number, destination: Uint8Array): Promise<number>;
  /** Decodes one frame holding exactly `destination.length` bytes into `destination`. */
  decompressInto(frame: Uint8Array, destination: Uint8Array): Promise<void>;
}

function call(fn: AsyncFunction, ...args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => fn.async(...args, ((error, result) => (error ? reject(error) : resolve(result))) as Callback));
}

function bind(): Libzstd {
  const koffi = require('koffi') as typeof import('koffi');
  const lib = koffi.load('libzstd.so.1');
  const version = lib.func('unsigned int ZSTD_versionNumber()')() as number;
  if (version < MIN_VERSION) throw new Error(`libzstd ${version} is older than 1.4.0`);
  // size_t results read as signed: zstd's errors are (size_t)-code, small negative numbers here.
  const createCCtx = lib.func('void *ZSTD_createCCtx()') as () => unknown;
  const createDCtx = lib.func('void *ZSTD_createDCtx()') as () => unknown;
  const setCParameter = lib.func('int64_t ZSTD_CCtx_setParameter(void *cctx, int param, int value)') as (...a: unknown[]) => number;
  const setDParameter = lib.func('int64_t ZSTD_DCtx_setParameter(void *dctx, int param, int value)') as (...a: unknown[]) => number;
  const compress2 = lib.func('int64_t ZSTD_compress2(void *cctx, void *dst, size_t cap, const void *src, size_t size)') as AsyncFunction;
  const decompressDCtx = lib.func(
    'int64_t ZSTD_decompressDCtx(void *dctx, void *dst, size_t cap, const void *src, size_t size)',
  ) as AsyncFunction;
  const errorName = lib.func('const char *ZSTD_getErrorName(size_t code)') as (code: bigint) => string;
  const describe = (result: number) => errorName(BigInt.asUintN(64, BigInt(result)));

  // One work area per call in flight: a context is not safe to share between threads, and the
  // call's input and output live in native memory, passed as pointers, so that koffi neither
  // copies nor pins them. They live as long as the process; there are at most as many as calls in flight.
  const spareCompressors: WorkArea[] = [];
  const spareDecompressors: WorkArea[] = [];
  const compressor = () =>
    spareCompressors.pop() ??
    newWorkArea(koffi, () => {
      const context = createCCtx();
      setCParameter(context, C_CONTENT_SIZE_FLAG, 1);
      setCParameter(context, C_CHECKSUM_FLAG, 0);
      return context;
    });
  const decompressor = () =>
    spareDecompressors.pop() ??
    newWorkArea(koffi, () => {
      const context = createDCtx();
      // checkFrame already refused windows over MAX_ZSTD_WINDOW (2^22); the decoder refuses them too.
      setDParameter(context, D_WINDOW_LOG_MAX, 22);
      return context;
    });
  const semver = `${Math.floor(version / 10000)}.${Math.floor(version / 100) % 100}.${version % 100}`;
  return {
    name: `libzstd ${semver}`,
    async compressInto(content, level, destination) {
      if (!Number.isInteger(level) || level < 1 || level > MAX_ZSTD_LEVEL) {
        throw new RangeError(`zstd level must be 1..${MAX_ZSTD_LEVEL}, got ${level}`);
      }
      const area = compressor();
      try {
        if (area.level !== level) {
          setCParameter(area.context, C_COMPRESSION_LEVEL, level);
          area.level = level;
        }
        area.input.fit(content.length).set(content);
        const output = area.output.fit(destination.length);
        const result = await call(compress2, area.context, area.output.pointer, destination.length, area.input.pointer, content.length);
        if (result === -ERROR_DST_SIZE_TOO_SMALL) return -1;
        if (result < 0) throw new ZstdFrameError(`libzstd could not compress ${content.length} bytes: ${describe(result)}`);
        destination.set(output.subarray(0, result));
        return result;
      } finally {
        spareCompressors.push(area);
      }
    },
    async decompressInto(frame, destination) {
      checkFrame(frame, destination.length);
      const area = decompressor();
      try {
        area.input.fit(frame.length).set(frame);
        const output = area.output.fit(destination.length);
        const result = await call(decompressDCtx, area.context, area.output.pointer, destination.length, area.input.pointer, frame.length);
        if (result < 0) throw new ZstdFrameError(`zstd frame does not decode: ${describe(result)}`);
        if (result !== destination.length) {
          throw new ZstdFrameError(`zstd frame decoded to ${result} bytes, expected ${destination.length}`);
        }
        destination.set(output.subarray(0, result));
      } finally {
        spareDecompressors.push(area);
      }
    },
  };
}

/** Native memory for one call's input or output, grown as needed; `bytes` views it from JavaScript. */
class NativeBuffer {
  pointer: unknown = null;
  private bytes = new Uint8Array(0);

  constructor(private readonly koffi: typeof import('koffi')) {}

  /** At least `length` bytes; the view of the first `length`. */
  fit(length: number): Uint8Array {
    if (this.bytes.length < length) {
      if (this.pointer !== null) this.koffi.free(this.pointer);
      // Whole MiB steps: chunks of one size keep their buffer.
      const capacity = Math.ceil(length / 2 ** 20) * 2 ** 20;
      this.pointer = this.koffi.alloc('uint8_t', capacity);
      this.bytes = new Uint8Array(this.koffi.view(this.pointer, capacity));
    }
    return this.bytes.subarray(0, length);
  }
}

interface WorkArea {
  readonly context: unknown;
  readonly input: NativeBuffer;
  readonly output: NativeBuffer;
  level: number;
}

function newWorkArea(koffi: typeof import('koffi'), create: () => unknown): WorkArea {
  return { context: create(), input: new NativeBuffer(koffi), output: new NativeBuffer(koffi), level: 0 };
}

let loaded: Libzstd | null | undefined;

/**
 * The system libzstd through koffi, or null when either is missing. Set
 * VMSNAP_ZSTD (to "bundled" or "wasm") to keep to the codecs of
 * src/format/zstd.ts.
 */
export function loadLibzstd(): Libzstd | null {
  if (loaded !== undefined) return loaded;
  try {
    loaded = process.env.VMSNAP_ZSTD ? null : bind();
  } catch {
    // koffi not installed, no libzstd.so.1, or one too old: the bundled codec does the work.
    loaded = null;
  }
  return loaded;
}
