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
  /**
   * `length` bytes of native memory, from a pool: the zstd calls read and
   * write views of it in place, where any other buffer is copied in and out.
   * Give it back with `release` once nothing reads it any more.
   */
  allocate(length: number): Uint8Array;
  /** Returns memory from `allocate` (the whole view it gave) to the pool. */
  release(bytes: Uint8Array): void;
}

/**
 * A call on at most this many bytes (content in, content out) runs on the
 * calling thread: tag chunks (32 KiB of packed tags per MiB of RAM) and
 * nearly empty RAM chunks take tens of microseconds in zstd, less than waking
 * a pool thread and being woken back, which costs a futex and an eventfd per
 * call (the bench's 1 GiB restore: 7746 futex calls before, 5167 after).
 */
export const INLINE_CALL_BYTES = 64 * 1024;

/** Runs `fn` on libuv's pool, or on the calling thread for a small call (INLINE_CALL_BYTES). */
function call(fn: AsyncFunction, contentBytes: number, ...args: unknown[]): Promise<number> {
  if (contentBytes <= INLINE_CALL_BYTES) return Promise.resolve(fn(...args));
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
  // Buffers pass as addresses (uintptr_t): a view inside native memory is its base plus its offset, with no copy.
  const compress2 = lib.func('int64_t ZSTD_compress2(void *cctx, uintptr_t dst, size_t cap, uintptr_t src, size_t size)') as AsyncFunction;
  const decompressDCtx = lib.func(
    'int64_t ZSTD_decompressDCtx(void *dctx, uintptr_t dst, size_t cap, uintptr_t src, size_t size)',
  ) as AsyncFunction;
  const errorName = lib.func('const char *ZSTD_getErrorName(size_t code)') as (code: bigint) => string;
  const describe = (result: number) => errorName(BigInt.asUintN(64, BigInt(result)));

  // One context per call in flight: a context is not safe to share between threads. Inputs and
  // outputs outside native memory are staged in it (koffi would copy a typed array on every call).
  const memory = new NativeMemory(koffi);
  const spareCompressors: WorkArea[] = [];
  const spareDecompressors: WorkArea[] = [];
  const compressor = () =>
    spareCompressors.pop() ??
    newWorkArea(() => {
      const context = createCCtx();
      setCParameter(context, C_CONTENT_SIZE_FLAG, 1);
      setCParameter(context, C_CHECKSUM_FLAG, 0);
      return context;
    });
  const decompressor = () =>
    spareDecompressors.pop() ??
    newWorkArea(() => {
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
        const source = memory.staged(content, area, 'input');
        const target = memory.addressOf(destination) ?? memory.stage(area, 'output', destination.length).address;
        const result = await call(compress2, content.length, area.context, target, destination.length, source, content.length);
        if (result === -ERROR_DST_SIZE_TOO_SMALL) return -1;
        if (result < 0) throw new ZstdFrameError(`libzstd could not compress ${content.length} bytes: ${describe(result)}`);
        memory.unstage(area, destination, result);
        return result;
      } finally {
        spareCompressors.push(area);
      }
    },
    async decompressInto(frame, destination) {
      checkFrame(frame, destination.length);
      const area = decompressor();
      try {
        const source = memory.staged(frame, area, 'input');
        const target = memory.addressOf(destination) ?? memory.stage(area, 'output', destination.length).address;
        const result = await call(decompressDCtx, destination.length, area.context, target, destination.length, source, frame.length);
        if (result < 0) throw new ZstdFrameError(`zstd frame does not decode: ${describe(result)}`);
        if (result !== destination.length) {
          throw new ZstdFrameError(`zstd frame decoded to ${result} bytes, expected ${destination.length}`);
        }
        memory.unstage(area, destination, result);
      } finally {
        spareDecompressors.push(area);
      }
    },
    allocate: (length) => memory.allocate(length),
    release: (bytes) => memory.release(bytes),
  };
}

/** A block of native memory: its address for zstd, its bytes for JavaScript. */
interface NativeBlock {
  readonly address: number;
  readonly bytes: Uint8Array;
}

/** A call's context, and the blocks that stage its input and output when they are not native memory. */
interface WorkArea {
  readonly context: unknown;
  input: NativeBlock | null;
  output: NativeBlock | null;
  level: number;
}

function newWorkArea(create: () => unknown): WorkArea {
  return { context: create(), input: null, output: null, level: 0 };
}

interface NativeAllocator {
  alloc(length: number): unknown;
  free(pointer: unknown): void;
}

/** Blocks start on a page boundary (the process's own libc, aligned_alloc). */
const BLOCK_ALIGNMENT = 4096;

