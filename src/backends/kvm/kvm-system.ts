/**
 * /dev/kvm: the system-wide handle that answers capability questions and
 * creates VMs. Opening it checks the one thing every later call relies on:
 * the API version is the stable KVM API (12).
 */

import { existsSync } from 'node:fs';
import { VmsnapError } from '../../format/errors.js';
import { check, errnoError } from './errno.js';
import { KVM_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM, KVM_GET_API_VERSION, KVM_GET_VCPU_MMAP_SIZE } from './kvm-abi.js';
import { close, ioctlValue, lastErrno, O_CLOEXEC, O_RDWR, open } from './libc.js';

export const KVM_DEVICE = '/dev/kvm';

/** /dev/kvm exists here (it does not on x86 machines without KVM for arm64, nor in most containers). */
export function kvmDevicePresent(): boolean {
  return existsSync(KVM_DEVICE);
}

export class KvmUnavailableError extends VmsnapError {
  constructor(reason: string) {
    super('kvm-unavailable', 'backend', `KVM is not usable here: ${reason}`);
  }
}

export class KvmSystem {
  private closed = false;

  private constructor(readonly fd: number) {}

  static open(path = KVM_DEVICE): KvmSystem {
    const fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new KvmUnavailableError(`cannot open ${path} (${errnoError(lastErrno(), 'open').message})`);
    const system = new KvmSystem(fd);
    const version = ioctlValue(fd, KVM_GET_API_VERSION, 0);
    if (version !== KVM_API_VERSION) {
      system.close();
      throw new KvmUnavailableError(`KVM_GET_API_VERSION returned ${version}, expected ${KVM_API_VERSION}`);
    }
    return system;
  }

  /** KVM_CHECK_EXTENSION: 0 when the capability is absent, otherwise a capability-specific positive value. */
  checkExtension(capability: number): number {
    return check(ioctlValue(this.fd, KVM_CHECK_EXTENSION, capability), 'KVM_CHECK_EXTENSION', `capability ${capability}`);
  }

  /** Bytes to mmap from a vCPU fd for its struct kvm_run. */
  vcpuMmapSize(): number {
    return check(ioctlValue(this.fd, KVM_GET_VCPU_MMAP_SIZE, 0), 'KVM_GET_VCPU_MMAP_SIZE');
  }

  /** KVM_CREATE_VM with machine type 0: the default 40-bit IPA space. Returns the VM fd. */
  createVmFd(): number {
    return check(ioctlValue(this.fd, KVM_CREATE_VM, 0), 'KVM_CREATE_VM');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
