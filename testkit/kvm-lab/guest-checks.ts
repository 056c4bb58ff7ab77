/**
 * Lab checks of what the MTE test guest does with its own MMU on the real
 * KVM: tag checking (a deliberately mismatched load after a restore must be
 * a synchronous tag check fault, reported with ESR and FAR), the VA region it
 * maps through TTBR1 (its bytes and tags sit at the IPAs its tables give),
 * and the mutator (paused mid-mutation, saved, restored into a new VM,
 * resumed: every granule and word verified; one damaged tag caught).
 */

import { join } from 'node:path';
import type { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import type { KvmVcpu } from '../../src/backends/kvm/kvm-vcpu.js';
import type { KvmVm } from '../../src/backends/kvm/kvm-vm.js';
import { restoreSnapshot } from '../../src/reader/restore.js';
import { guestTags } from '../../src/vm/tag-copy.js';
import type { Vm } from '../../src/vm/vm.js';
import { checkpointToSnapshot } from '../../src/vmm/live-checkpoint.js';
import {
  DEFAULT_LAYOUT,
  DFSC_SYNC_TAG_CHECK,
  describeReport,
  type GuestReport,
  isSyncTagCheckFault,
  type MteGuestLayout,
  mutatorGranuleIndex,
  VA_REGION,
  vaRegionGranule,
  vaRegionIpa,
  vaRegionTranslate,
} from '../../src/vmm/mte-guest-protocol.js';
import { loadMteTestGuest, mutate, runnableVcpu, runToFirstPause, runUntilReport, stopMutator } from '../../src/vmm/mte-guest-vmm.js';
import { MTE_TEST_GUEST_IMAGE } from '../../src/vmm/mte-test-image.js';
import { damageTag } from '../../src/vmm/tag-damage.js';
import { saveSnapshot } from '../../src/writer/save.js';
import { guestAtCheckpoint, type LabCheck, LabCheckFailure } from './lab-checks.js';
import { expectedTags, forEachMutatedGranule, mutatedGranule } from './mte-guest-pattern.js';

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;
const FAR_KNOWN_BITS = (1n << 60n) - 1n;
/** Mutation steps per run between pauses: three runs stay below the fill's 262144 granules, so no granule changes twice. */
const MUTATION_RUN = 50_000n;

/**
 * Runs a guest that just reported VERIFIED once more: it loads through a
 * pointer to the first fill granule whose tag is that granule's tag + 1.
 */
function expectTagCheckFault(vcpu: KvmVcpu, layout: MteGuestLayout, allocationTag: number): string {
  const report = runUntilReport(vcpu);
  if (report.status !== 'exception') throw new LabCheckFailure(`the mismatched load did not fault: the guest ${describeReport(report)}`);
  const dfsc = Number(report.esr & 0x3fn);
  if (!isSyncTagCheckFault(report.esr))
    throw new LabCheckFailure(
      `ESR_EL1 ${hex(report.esr)} (EC ${hex((report.esr >> 26n) & 0x3fn)}, DFSC ${hex(dfsc)}) is not a synchronous tag check fault ` +
        `(EC 0x25, DFSC ${hex(DFSC_SYNC_TAG_CHECK)})`,
    );
  const fillStart = layout.ramBase + layout.fillOffset;
  const pointer = fillStart | (BigInt((allocationTag + 1) & 0xf) << 56n);
  // FAR_EL1 bits 63:60 are UNKNOWN after a tag check fault; 59:56 hold the logical tag.
  if ((report.far & FAR_KNOWN_BITS) !== pointer)
    throw new LabCheckFailure(`FAR_EL1 ${hex(report.far)} is not the mismatched pointer ${hex(pointer)}`);
  if (report.elr < layout.ramBase || report.elr >= layout.ramBase + BigInt(MTE_TEST_GUEST_IMAGE.length))
    throw new LabCheckFailure(`ELR_EL1 ${hex(report.elr)} is outside the guest's code`);
  const tags = `pointer tag ${(allocationTag + 1) & 0xf}, memory tag ${allocationTag}`;
  return `ESR_EL1 ${hex(report.esr)} (DFSC ${hex(dfsc)}), FAR_EL1 ${hex(report.far)} (${tags})`;
}

function expectReport(report: GuestReport, status: GuestReport['status'], what: string): void {
  if (report.status !== status) throw new LabCheckFailure(`${what}: the guest ${describeReport(report)}`);
}

/** Checks every fill granule of a paused mutator guest from the host: FROM_GUEST tags and RAM words against seed and step count. */
function checkMutatedState(vm: Vm, layout: MteGuestLayout, steps: bigint): void {
  const fillStart = layout.ramBase + layout.fillOffset;
  const tags = guestTags(vm, fillStart, Number(layout.fillLength));
  const ram = new Uint8Array(Number(layout.fillLength));
  vm.readMemory(fillStart, ram);
  const words = new DataView(ram.buffer);
  forEachMutatedGranule(layout, steps, (index, address, pattern) => {
    if (tags[index] !== pattern.tag)
      throw new LabCheckFailure(`after ${steps} steps the tag at ${hex(address)} is ${tags[index]}, expected ${pattern.tag}`);
    for (const w of [0, 1] as const) {
      const actual = words.getBigUint64(index * 16 + w * 8, true);
      if (actual !== pattern.words[w])
        throw new LabCheckFailure(
          `after ${steps} steps the word at ${hex(address + BigInt(w * 8))} is ${hex(actual)}, expected ${hex(pattern.words[w])}`,
        );
    }
  });
}

/** A mutator guest that ran two runs of steps, paused, was checked from the host and saved to `file`; returns the step count. */
async function mutateAndSave(factory: KvmVmFactory, layout: MteGuestLayout, file: string): Promise<bigint> {
  const vm = factory.createVm();
  try {
    loadMteTestGuest(vm, layout, 'mutator');
    const vcpu = runnableVcpu(vm);
    runToFirstPause(vcpu);
    mutate(vcpu, MUTATION_RUN);
    const steps = mutate(vcpu, MUTATION_RUN);
    if (steps !== 2n * MUTATION_RUN) throw new LabCheckFailure(`the guest reports ${steps} steps after two runs of ${MUTATION_RUN}`);
    // The pause point: the PROGRESS store completes, the vCPU waits at its COMMAND load.
    vcpu.completePendingExit();
    checkMutatedState(vm, layout, steps);
    await saveSnapshot(vm, file, { annotations: { 'kvm.guest': `vmsnap MTE test guest, mutator paused after ${steps} steps` } });
    return steps;
  } finally {
    vm.close();
  }
}

export const GUEST_CHECKS: readonly LabCheck[] = [
  {
    name: 'guest: after a restore, a load through a pointer with the wrong tag is a synchronous tag check fault (ESR, FAR reported)',
    run: async ({ factory, scratchDirectory }) => {
      const file = join(scratchDirectory, 'fault.vmsnap');
      await checkpointToSnapshot(factory, file);
      const { vm } = await restoreSnapshot(file, factory);
      try {
        const vcpu = runnableVcpu(vm);
        expectReport(runUntilReport(vcpu), 'verified', 'after the restore');
        return `verified, then ${expectTagCheckFault(vcpu, DEFAULT_LAYOUT, expectedTags(DEFAULT_LAYOUT)[0])}`;
      } finally {
        vm.close();
      }
    },
  },
  {
    name: 'guest: the VA region mapped through TTBR1 (a 2 MiB block, 512 pages reversed) holds its words and tags where its tables map it',
    run: async ({ factory }) => {
      const vm: KvmVm = guestAtCheckpoint(factory);
      try {
        const layout = DEFAULT_LAYOUT;
        const base = vaRegionIpa(layout);
        const tags = guestTags(vm, base, Number(VA_REGION.size));
        const ram = new Uint8Array(Number(VA_REGION.size));
        vm.readMemory(base, ram);
        const words = new DataView(ram.buffer);
        for (let va = VA_REGION.va; va < VA_REGION.va + VA_REGION.size; va += 16n) {
          const offset = Number(vaRegionTranslate(layout, va) - base);
          const expected = vaRegionGranule(va);
          if (tags[offset / 16] !== expected.tag)
            throw new LabCheckFailure(
              `VA ${hex(va)} (IPA ${hex(base + BigInt(offset))}): tag ${tags[offset / 16]}, expected ${expected.tag}`,
            );
          for (const w of [0, 1] as const)
            if (words.getBigUint64(offset + w * 8, true) !== expected.words[w])
              throw new LabCheckFailure(`VA ${hex(va + BigInt(w * 8))} (IPA ${hex(base + BigInt(offset + w * 8))}): wrong word`);
        }
        return `${VA_REGION.size / 16n} granules written through VA ${hex(VA_REGION.va)} found at IPA ${hex(base)}+ as the tables map them`;
      } finally {
        vm.close();
      }
    },
  },
  {
    name: 'guest: mutator paused mid-mutation, saved, restored into a new VM and resumed: it goes on, then verifies every granule and word',
    run: async ({ factory, scratchDirectory }) => {
      const layout = DEFAULT_LAYOUT;
      const file = join(scratchDirectory, 'mutator.vmsnap');
      const saved = await mutateAndSave(factory, layout, file);
      const { vm } = await restoreSnapshot(file, factory);
      try {
        const vcpu = runnableVcpu(vm);
        const steps = mutate(vcpu, MUTATION_RUN);
        if (steps !== saved + MUTATION_RUN)
          throw new LabCheckFailure(`the resumed guest reports ${steps} steps, expected ${saved + MUTATION_RUN}`);
        checkMutatedState(vm, layout, steps);
        expectReport(stopMutator(vcpu), 'verified', `after ${steps} steps`);
        const fault = expectTagCheckFault(vcpu, layout, mutatedGranule(layout, steps, 0).tag);
        const what = `${saved} steps before the save and ${MUTATION_RUN} after the restore`;
        return `${what}, checked from the host and by the guest; then ${fault}`;
      } finally {
        vm.close();
      }
    },
  },
  {
    name: 'guest: mutator restored with the tag of a mutated granule damaged: the resumed guest reports that granule',
    run: async ({ factory, scratchDirectory }) => {
      const layout = DEFAULT_LAYOUT;
      const file = join(scratchDirectory, 'mutator-damaged.vmsnap');
      const saved = await mutateAndSave(factory, layout, file);
      const { vm } = await restoreSnapshot(file, factory);
      try {
        // The granule of the last step before the pause: no later step touches it again.
        const lastStep = saved - 1n;
        const address = layout.ramBase + layout.fillOffset + mutatorGranuleIndex(layout, lastStep) * 16n;
        const damage = damageTag(vm, address);
        const expected = mutatedGranule(layout, saved, Number(mutatorGranuleIndex(layout, lastStep))).tag;
        if (damage.original !== expected)
          throw new LabCheckFailure(`the restored tag at ${hex(address)} is ${damage.original}, step ${lastStep} stored ${expected}`);
        const vcpu = runnableVcpu(vm);
        mutate(vcpu, MUTATION_RUN);
        const report = stopMutator(vcpu);
        if (
          report.status !== 'tag-mismatch' ||
          report.address !== address ||
          report.expected !== BigInt(damage.original) ||
          report.actual !== BigInt(damage.damaged)
        )
          throw new LabCheckFailure(
            `damaged ${hex(address)} (${damage.original} -> ${damage.damaged}), but the guest ${describeReport(report)}`,
          );
        return `damaged ${hex(address)} (${damage.original} -> ${damage.damaged}); the guest ${describeReport(report)}`;
      } finally {
        vm.close();
      }
    },
  },
];
