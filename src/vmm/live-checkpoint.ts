/**
 * The live checkpoint and restore of the MTE test guest through a vmsnap
 * file, in the two halves a VMM has:
 *
 *   checkpointToSnapshot: new KVM VM -> guest fills memory and tags -> stops
 *                         at its checkpoint -> vmsnap save -> VM destroyed
 *   resumeFromSnapshot:   vmsnap restore into a new VM (MTE, memslots, RAM,
 *                         TO_GUEST, vCPU registers) -> KVM_RUN -> the guest
 *                         checks every tag and word and reports
 *
 * Both run in the process that owns the VM, as KVM requires for the tag ioctl.
 */

import type { KvmVmFactory } from '../backends/kvm/kvm-factory.js';
import { type RestoreSummary, restoreSnapshot } from '../reader/restore.js';
import type { Vm, VmFactory } from '../vm/vm.js';
import { type SaveOptions, type SaveSummary, saveSnapshot } from '../writer/save.js';
import { DEFAULT_LAYOUT, type GuestReport, type MteGuestLayout } from './mte-guest-protocol.js';
import { loadMteTestGuest, runnableVcpu, runToCheckpoint, runUntilReport } from './mte-guest-vmm.js';

/** Annotations a checkpoint writes, so a person reading `vmsnap info` sees what the file holds. */
export function layoutAnnotations(layout: MteGuestLayout): Record<string, string> {
  return {
    'kvm.guest': 'vmsnap MTE test guest, stopped at its checkpoint',
    'kvm.guest.fill': `0x${(layout.ramBase + layout.fillOffset).toString(16)}+0x${layout.fillLength.toString(16)}`,
    'kvm.guest.seed': `0x${layout.seed.toString(16)}`,
  };
}

export async function checkpointToSnapshot(
  factory: KvmVmFactory,
  destination: string,
  options: { layout?: MteGuestLayout; save?: SaveOptions } = {},
): Promise<SaveSummary> {
  const layout = options.layout ?? DEFAULT_LAYOUT;
  const vm = factory.createVm();
  try {
    loadMteTestGuest(vm, layout);
    runToCheckpoint(runnableVcpu(vm));
    return await saveSnapshot(vm, destination, {
      ...options.save,
      annotations: { ...layoutAnnotations(layout), ...options.save?.annotations },
    });
  } finally {
    vm.close();
  }
}

export interface ResumeResult {
  readonly report: GuestReport;
  readonly restore: RestoreSummary;
}

export interface ResumeOptions {
  readonly threads?: number;
  /** Called with the restored VM before its vCPU runs (to inspect or, for a demonstration, damage it). */
  readonly beforeResume?: (vm: Vm) => void;
}

/** Restores the checkpoint into a VM from `factory` (KVM, possibly wrapped) and runs the guest to its verdict. */
export async function resumeFromSnapshot(source: string, factory: VmFactory, options: ResumeOptions = {}): Promise<ResumeResult> {
  const { vm, summary } = await restoreSnapshot(source, factory, { threads: options.threads });
  try {
    options.beforeResume?.(vm);
    return { report: runUntilReport(runnableVcpu(vm)), restore: summary };
  } finally {
    vm.close();
  }
}
