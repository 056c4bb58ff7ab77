/**
 * Runs chunk jobs on worker threads, or inline where workers cannot run.
 * Chunks are independent, so N workers keep N cores busy while the calling
 * thread reads the guest and writes the file. Workers need the compiled
 * worker script; when running from TypeScript sources (the test runner) the
 * jobs run inline instead, through exactly the same function.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type ChunkJob, type ChunkJobResult, runChunkJob, transferables } from './chunk-jobs.js';

export interface ChunkExecutor {
  readonly threads: number;
  run(job: ChunkJob): Promise<ChunkJobResult>;
  close(): Promise<void>;
}

class InlineExecutor implements ChunkExecutor {
  readonly threads = 0;
  run(job: ChunkJob): Promise<ChunkJobResult> {
    return runChunkJob(job);
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

class WorkerPool implements ChunkExecutor {
  private readonly slots: WorkerSlot[];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Set by close(): results still arriving must not unref a worker whose exit close() awaits. */
  private closing = false;

  constructor(
    script: URL,
    readonly threads: number,
  ) {
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
 * `threads`: worker count; 0 runs inline. Default: one per core, when the
 * compiled worker script exists.
 */
export function createChunkExecutor(threads?: number): ChunkExecutor {
  const script = new URL('./chunk-worker.js', import.meta.url);
  const count = threads ?? availableParallelism();
  if (count <= 0 || !existsSync(fileURLToPath(script))) return new InlineExecutor();
  return new WorkerPool(script, count);
}
