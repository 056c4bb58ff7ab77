/**
 * A vCPU that runs on its own thread while the main thread works: what a
 * live checkpoint needs, because pre-copy copies guest memory while the guest
 * keeps running. The thread (vcpu-thread-worker.ts) loops on KVM_RUN;
 * `stop()` sets a shared flag and sends the thread SIGUSR2 until it answers,
 * so KVM_RUN returns EINTR wherever the guest was (the flag also catches a
 * signal that arrived before KVM_RUN started). A vCPU fd may be run from any
 * thread of the process that created its VM (KVM checks the mm, not the thread).
 */
import { Worker } from 'node:worker_threads';
import { errnoError } from '../backends/kvm/errno.js';
import type { KvmVcpu } from '../backends/kvm/kvm-vcpu.js';
import { pthreadKill, SIGUSR2 } from '../backends/kvm/libc.js';
import type { VcpuExit } from '../backends/kvm/vcpu-exit.js';
import { CONTROL, type MmioAutoAnswers, type VcpuThreadData, type VcpuThreadMessage } from './vcpu-thread-protocol.js';

/** Why the thread stopped: asked to, or the guest exited to the VMM first (its exit is still pending). */
export type VcpuStop =
  | { readonly reason: 'paused'; readonly entries: number; readonly pendingMmio: boolean }
  | { readonly reason: 'exit'; readonly exit: VcpuExit };

const KICK_INTERVAL_MS = 1;
const ignoreSignal = (): void => undefined;

export class VcpuThread {
  private stopped: Promise<VcpuStop>;
  private done = false;
  /** The worker's termination, started once the vCPU stopped: not part of the guest's downtime. */
  private finishing: Promise<void> | null = null;

  private constructor(
    private readonly worker: Worker,
    private readonly flags: Int32Array,
    private readonly thread: bigint,
    firstMessages: Promise<VcpuStop>,
  ) {
    this.stopped = firstMessages;
  }

  /**
   * Starts running `vcpu` on a new thread; resolves once the thread is in its KVM_RUN loop. The thread answers the
   * MMIO accesses `autoAnswers` covers itself and runs on; any other exit stops it.
   */
  static async start(vcpu: KvmVcpu, autoAnswers?: MmioAutoAnswers): Promise<VcpuThread> {
    // Without a handler SIGUSR2 would end the process; Node's handler makes it harmless, and KVM_RUN returns EINTR.
    process.on('SIGUSR2', ignoreSignal);
    const control = new SharedArrayBuffer(4 * Object.keys(CONTROL).length);
    const data: VcpuThreadData = { fd: vcpu.fd, runSize: vcpu.runSize, control, autoAnswers };
    const worker = new Worker(new URL('./vcpu-thread-worker.js', import.meta.url), { workerData: data });
    let resolveStop: (stop: VcpuStop) => void = () => undefined;
    let rejectStop: (error: Error) => void = () => undefined;
    const stopped = new Promise<VcpuStop>((resolve, reject) => {
      resolveStop = resolve;
      rejectStop = reject;
    });
    const thread = await new Promise<bigint>((resolve, reject) => {
      worker.on('message', (message: VcpuThreadMessage) => {
        if (message.kind === 'started') resolve(message.thread);
        else if (message.kind === 'paused') resolveStop({ reason: 'paused', entries: message.entries, pendingMmio: message.pendingMmio });
        else if (message.kind === 'exit') resolveStop({ reason: 'exit', exit: message.exit });
        else rejectStop(errnoError(message.errno, 'KVM_RUN', `vCPU ${vcpu.id} on its thread`));
      });
      worker.on('error', (error) => {
        reject(error);
        rejectStop(error);
      });
    });
    return new VcpuThread(worker, new Int32Array(control), thread, stopped);
  }

  /** MMIO loads the thread has answered by itself so far (MmioAutoAnswers). */
  get answeredLoads(): number {
    return Atomics.load(this.flags, CONTROL.answeredLoads);
  }

  /** Resolves when the thread stops by itself (the guest exited to the VMM). */
  get exited(): Promise<VcpuStop> {
    return this.stopped;
  }

  /** Stops the vCPU: afterwards no guest code runs until KVM_RUN is called again. */
  async stop(): Promise<VcpuStop> {
    Atomics.store(this.flags, CONTROL.stop, 1);
    let answered = false;
    const kicks = (async () => {
      while (!answered) {
        pthreadKill(this.thread, SIGUSR2);
        await new Promise((resolve) => setTimeout(resolve, KICK_INTERVAL_MS));
      }
    })();
    try {
      return await this.stopped;
    } finally {
      answered = true;
      await kicks;
      this.finishing = this.finish();
    }
  }

  /** Waits for the worker to be gone (after stop()). */
  async closed(): Promise<void> {
    await this.finishing;
  }

  private async finish(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.worker.terminate();
    process.off('SIGUSR2', ignoreSignal);
  }
}
