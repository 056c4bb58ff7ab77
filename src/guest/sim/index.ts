/** The simulated KVM backend and the kernel model it is built on. */
export { SimulatedVm, SimulatedVmFactory, type SimulatedVmOptions } from './simulated-vm.js';
export { KernelModelVm, MAX_VCPUS, type KernelModelOptions, type ProcessId, type VmIoctlHandle } from './kernel-model-vm.js';
export {
  DEFAULT_KERNEL_VERSION,
  formatKernelVersion,
  kernelAtLeast,
  kernelBehaviour,
  type KernelBehaviour,
  type KernelVersion,
} from './kernel-version.js';
export type { SlotOffset, SlotPage, SlotStorage, SlotStorageFactory, TagAccess } from './slot-storage.js';
export { InMemorySlotStorage, InMemorySlotStorageFactory, MAX_IN_MEMORY_SLOT_BYTES } from './memory-slot-storage.js';
export { DEFAULT_IPA_BITS, MAX_USER_MEMSLOTS } from './memslot-table.js';
export { SimulatedVcpu } from './simulated-vcpu.js';
export { simulatedConformanceTarget, type SimulatedTargetOptions } from './conformance-target.js';