/**
 * Page-aligned blocks where the process's libc has aligned_alloc, else
 * koffi's own (malloc: 16 or 32 bytes past a page boundary). The kernel's
 * copy between the page cache and a buffer (rep movsb) runs at a fraction of
 * its speed when the buffer is not aligned as the page is: reading 1 GiB into
 * blocks 16 bytes off cost 0.60 s of CPU on this project's machine, into
 * aligned ones 0.17 s.
 */
function pageAlignedAllocator(koffi: typeof import('koffi')): NativeAllocator {
  try {
    const libc = koffi.load(null);
    const alignedAlloc = libc.func('void *aligned_alloc(size_t alignment, size_t size)') as (a: number, n: number) => unknown;
    const free = libc.func('void free(void *pointer)') as (pointer: unknown) => void;
    return {
      alloc(length) {
        const pointer = alignedAlloc(BLOCK_ALIGNMENT, length);
        if (pointer === null) throw new RangeError(`cannot allocate ${length} bytes of native memory`);
        return pointer;
      },
      free,
    };
  } catch {
    return { alloc: (length) => koffi.alloc('uint8_t', length), free: (pointer) => koffi.free(pointer) };
  }
}

/** The smallest block: tag chunks of 1 MiB of guest memory fit it. */
const SMALLEST_BLOCK = 64 * 1024;

/**
 * Blocks come in powers of two: chunks whose content varies in length (as
 * many present pages as they have) share a handful of sizes, so the pool
 * stays a few blocks per chunk in flight.
 */
function capacityFor(length: number): number {
  let capacity = SMALLEST_BLOCK;
  while (capacity < length) capacity *= 2;
  return capacity;
}

/**
 * Native memory for zstd's inputs and outputs. Blocks handed out by
 * `allocate` are pooled by size (a few per chunk in flight); `addressOf`
 * knows every one of them, so a view of one goes to zstd as an address, not
 * as a copy. A block never given back (its save failed halfway) is freed once
 * no view of it is left.
 */
class NativeMemory {
  private readonly addresses = new WeakMap<ArrayBufferLike, number>();
  private readonly spare = new Map<number, NativeBlock[]>();
  private readonly unreachable: FinalizationRegistry<unknown>;
  private readonly allocator: NativeAllocator;

  constructor(private readonly koffi: typeof import('koffi')) {
    this.allocator = pageAlignedAllocator(koffi);
    this.unreachable = new FinalizationRegistry((pointer) => this.allocator.free(pointer));
  }

  private block(capacity: number): NativeBlock {
    const pointer = this.allocator.alloc(capacity);
    const address = Number(this.koffi.address(pointer));
    const bytes = new Uint8Array(this.koffi.view(pointer, capacity));
    this.addresses.set(bytes.buffer, address);
    this.unreachable.register(bytes.buffer, pointer);
    return { address, bytes };
  }

  allocate(length: number): Uint8Array {
    return this.take(capacityFor(length)).bytes.subarray(0, length);
  }

  private take(capacity: number): NativeBlock {
    return this.spare.get(capacity)?.pop() ?? this.block(capacity);
  }

  release(bytes: Uint8Array): void {
    const address = this.addresses.get(bytes.buffer);
    if (address === undefined || bytes.byteOffset !== 0) throw new RangeError('release takes a view that allocate gave');
    const capacity = bytes.buffer.byteLength;
    const list = this.spare.get(capacity) ?? [];
    list.push({ address, bytes: new Uint8Array(bytes.buffer) });
    this.spare.set(capacity, list);
  }

  /** The address of `bytes` when it is a view of native memory, else undefined. */
  addressOf(bytes: Uint8Array): number | undefined {
    const base = this.addresses.get(bytes.buffer);
    return base === undefined ? undefined : base + bytes.byteOffset;
  }

  /** A work area's own block for one side of a call, grown to hold `length` bytes. */
  stage(area: WorkArea, side: 'input' | 'output', length: number): NativeBlock {
    const current = area[side];
    if (current && current.bytes.length >= length) return current;
    // Replaced blocks are kept by the pool: a view of them may still be around.
    if (current) this.release(current.bytes);
    const block = this.take(capacityFor(length));
    area[side] = block;
    return block;
  }

  /** The address zstd reads `bytes` from: its own, or a copy of it in the area's input block. */
  staged(bytes: Uint8Array, area: WorkArea, side: 'input'): number {
    const address = this.addressOf(bytes);
    if (address !== undefined) return address;
    const block = this.stage(area, side, bytes.length);
    block.bytes.set(bytes);
    return block.address;
  }

  /** Copies a result out of the area's output block when `destination` was not native memory. */
  unstage(area: WorkArea, destination: Uint8Array, length: number): void {
    if (this.addressOf(destination) === undefined) destination.set(area.output!.bytes.subarray(0, length));
  }
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
