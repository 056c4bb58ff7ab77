/** A VM's vCPU register state, read as KVM_GET_REG_LIST and KVM_GET_ONE_REG give it. */
import type { VcpuState, VmSource } from '../vm/vm.js';

export function vcpuStates(vm: VmSource): VcpuState[] {
  return vm.vcpus().map((vcpu) => ({
    id: vcpu.id,
    registers: vcpu.registerIds().map((id) => ({ id, value: vcpu.getRegister(id) })),
  }));
}
