/** What the main thread and a vCPU thread (vcpu-thread-worker.ts) tell each other. */
import type { VcpuExit } from '../backends/kvm/vcpu-exit.js';

/** Indexes into the shared Int32Array: the stop flag, and the MMIO loads the thread answered so far. */
export const CONTROL = { stop: 0, answeredLoads: 1 } as const;

/**
 * MMIO accesses a vCPU thread handles itself and runs on, instead of stopping: a load at `address` gets `value`;
 * a store at `address` (of `value`, when given) is let through. Everything else stops the thread.
 */
export interface MmioAutoAnswers {
  readonly loads: readonly { readonly address: bigint; readonly value: bigint }[];
  readonly stores: readonly { readonly address: bigint; readonly value?: bigint }[];
}

export interface VcpuThreadData {
  readonly fd: number;
  readonly runSize: number;
  readonly control: SharedArrayBuffer;
  readonly autoAnswers?: MmioAutoAnswers;
}

export type VcpuThreadMessage =
  | { readonly kind: 'started'; readonly thread: bigint }
  /** `pendingMmio`: the last exit was answered here and KVM_RUN has not completed it yet. */
  | { readonly kind: 'paused'; readonly entries: number; readonly pendingMmio: boolean }
  | { readonly kind: 'exit'; readonly exit: VcpuExit; readonly entries: number }
  | { readonly kind: 'error'; readonly errno: number; readonly entries: number };
