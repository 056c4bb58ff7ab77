/**
 * The simulated backend: the kernel model over process memory. It answers
 * every row of the conformance suite the way the kernel it names does, so the
 * writer and reader can be tested without /dev/kvm.
 */

import { type KernelModelOptions, KernelModelVm } from '../../kernel-model/kernel-model-vm.js';
import type { SlotStorageFactory } from '../../kernel-model/slot-storage.js';
import type { SnapshotRequirements, VmFactory } from '../../vm/vm.js';
import { InMemorySlotStorage, InMemorySlotStorageFactory } from './memory-slot-storage.js';

/** The page size of a VM made without a snapshot to match: arm64 Linux's most common. */
const DEFAULT_PAGE_SIZE = 4096;

export interface SimulatedVmOptions extends KernelModelOptions {
  /** Another store (an ELF core, files); default: memory. */
  readonly storage?: SlotStorageFactory;
  /** The backend name the VM reports; default 'simulated'. */
  readonly backend?: string;
}

export class SimulatedVm extends KernelModelVm {
  constructor(options: SimulatedVmOptions) {
    super(options.backend ?? 'simulated', options.storage ?? new InMemorySlotStorageFactory(), options);
  }

  /** The in-memory bytes of a slot, for bulk fills and tests; undefined for other stores. */
  slotMemory(slot: number): Uint8Array | undefined {
    const entry = this.slotStorages().find((s) => s.info.slot === slot);
    return entry?.storage instanceof InMemorySlotStorage ? entry.storage.view() : undefined;
  }
}

/** Options of the VMs a factory makes; without a page size, each VM takes the page size of the snapshot restored into it. */
export type SimulatedVmFactoryOptions = Omit<SimulatedVmOptions, 'pageSize'> & { readonly pageSize?: number };

export class SimulatedVmFactory implements VmFactory<SimulatedVm> {
  readonly backend: string;

  constructor(private readonly options: SimulatedVmFactoryOptions = {}) {
    this.backend = options.backend ?? 'simulated';
  }

  createVm(snapshot?: SnapshotRequirements): SimulatedVm {
    const pageSize = this.options.pageSize ?? snapshot?.pageSize ?? DEFAULT_PAGE_SIZE;
    return new SimulatedVm({ ...this.options, pageSize });
  }
}
