/**
 * The checks the emulated arm64 host runs on its real KVM. Each check is a
 * name and a function that throws when the check fails and otherwise returns
 * a line saying what it saw. The names are fixed so that the test runner
 * outside can expect every one of them and fail a check that never reported.
 */

import type { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import type { KvmVm } from '../../src/backends/kvm/kvm-vm.js';
import { guestTags } from '../../src/vm/tag-copy.js';
import { TAGS_FROM_GUEST } from '../../src/vm/vm.js';
import { DEFAULT_LAYOUT, describeReport, type GuestReport } from '../../src/vmm/mte-guest-protocol.js';
import { loadMteTestGuest, runnableVcpu, runToCheckpoint, runUntilReport } from '../../src/vmm/mte-guest-vmm.js';
import { TagCorruptingVm, type TagCorruption } from '../tag-corruption.js';
import { expectedTags, forEachGranule } from './mte-guest-pattern.js';
import { transferVmState } from './state-transfer.js';

/** What every check gets: the real KVM, and a directory for snapshot files. */
export interface LabContext {
  readonly factory: KvmVmFactory;
  readonly scratchDirectory: string;
  /** Hands a file to the host side (lab-report.ts FILE lines), which keeps it by `name` for its own tests. */
  readonly handOver: (name: string, bytes: Uint8Array) => void;
}

export interface LabCheck {
  readonly name: string;
  readonly run: (context: LabContext) => Promise<string>;
}

export class LabCheckFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabCheckFailure';
  }
}

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;

/** A granule in the middle of the fill: the one the corruption checks damage. */
export const CORRUPTED_GRANULE = DEFAULT_LAYOUT.ramBase + DEFAULT_LAYOUT.fillOffset + DEFAULT_LAYOUT.fillLength / 2n + 0x130n;

/** A VM with the test guest stopped at its checkpoint. */
export function guestAtCheckpoint(factory: KvmVmFactory): KvmVm {
  const vm = factory.createVm();
  try {
    loadMteTestGuest(vm);
    runToCheckpoint(runnableVcpu(vm));
    return vm;
  } catch (error) {
    vm.close();
    throw error;
  }
}

function checkGuestPattern(vm: KvmVm): string {
  const layout = DEFAULT_LAYOUT;
  const fillStart = layout.ramBase + layout.fillOffset;
  const tags = guestTags(vm, fillStart, Number(layout.fillLength));
  const expected = expectedTags(layout);
  const histogram = new Array<number>(16).fill(0);
  for (let i = 0; i < expected.length; i++) {
    if (tags[i] !== expected[i])
      throw new LabCheckFailure(
        `FROM_GUEST tag of granule ${hex(fillStart + BigInt(i) * 16n)} is ${tags[i]}, the guest stored ${expected[i]}`,
      );
    histogram[tags[i]]++;
  }
  if (histogram.some((count) => count === 0)) throw new LabCheckFailure(`the pattern does not use all 16 tags: ${histogram.join(',')}`);
  const ram = new Uint8Array(Number(layout.fillLength));
  vm.readMemory(fillStart, ram);
  const words = new DataView(ram.buffer);
  forEachGranule(layout, (index, address, pattern) => {
    for (const w of [0, 1] as const) {
      const actual = words.getBigUint64(index * 16 + w * 8, true);
      if (actual !== pattern.words[w])
        throw new LabCheckFailure(
          `RAM word at ${hex(address + BigInt(w * 8))} is ${hex(actual)}, the guest stored ${hex(pattern.words[w])}`,
        );
    }
  });
  return (
    `${expected.length} granules: every tag read back with FROM_GUEST (flags ${TAGS_FROM_GUEST}) ` +
    "and every word through the mapping match the guest's pattern"
  );
}

function expectVerified(vm: KvmVm): string {
  const report = runUntilReport(runnableVcpu(vm));
  if (report.status !== 'verified') throw new LabCheckFailure(`the resumed guest ${describeReport(report)}`);
  return describeReport(report);
}

/** Passes only when the guest named exactly the damaged granule, with its saved and its damaged tag. */
export function corruptionVerdict(report: GuestReport, corruption: TagCorruption): string {
  if (corruption.original === null) throw new LabCheckFailure(`no TO_GUEST copy covered ${hex(corruption.guestAddress)}`);
  if (report.status !== 'tag-mismatch') throw new LabCheckFailure(`one damaged tag went unnoticed: the guest ${describeReport(report)}`);
  if (
    report.address !== corruption.guestAddress ||
    report.expected !== BigInt(corruption.original) ||
    report.actual !== BigInt(corruption.corrupted ?? -1)
  ) {
    throw new LabCheckFailure(
      `the guest ${describeReport(report)}, ` +
        `not the damaged granule ${hex(corruption.guestAddress)} (${corruption.original} -> ${corruption.corrupted})`,
    );
  }
  return `the guest ${describeReport(report)}`;
}

/** Runs `body` with a VM at its checkpoint and closes whatever it opened. */
async function withCheckpointedGuest(factory: KvmVmFactory, body: (vm: KvmVm) => Promise<string> | string): Promise<string> {
  const vm = guestAtCheckpoint(factory);
  try {
    return await body(vm);
  } finally {
    vm.close();
  }
}

export const BACKEND_CHECKS: readonly LabCheck[] = [
  {
    name: 'kvm: the MTE test guest fills its memory and its tags read back with FROM_GUEST',
    run: ({ factory }) => withCheckpointedGuest(factory, checkGuestPattern),
  },
  {
    name: 'kvm: state moved into a new VM (no file) resumes and the guest verifies every tag and word',
    run: ({ factory }) =>
      withCheckpointedGuest(factory, (source) => {
        const target = factory.createVm();
        try {
          transferVmState(source, target);
          source.close();
          return expectVerified(target);
        } finally {
          target.close();
        }
      }),
  },
  {
    name: 'kvm: state moved into a new VM with one tag damaged makes the guest report that granule',
    run: ({ factory }) =>
      withCheckpointedGuest(factory, (source) => {
        const corruption: TagCorruption = { guestAddress: CORRUPTED_GRANULE, original: null, corrupted: null };
        const target = factory.createVm();
        try {
          transferVmState(source, new TagCorruptingVm(target, corruption));
          return corruptionVerdict(runUntilReport(runnableVcpu(target)), corruption);
        } finally {
          target.close();
        }
      }),
  },
];
