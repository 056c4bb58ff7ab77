/** What the main thread and a vCPU thread (vcpu-thread-worker.ts) tell each other. */
import type { VcpuExit } from '../backends/kvm/vcpu-exit.js';

/** Indexes into the shared Int32Array. */
export const CONTROL = { stop: 0 } as const;

export interface VcpuThreadData {
  readonly fd: number;
  readonly runSize: number;
  readonly control: SharedArrayBuffer;
}

export type VcpuThreadMessage =
  | { readonly kind: 'started'; readonly thread: bigint }
  | { readonly kind: 'paused'; readonly entries: number }
  | { readonly kind: 'exit'; readonly exit: VcpuExit; readonly entries: number }
  | { readonly kind: 'error'; readonly errno: number; readonly entries: number };
