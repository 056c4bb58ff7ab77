/**
 * The destination process of a lab migration: reads a migration stream on
 * standard input, restores it into a new KVM VM as it arrives, resumes the
 * MTE test guest and prints one JSON line: the guest's verdict, or the
 * reason the stream was refused (then nothing was resumed). Run by
 * live-checks.ts as a separate node process, as a real destination would be.
 */
import { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import { VmsnapError } from '../../src/format/errors.js';
import { receiveMigration } from '../../src/live/migration-receiver.js';
import { describeReport, type GuestReport } from '../../src/vmm/mte-guest-protocol.js';
import { runnableVcpu, runUntilReport } from '../../src/vmm/mte-guest-vmm.js';

export type DestinationAnswer =
  | { readonly resumed: true; readonly status: string; readonly verdict: string; readonly rounds: number; readonly pages: number }
  | { readonly resumed: false; readonly code: string; readonly message: string };

async function main(): Promise<DestinationAnswer> {
  try {
    const { vm, rounds, pages } = await receiveMigration(process.stdin, new KvmVmFactory());
    try {
      const vcpu = runnableVcpu(vm);
      let report: GuestReport = runUntilReport(vcpu);
      // Paused in the middle of its fill, the guest finishes it here and stops at its checkpoint first.
      if (report.status === 'checkpoint') {
        vcpu.completePendingExit();
        report = runUntilReport(vcpu);
      }
      return { resumed: true, status: report.status, verdict: describeReport(report), rounds, pages };
    } finally {
      vm.close();
    }
  } catch (error) {
    if (error instanceof VmsnapError) return { resumed: false, code: error.code, message: error.message };
    throw error;
  }
}

process.stdout.write(`${JSON.stringify(await main())}\n`);
