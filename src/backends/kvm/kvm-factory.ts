/**
 * Makes VMs on the host's KVM. Constructing the factory checks, once, that
 * KVM is there, speaks API 12 and offers MTE to guests; each VM then gets its
 * own /dev/kvm handle so closing one VM never affects another.
 */
import type { VmFactory } from '../../vm/vm.js';
import { KVM_CAP_ARM_MTE } from './kvm-abi.js';
import { KvmSystem, KvmUnavailableError } from './kvm-system.js';
import { KvmVm } from './kvm-vm.js';
import { hostPageSize } from './libc.js';

export class KvmVmFactory implements VmFactory {
  readonly backend = 'kvm';
  readonly pageSize = hostPageSize();

  constructor(private readonly devicePath?: string) {
    const system = KvmSystem.open(devicePath);
    try {
      if (system.checkExtension(KVM_CAP_ARM_MTE) <= 0)
        throw new KvmUnavailableError('KVM_CAP_ARM_MTE is not offered (no MTE in the host CPU or kernel)');
    } finally {
      system.close();
    }
  }

  /** A fresh VM: no memslots, MTE not yet enabled, no vCPUs. */
  createVm(): KvmVm {
    const system = KvmSystem.open(this.devicePath);
    try {
      return new KvmVm(system, system.createVmFd(), this.pageSize);
    } catch (error) {
      system.close();
      throw error;
    }
  }
}

/** Why KVM with MTE cannot be used here, or null when it can: for tests and commands that skip. */
export function kvmMteUnavailableReason(): string | null {
  try {
    new KvmVmFactory();
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
