/**
 * A seeded, reproducible guest that looks like a real MTE guest: kernel text
 * (code, tags zero), heap pages with one tag per allocation, page cache, about
 * half of RAM zero, and an untagged flash region. Any page range can be
 * generated on its own from (seed, region, page), so guests of many GiB stream
 * through bounded memory.
 *
 *   const guest = createSimulatedGuest({ sizeMiB: 256, seed: 1, pageSize: 4096 });
 *   for (const chunk of generateRegionChunks(guest.workload, 'ram', 256)) ...
 */
import { SimulatedVm } from '../backends/simulated/simulated-vm.js';
import type { KernelVersion } from '../kernel-model/kernel-version.js';
import type { SlotStorageFactory } from '../kernel-model/slot-storage.js';
import { addWorkloadSlots, type FillProgress, type FillStats, fillVm } from './fill.js';
import { seedVcpuRegisters } from './vcpu-state.js';
import { planWorkload, type Workload, type WorkloadOptions } from './workload-layout.js';

export interface SimulatedGuestOptions extends WorkloadOptions {
  /** Kernel the simulated VM behaves like; default [6, 1]. */
  readonly kernelVersion?: KernelVersion;
  /** vCPUs to create with plausible registers; default 2. */
  readonly vcpus?: number;
  /** Called as memory is generated: a guest of a few GiB takes seconds. */
  readonly onProgress?: FillProgress;
  /**
   * Where guest memory and tags live; default process memory. A file store (ScratchFilesStorageFactory) keeps a
   * guest of any size out of the process, as `migrate send --sim` does; the guest is the same either way.
   */
  readonly storage?: SlotStorageFactory;
}

export interface SimulatedGuest {
  readonly vm: SimulatedVm;
  readonly workload: Workload;
  readonly stats: FillStats;
}

/** A simulated VM with MTE on, its memslots filled with a generated workload, and vCPUs set up. */
export function createSimulatedGuest(options: SimulatedGuestOptions): SimulatedGuest {
  const workload = planWorkload(options);
  const vm = new SimulatedVm({ pageSize: workload.pageSize, kernelVersion: options.kernelVersion, storage: options.storage });
  addWorkloadSlots(vm, workload);
  const stats = fillVm(vm, workload, undefined, options.onProgress);
  for (let id = 0; id < (options.vcpus ?? 2); id++) seedVcpuRegisters(vm.createVcpu(id), workload);
  return { vm, workload, stats };
}
