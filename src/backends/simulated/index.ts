/** The simulated KVM backend and the kernel model it is built on. */

export {
  type KernelModelOptions,
  KernelModelVm,
  MAX_VCPUS,
  type ProcessId,
  type VmIoctlHandle,
} from '../../kernel-model/kernel-model-vm.js';
export {
  DEFAULT_KERNEL_VERSION,
  formatKernelVersion,
  type KernelBehaviour,
  type KernelVersion,
  kernelAtLeast,
  kernelBehaviour,
} from '../../kernel-model/kernel-version.js';
export { DEFAULT_IPA_BITS, MAX_USER_MEMSLOTS } from '../../kernel-model/memslot-table.js';
export { SimulatedVcpu } from '../../kernel-model/simulated-vcpu.js';
export type { SlotOffset, SlotPage, SlotStorage, SlotStorageFactory, TagAccess } from '../../kernel-model/slot-storage.js';
export { InMemorySlotStorage, InMemorySlotStorageFactory, MAX_IN_MEMORY_SLOT_BYTES } from './memory-slot-storage.js';
export { SimulatedVm, SimulatedVmFactory, type SimulatedVmOptions } from './simulated-vm.js';
