/**
 * vmsnap's backend for the host's real KVM (arm64 with MTE), through koffi:
 * `KvmVmFactory` makes `Vm`s that saveSnapshot and restoreSnapshot use
 * unchanged, in the process that owns the VMs. The `vmm/` part is the small
 * VMM behind `vmsnap run`; `lab/` runs inside the emulated host of
 * `npm run test:kvm`.
 */
export * as kvmAbi from './kvm-abi.js';
export { HostCallError } from './errno.js';
export { KvmVmFactory, kvmMteUnavailableReason } from './kvm-factory.js';
export { KvmSystem, KvmUnavailableError, kvmDevicePresent } from './kvm-system.js';
export { GuestRangeError, KvmVm } from './kvm-vm.js';
export { KvmVcpu } from './kvm-vcpu.js';
export type { MmioExit, OtherExit, SystemEventExit, VcpuExit } from './vcpu-exit.js';
export { checkpointToSnapshot, resumeFromSnapshot, type ResumeResult } from './test-guest/live-checkpoint.js';
export { loadMteTestGuest, runToCheckpoint, runUntilReport, runnableVcpu } from './test-guest/mte-guest-vmm.js';
export { DEFAULT_LAYOUT, describeReport, type GuestReport, type MteGuestLayout } from './test-guest/mte-guest-protocol.js';
