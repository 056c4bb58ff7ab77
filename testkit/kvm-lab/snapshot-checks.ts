/**
 * The live checkpoint and restore through vmsnap files on the real KVM: the
 * round trip, the same with one tag damaged on its way back, and a detour
 * through the simulated backend (KVM -> file -> simulated VM -> file -> KVM).
 */

import { release } from 'node:os';
import { join } from 'node:path';
import { SimulatedVmFactory } from '../../src/backends/simulated/simulated-vm.js';
import { restoreSnapshot } from '../../src/reader/restore.js';
import { guestTags } from '../../src/vm/tag-copy.js';
import { checkpointToSnapshot, resumeFromSnapshot } from '../../src/vmm/live-checkpoint.js';
import { DEFAULT_LAYOUT, describeReport } from '../../src/vmm/mte-guest-protocol.js';
import { saveSnapshot } from '../../src/writer/save.js';
import { parseKernelRelease } from '../conformance/kvm-target.js';
import { tagCorruptingFactory } from '../tag-corruption.js';
import { CORRUPTED_GRANULE, corruptionVerdict, type LabCheck, LabCheckFailure } from './lab-checks.js';
import { expectedTags } from './mte-guest-pattern.js';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

export const SNAPSHOT_CHECKS: readonly LabCheck[] = [
  {
    name: 'snapshot: checkpoint a running KVM guest, save, destroy, restore into a new VM, resume: every tag and word verified',
    run: async ({ factory, scratchDirectory }) => {
      const file = join(scratchDirectory, 'live.vmsnap');
      const saved = await checkpointToSnapshot(factory, file);
      const { report, restore } = await resumeFromSnapshot(file, factory);
      if (report.status !== 'verified') throw new LabCheckFailure(`the resumed guest ${describeReport(report)}`);
      return (
        `saved ${saved.fileBytes} bytes (${saved.tagBytes} of tags, ${saved.vcpus} vCPU) in ${seconds(saved.durationMs)}; ` +
        `restored with ${restore.tagCalls} TO_GUEST calls in ${seconds(restore.durationMs)}; ` +
        `the guest ${describeReport(report)}`
      );
    },
  },
  {
    name: 'snapshot: one tag damaged between save and restore makes the resumed guest report that granule',
    run: async ({ factory, scratchDirectory }) => {
      const file = join(scratchDirectory, 'damaged.vmsnap');
      await checkpointToSnapshot(factory, file);
      const damaging = tagCorruptingFactory(factory, CORRUPTED_GRANULE);
      const { report } = await resumeFromSnapshot(file, damaging.factory);
      return corruptionVerdict(report, damaging.corruption);
    },
  },
  {
    name: "snapshot: KVM guest -> file -> simulated VM (the KVM CPU's register list) -> file -> KVM: resumes and verifies",
    run: async ({ factory, scratchDirectory }) => {
      const fromKvm = join(scratchDirectory, 'from-kvm.vmsnap');
      const fromSim = join(scratchDirectory, 'from-sim.vmsnap');
      await checkpointToSnapshot(factory, fromKvm);
      const simulated = new SimulatedVmFactory({
        pageSize: factory.pageSize,
        kernelVersion: parseKernelRelease(release()),
        adoptRegisters: true,
      });
      const { vm } = await restoreSnapshot(fromKvm, simulated);
      try {
        const fillStart = DEFAULT_LAYOUT.ramBase + DEFAULT_LAYOUT.fillOffset;
        const tags = guestTags(vm, fillStart, Number(DEFAULT_LAYOUT.fillLength));
        const expected = expectedTags(DEFAULT_LAYOUT);
        const wrong = expected.findIndex((tag, i) => tags[i] !== tag);
        if (wrong >= 0)
          throw new LabCheckFailure(
            `the simulated VM holds tag ${tags[wrong]} at 0x${(fillStart + BigInt(wrong) * 16n).toString(16)}, ` +
              `the guest stored ${expected[wrong]}`,
          );
        await saveSnapshot(vm, fromSim);
      } finally {
        vm.close();
      }
      const { report } = await resumeFromSnapshot(fromSim, factory);
      if (report.status !== 'verified')
        throw new LabCheckFailure(`after the detour through the simulated VM the guest ${describeReport(report)}`);
      return `the simulated VM held every tag of the fill; back on KVM the guest ${describeReport(report)}`;
    },
  },
];
