/**
 * The body of a vCPU thread (vcpu-thread.ts): KVM_RUN in a loop on a vCPU
 * fd of this process, off the main thread, so the main thread can copy guest
 * memory while the guest runs. It stops when the main thread asks (a flag in
 * shared memory, then a signal that makes KVM_RUN return EINTR) or when the
 * guest exits to the VMM (an MMIO access), which it reports and leaves for
 * the main thread to handle, unless the exit is one the main thread gave an
 * answer for in advance (MmioAutoAnswers: a guest's command port, say).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EINTR } from '../backends/kvm/errno.js';
import { mapSharedFd } from '../backends/kvm/host-memory.js';
import { KVM_RUN } from '../backends/kvm/kvm-abi.js';
import { ioctlValue, lastErrno, pthreadSelf } from '../backends/kvm/libc.js';
import { decodeExit, encodeMmioReadValue, type VcpuExit } from '../backends/kvm/vcpu-exit.js';
import { CONTROL, type VcpuThreadData, type VcpuThreadMessage } from './vcpu-thread-protocol.js';

const { fd, runSize, control, autoAnswers } = workerData as VcpuThreadData;
const flags = new Int32Array(control);
const run = mapSharedFd(fd, runSize, 'kvm_run of the vCPU thread');
const post = (message: VcpuThreadMessage): void => parentPort?.postMessage(message);

/** Answers `exit` here when the auto answers cover it (true), so the guest runs on. */
function answeredHere(exit: VcpuExit): boolean {
  if (!autoAnswers || exit.reason !== 'mmio') return false;
  if (exit.isWrite) return autoAnswers.stores.some((rule) => rule.address === exit.address && (rule.value ?? exit.value) === exit.value);
  const load = autoAnswers.loads.find((rule) => rule.address === exit.address);
  if (!load) return false;
  encodeMmioReadValue(run.bytes, load.value);
  Atomics.add(flags, CONTROL.answeredLoads, 1);
  return true;
}

post({ kind: 'started', thread: pthreadSelf() });
let entries = 0;
let pendingMmio = false;
for (;;) {
  if (Atomics.load(flags, CONTROL.stop) !== 0) {
    post({ kind: 'paused', entries, pendingMmio });
    break;
  }
  entries++;
  if (ioctlValue(fd, KVM_RUN, 0) === 0) {
    const exit = decodeExit(run.bytes);
    pendingMmio = answeredHere(exit);
    if (pendingMmio) continue;
    post({ kind: 'exit', exit, entries });
    break;
  }
  const errno = lastErrno();
  if (errno !== EINTR) {
    post({ kind: 'error', errno, entries });
    break;
  }
  // Interrupted before the guest exited: a pending MMIO answer was completed by that KVM_RUN's entry.
  pendingMmio = false;
}
run.unmap();
// Stay alive (idle) until the main thread terminates this worker: its last SIGUSR2 may still be on the way, and a
// thread that has exited and been joined must not be signalled.
parentPort?.on('message', () => undefined);
