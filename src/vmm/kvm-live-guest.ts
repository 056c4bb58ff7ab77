/**
 * The MTE test guest running on its own thread while pre-copy copies it: the
 * `LiveGuest` of a live checkpoint or migration on the real KVM. pause()
 * stops vCPU 0 wherever it is (VcpuThread); if the guest had already exited
 * to the VMM with a report store, that store is completed first
 * (KVM_RUN with immediate_exit), so the registers saved next resume after it.
 */
import type { KvmVcpu } from '../backends/kvm/kvm-vcpu.js';
import type { LiveGuest } from '../live/precopy.js';
import { xRegisterId } from '../vm/arm64-registers.js';
import type { Vm } from '../vm/vm.js';
import { GuestProtocolError } from './mte-guest-protocol.js';
import { runnableVcpu } from './mte-guest-vmm.js';
import { type VcpuStop, VcpuThread } from './vcpu-thread.js';
import type { MmioAutoAnswers } from './vcpu-thread-protocol.js';

export class KvmLiveGuest implements LiveGuest {
  /** How the vCPU stopped, once paused. */
  stop: VcpuStop | null = null;
  /** Milliseconds from start() to pause(). */
  ranMilliseconds = 0;
  private readonly started = performance.now();

  private constructor(
    private readonly vcpu: KvmVcpu,
    private readonly thread: VcpuThread,
  ) {}

  /**
   * Starts vCPU 0 of `vm` (loaded, not yet run, or restored) on its own thread; the thread answers what
   * `autoAnswers` covers (the mutator's commands: mutatorAutoAnswers) and runs on.
   */
  static async start(vm: Vm, autoAnswers?: MmioAutoAnswers): Promise<KvmLiveGuest> {
    const vcpu = runnableVcpu(vm);
    return new KvmLiveGuest(vcpu, await VcpuThread.start(vcpu, autoAnswers));
  }

  /** MMIO loads the thread answered by itself so far: for the mutator, the commands it has started. */
  get answeredLoads(): number {
    return this.thread.answeredLoads;
  }

  async pause(): Promise<void> {
    const stop = await this.thread.stop();
    this.ranMilliseconds = performance.now() - this.started;
    this.stop = stop;
    if (stop.reason === 'exit') {
      if (stop.exit.reason !== 'mmio') throw new GuestProtocolError(`the guest stopped with ${JSON.stringify(stop.exit)}`);
      this.vcpu.completePendingExit();
    } else if (stop.pendingMmio) {
      // An access the thread answered and KVM has not completed: complete it so the saved registers are past it.
      this.vcpu.completePendingExit();
    }
  }

  /** Stops the thread if it still runs (a transfer that failed before its pause): call it before closing the VM. */
  async close(): Promise<void> {
    if (!this.stop) await this.pause();
    await this.thread.closed();
  }

  /** A 64-bit general register (x0..x30) of the paused vCPU. */
  register(n: number): bigint {
    const bytes = this.vcpu.getRegister(xRegisterId(n));
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  }
}
