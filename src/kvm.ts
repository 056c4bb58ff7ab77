/**
 * 'vmsnap/kvm': the backend for the host's real KVM (arm64 with MTE), through
 * koffi. `KvmVmFactory` makes `Vm`s that saveSnapshot and restoreSnapshot use
 * unchanged, in the process that owns the VMs (KVM_ARM_MTE_COPY_TAGS works
 * only there). Also the small VMM behind `vmsnap run`: the bare-metal MTE
 * test guest, checkpointed and resumed through a snapshot file.
 */

export { HostCallError } from './backends/kvm/errno.js';
export * as kvmAbi from './backends/kvm/kvm-abi.js';
export { KvmVmFactory, kvmMteUnavailableReason } from './backends/kvm/kvm-factory.js';
export { KvmSystem, KvmUnavailableError, kvmDevicePresent } from './backends/kvm/kvm-system.js';
export { KvmVcpu } from './backends/kvm/kvm-vcpu.js';
export { GuestRangeError, KvmVm } from './backends/kvm/kvm-vm.js';
export type { MmioExit, OtherExit, SystemEventExit, VcpuExit } from './backends/kvm/vcpu-exit.js';
export { KvmLiveGuest } from './vmm/kvm-live-guest.js';
export {
  checkpointToSnapshot,
  type ResumeOptions,
  type ResumeResult,
  resumeFromSnapshot,
} from './vmm/live-checkpoint.js';
export {
  DEFAULT_LAYOUT,
  describeReport,
  GuestLayoutError,
  GuestProtocolError,
  type GuestReport,
  type MteGuestLayout,
} from './vmm/mte-guest-protocol.js';
export { loadMteTestGuest, runnableVcpu, runToCheckpoint, runUntilReport } from './vmm/mte-guest-vmm.js';
export { damageTag, type TagDamage } from './vmm/tag-damage.js';
export { type VcpuStop, VcpuThread } from './vmm/vcpu-thread.js';
