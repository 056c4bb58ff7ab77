/**
 * Runs chunk jobs where they keep the cores busy. Chunks are independent, so
 * N compressions in flight keep N cores busy while the calling thread reads
 * the guest and writes the file. In order of preference:
 *  - the system libzstd on libuv's thread pool (libzstd.ts): everything but
 *    the zstd call stays on the calling thread, and no core costs a V8 heap;
 *  - worker threads with the bundled codec, when libzstd or koffi is missing
 *    (they need the compiled worker script);
 *  - inline, on the calling thread with the bundled codec: with threads 0, or
 *    from TypeScript sources (the test runner) when libzstd is missing.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type ChunkJob, type ChunkJobResult, runChunkJob, runChunkJobNative, transferables } from './chunk-jobs.js';
import { INLINE_CALL_BYTES, type Libzstd, loadLibzstd } from './libzstd.js';
import { timedAsync } from './phase-clock.js';

export interface ChunkExecutor {
  readonly threads: number;
  run(job: ChunkJob): Promise<ChunkJobResult>;
  /**
   * A buffer for chunk input that the executor's codec reads in place (native
   * memory with the system libzstd): give it back with `release`.
   */
  allocate(length: number): Uint8Array;
  release(bytes: Uint8Array): void;
  close(): Promise<void>;
}

/** Plain memory, left to the garbage collector: the bundled codecs copy their input anyway. */
abstract class HeapBuffers {
  allocate(length: number): Uint8Array {
    return new Uint8Array(length);
  }
  release(_bytes: Uint8Array): void {}
}

class InlineExecutor extends HeapBuffers implements ChunkExecutor {
  readonly threads = 0;
  run(job: ChunkJob): Promise<ChunkJobResult> {
    return runChunkJob(job);
  }
  async close(): Promise<void> {}
}

/** libuv's thread pool: four threads unless UV_THREADPOOL_SIZE says otherwise (reads and fsyncs share them). */
function libuvPoolSize(): number {
  const size = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isInteger(size) && size > 0 ? size : 4;
}

/** At most `limit` calls at once; the rest wait their turn in order. */
class Gate {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((turn) => this.waiting.push(turn));
    else this.running++;
    try {
      return await work();
    } finally {
      // The turn passes straight to the next waiter, so `running` stays counted.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/**
 * Chunk jobs on the calling thread, their zstd calls on libuv's pool, no more
 * than `threads` at once (by default one more than the cores, see
 * createChunkExecutor): the pool's other threads stay free for the reads and
 * writeback that feed and drain them.
 */
class NativeExecutor implements ChunkExecutor {
  private readonly zstd: Libzstd;

  constructor(
    zstd: Libzstd,
    readonly threads: number,
  ) {
    const gate = new Gate(threads);
    this.zstd = {
      name: zstd.name,
      // Timed inside the gate: the time a call runs, not the time it waits for its turn.
      // A small call runs on this thread (INLINE_CALL_BYTES): it takes no pool thread, so it does not wait for a turn.
      compressInto: (content, level, destination) =>
        content.length <= INLINE_CALL_BYTES
          ? timedAsync('compression', zstd.compressInto(content, level, destination))
          : gate.run(() => timedAsync('compression', zstd.compressInto(content, level, destination))),
      decompressInto: (frame, destination) =>
        destination.length <= INLINE_CALL_BYTES
          ? timedAsync('decompression', zstd.decompressInto(frame, destination))
          : gate.run(() => timedAsync('decompression', zstd.decompressInto(frame, destination))),
      allocate: (length) => zstd.allocate(length),
      release: (bytes) => zstd.release(bytes),
    };
  }
  run(job: ChunkJob): Promise<ChunkJobResult> {
    return runChunkJobNative(job, this.zstd);
  }
  allocate(length: number): Uint8Array {
    return this.zstd.allocate(length);
  }
  release(bytes: Uint8Array): void {
    this.zstd.release(bytes);
  }
  async close(): Promise<void> {}
}

interface Pending {
  resolve(result: ChunkJobResult): void;
  reject(error: Error): void;
  worker: WorkerSlot;
}

interface WorkerSlot {
  worker: Worker;
  busy: number;
}

class WorkerPool extends HeapBuffers implements ChunkExecutor {
  private readonly slots: WorkerSlot[];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Set by close(): results still arriving must not unref a worker whose exit close() awaits. */
  private closing = false;

  constructor(
    script: URL,
    readonly threads: number,
  ) {
    super();
    this.slots = Array.from({ length: threads }, () => {
      const slot: WorkerSlot = { worker: new Worker(script), busy: 0 };
      slot.worker.on('message', (message: { id: number; result?: ChunkJobResult; error?: string }) => this.settle(message));
      slot.worker.on('error', (error) => this.failAll(error));
      slot.worker.unref();
      return slot;
    });
  }

  run(job: ChunkJob): Promise<ChunkJobResult> {
    const slot = this.slots.reduce((best, s) => (s.busy < best.busy ? s : best));
    const id = this.nextId++;
    // A worker with work keeps the process alive; idle ones do not hold it open at exit.
    if (slot.busy++ === 0) slot.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: slot });
      slot.worker.postMessage({ id, job }, transferables(job));
    });
  }

  private settle(message: { id: number; result?: ChunkJobResult; error?: string }): void {
    const pending = this.pending.get(message.id);
    if (!pending) return;
    this.pending.delete(message.id);
    if (--pending.worker.busy === 0 && !this.closing) pending.worker.worker.unref();
    if (message.error !== undefined) pending.reject(new Error(message.error));
    else pending.resolve(message.result!);
  }

  private failAll(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }

  async close(): Promise<void> {
    // An unref'd worker's exit does not hold the event loop, so terminate() could be left pending as the process exits.
    this.closing = true;
    await Promise.all(
      this.slots.map((slot) => {
        slot.worker.ref();
        return slot.worker.terminate();
      }),
    );
  }
}

/**
 * `threads`: chunks compressed or decompressed at once; 0 runs inline with
 * the bundled codec. Default: one per core with worker threads; one more than
 * the cores with libzstd, at most libuv's pool size less one.
 *
 * With libzstd the calling thread does its share of the work (reading tags,
 * finding zero pages, checksums, writing) on one of the same cores: with only
 * as many calls as cores, a core sat idle whenever that thread waited for the
 * oldest result, and one call more keeps it busy (the bench's 1 GiB save on 2
 * cores: 3.1 s with 2 calls, 2.9 s with 3, for the same CPU time).
 */
export function createChunkExecutor(threads?: number): ChunkExecutor {
  const zstd = threads === 0 ? null : loadLibzstd();
  const count = threads ?? availableParallelism() + (zstd ? 1 : 0);
  if (count <= 0) return new InlineExecutor();
  // One pool thread stays free for reads and writeback.
  if (zstd) return new NativeExecutor(zstd, Math.max(1, Math.min(count, libuvPoolSize() - 1)));
  const script = new URL('./chunk-worker.js', import.meta.url);
  if (!existsSync(fileURLToPath(script))) return new InlineExecutor();
  return new WorkerPool(script, count);
}
