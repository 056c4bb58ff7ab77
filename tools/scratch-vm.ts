/**
 * The simulated VM the CLI restores into (`migrate receive` by default,
 * `restore` without --ram-out or --compare-sim), its guest memory and tags in
 * scratch files (ScratchFilesStorageFactory: unlinked at once, sparse) instead
 * of this process: memory does not grow with the guest, and guests beyond an
 * in-memory slot's limit fit. The VM itself is the simulator, unchanged.
 */
import { ScratchFilesStorageFactory } from '../src/backends/raw-files/scratch-files.js';
import { type SimulatedVm, SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { MAX_IPA_BITS } from '../src/kernel-model/memslot-table.js';
import type { SnapshotRequirements, VmFactory } from '../src/vm/vm.js';

/** Makes simulated VMs over scratch files; close() frees the files of every VM made, once those VMs are closed. */
export class ScratchSimulatedVmFactory implements VmFactory<SimulatedVm> {
  readonly backend = 'simulated';
  private readonly stores: ScratchFilesStorageFactory[] = [];

  createVm(snapshot?: SnapshotRequirements): SimulatedVm {
    const storage = new ScratchFilesStorageFactory();
    this.stores.push(storage);
    // KVM's limits (memslot ids 0..32766) with the largest IPA space a KVM host offers (52 bits).
    return new SimulatedVmFactory({ adoptRegisters: true, ipaBits: MAX_IPA_BITS, storage }).createVm(snapshot);
  }

  close(): void {
    for (const storage of this.stores.splice(0)) storage.close();
  }
}
