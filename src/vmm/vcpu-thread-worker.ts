/**
 * The body of a vCPU thread (vcpu-thread.ts): KVM_RUN in a loop on a vCPU
 * fd of this process, off the main thread, so the main thread can copy guest
 * memory while the guest runs. It stops when the main thread asks (a flag in
 * shared memory, then a signal that makes KVM_RUN return EINTR) or when the
 * guest exits to the VMM (an MMIO access), which it reports and leaves for
 * the main thread to handle.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EINTR } from '../backends/kvm/errno.js';
import { mapSharedFd } from '../backends/kvm/host-memory.js';
import { KVM_RUN } from '../backends/kvm/kvm-abi.js';
import { ioctlValue, lastErrno, pthreadSelf } from '../backends/kvm/libc.js';
import { decodeExit } from '../backends/kvm/vcpu-exit.js';
import { CONTROL, type VcpuThreadData, type VcpuThreadMessage } from './vcpu-thread-protocol.js';

const { fd, runSize, control } = workerData as VcpuThreadData;
const flags = new Int32Array(control);
const run = mapSharedFd(fd, runSize, 'kvm_run of the vCPU thread');
const post = (message: VcpuThreadMessage): void => parentPort?.postMessage(message);

post({ kind: 'started', thread: pthreadSelf() });
let entries = 0;
for (;;) {
  if (Atomics.load(flags, CONTROL.stop) !== 0) {
    post({ kind: 'paused', entries });
    break;
  }
  entries++;
  if (ioctlValue(fd, KVM_RUN, 0) === 0) {
    post({ kind: 'exit', exit: decodeExit(run.bytes), entries });
    break;
  }
  const errno = lastErrno();
  if (errno !== EINTR) {
    post({ kind: 'error', errno, entries });
    break;
  }
}
run.unmap();
// Stay alive (idle) until the main thread terminates this worker: its last SIGUSR2 may still be on the way, and a
// thread that has exited and been joined must not be signalled.
parentPort?.on('message', () => undefined);
