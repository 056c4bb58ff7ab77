/**
 * The real-KVM ends of `vmsnap migrate`: the MTE test guest started on its own
 * vCPU thread as a migration source (`send --kvm`), and a destination that
 * restores into a new KVM VM and resumes the guest (`receive --kvm`), which
 * then verifies every tag and word and reports. Loaded only for --kvm, so that
 * the simulated and raw-file paths never load koffi.
 */
import type { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import type { KvmVm } from '../../src/backends/kvm/kvm-vm.js';
import type { LiveGuest } from '../../src/live/precopy.js';
import type { Vm } from '../../src/vm/vm.js';
import { KvmLiveGuest } from '../../src/vmm/kvm-live-guest.js';
import { describeReport, type GuestReport } from '../../src/vmm/mte-guest-protocol.js';
import { loadMteTestGuest, runnableVcpu, runUntilReport } from '../../src/vmm/mte-guest-vmm.js';
import { hex } from '../units.js';
import { layoutFrom, openKvm } from './run.js';

export interface KvmSourceOptions {
  seed?: string;
  fill?: string;
}

/** The test guest loaded into a new KVM VM and running on its own thread, for pre-copy to copy while it fills. */
export interface RunningKvmGuest {
  readonly vm: KvmVm;
  readonly guest: LiveGuest;
  readonly description: string;
  readonly details: Readonly<Record<string, unknown>>;
  /** Where the guest was when pre-copy paused it. */
  pausePoint(): string;
  close(): Promise<void>;
}

export async function startKvmSource(options: KvmSourceOptions): Promise<RunningKvmGuest> {
  const layout = layoutFrom(options);
  const factory = openKvm('vmsnap migrate send --kvm');
  const vm = factory.createVm();
  let guest: KvmLiveGuest;
  try {
    loadMteTestGuest(vm, layout);
    guest = await KvmLiveGuest.start(vm);
  } catch (error) {
    vm.close();
    throw error;
  }
  return {
    vm,
    guest,
    description: `the MTE test guest on KVM, filling ${layout.fillLength >> 20n} MiB (seed ${hex(layout.seed)}), ${vm.pageSize}-byte pages`,
    details: { kind: 'kvm', fillBytes: layout.fillLength, seed: hex(layout.seed), pageSize: vm.pageSize },
    pausePoint: () =>
      guest.stop?.reason === 'exit'
        ? `paused at its checkpoint (fill done after ${guest.ranMilliseconds.toFixed(0)} ms)`
        : `paused while still filling, after running ${guest.ranMilliseconds.toFixed(0)} ms`,
    close: async () => {
      try {
        await guest.close();
      } finally {
        vm.close();
      }
    },
  };
}

export function kvmTargetFactory(): KvmVmFactory {
  return openKvm('vmsnap migrate receive --kvm');
}

/** Runs the restored guest to its verdict: if it was paused mid-fill it finishes, stops at its checkpoint, then verifies. */
export function resumeToVerdict(vm: Vm): { report: GuestReport; verdict: string } {
  const vcpu = runnableVcpu(vm);
  let report = runUntilReport(vcpu);
  if (report.status === 'checkpoint') {
    vcpu.completePendingExit();
    report = runUntilReport(vcpu);
  }
  return { report, verdict: describeReport(report) };
}
