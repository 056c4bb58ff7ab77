/**
 * The real KVM as a conformance target (testkit/conformance): VMs from the
 * host's /dev/kvm, the kernel version from uname, and the "other process" of
 * the EIO row played by a child node process that inherits the VM fd.
 */
import { spawnSync } from 'node:child_process';
import { release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import { KvmVm } from '../../src/backends/kvm/kvm-vm.js';
import { type CopyMteTagsRequest, type ErrnoName, type Vm, VmErrnoError } from '../../src/vm/vm.js';
import { KvmGuestAccess } from './kvm-guest-access.js';
import { INHERITED_VM_FD, type OtherProcessAnswer, serialiseCopyRequest } from './other-process-copy.js';
import type { ConformanceTarget } from './types.js';

export class OtherProcessError extends Error {
  constructor(reason: string) {
    super(`the other-process tag copy did not answer: ${reason}`);
    this.name = 'OtherProcessError';
  }
}

/** [major, minor] of a kernel release string such as "6.1.0-50-cloud-arm64". */
export function parseKernelRelease(text: string): [number, number] {
  const match = /^(\d+)\.(\d+)/.exec(text);
  if (!match) throw new RangeError(`kernel release "${text}" does not start with major.minor`);
  return [Number(match[1]), Number(match[2])];
}

const CHILD_SCRIPT = fileURLToPath(new URL('./other-process-copy-main.js', import.meta.url));

/** KVM_ARM_MTE_COPY_TAGS on `vm`'s fd from a child process; returns its result or throws its errno as VmErrnoError. */
export function copyMteTagsFromChildProcess(vm: Vm, request: CopyMteTagsRequest): number {
  if (!(vm instanceof KvmVm)) throw new TypeError(`a ${vm.backend} VM has no fd to hand to another process`);
  const child = spawnSync(process.execPath, [CHILD_SCRIPT, JSON.stringify(serialiseCopyRequest(request))], {
    // The child's fd 3 is the VM fd (dup2 clears close-on-exec).
    stdio: ['ignore', 'pipe', 'pipe', vm.fd],
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (child.error) throw new OtherProcessError(child.error.message);
  if (child.status !== 0) throw new OtherProcessError(`exit ${child.status}: ${child.stderr.trim()}`);
  const reply = JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as OtherProcessAnswer;
  if ('result' in reply) return reply.result;
  if ('errno' in reply)
    throw new VmErrnoError(reply.errno as ErrnoName, 'KVM_ARM_MTE_COPY_TAGS', `from process ${child.pid}, fd ${INHERITED_VM_FD}`);
  throw new OtherProcessError(reply.error);
}

export function kvmConformanceTarget(factory: KvmVmFactory = new KvmVmFactory()): ConformanceTarget {
  const kernelVersion = parseKernelRelease(release());
  return {
    name: `KVM, ${factory.pageSize / 1024} KiB pages, Linux ${release()}`,
    pageSize: factory.pageSize,
    kernelVersion,
    createVm: () => factory.createVm(),
    copyMteTagsFromOtherProcess: copyMteTagsFromChildProcess,
    guestAccess: (vm) => new KvmGuestAccess(vm),
  };
}
