/**
 * Live checkpoints and migration on the real KVM (issue 8, items 3 to 5):
 * the MTE test guest fills memory and tags (or, as the mutator, keeps
 * changing them, its commands answered by its own vCPU thread) on its own
 * vCPU thread while pre-copy rounds, driven by the dirty log, copy it; the
 * guest is paused only for the last round. The checkpoint is restored into a new VM (or migrated
 * to another process) and resumed there: the guest finishes its fill if it
 * was paused in the middle, then verifies every granule and word.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import type { KvmVm } from '../../src/backends/kvm/kvm-vm.js';
import { SimulatedVmFactory } from '../../src/backends/simulated/simulated-vm.js';
import { liveCheckpoint } from '../../src/live/live-checkpoint.js';
import type { PrecopyOptions, PrecopySummary } from '../../src/live/precopy.js';
import { sendMigration } from '../../src/live/stream-sink.js';
import { restoreSnapshot } from '../../src/reader/restore.js';
import type { VmFactory } from '../../src/vm/vm.js';
import { KvmLiveGuest } from '../../src/vmm/kvm-live-guest.js';
import {
  describeReport,
  type GuestReport,
  type MteGuestLayout,
  mutatorAutoAnswers,
  mutatorGranuleIndex,
} from '../../src/vmm/mte-guest-protocol.js';
import { loadMteTestGuest, runnableVcpu, runUntilReport, stopMutator } from '../../src/vmm/mte-guest-vmm.js';
import { parseKernelRelease } from '../conformance/kvm-target.js';
import { tagCorruptingFactory } from '../tag-corruption.js';
import { corruptionVerdict, type LabCheck, LabCheckFailure } from './lab-checks.js';
import type { DestinationAnswer } from './migration-destination.js';

const MIB = 1024n * 1024n;
/**
 * A guest whose fill (about 1 MiB a second in the emulated host) usually still runs when round 0 (all of RAM) is
 * copied, and small enough for the lab's time budget. Whether the pause came mid-fill is reported, not assumed.
 */
export const LIVE_LAYOUT: MteGuestLayout = {
  ramBase: 0x4000_0000n,
  ramSize: 8n * MIB,
  fillOffset: 1n * MIB,
  fillLength: 3n * MIB,
  port: 0x0900_0000n,
  seed: 0x2545_f491_4f6c_dd1dn,
};
/** One round while the guest runs, then the pause: most likely in the middle of the fill. */
const LIVE_OPTIONS: PrecopyOptions = { maxRounds: 1 };
/** For the downtime measurement: as many rounds as converge. */
const CONVERGING_OPTIONS: PrecopyOptions = { maxRounds: 6, stopAtPages: 16 };
/** A granule near the start of the fill: written before any pause. */
const DAMAGED_GRANULE = LIVE_LAYOUT.ramBase + LIVE_LAYOUT.fillOffset + 0x130n;

function stagingFactory(factory: KvmVmFactory): VmFactory {
  return new SimulatedVmFactory({ pageSize: factory.pageSize, kernelVersion: parseKernelRelease(release()), adoptRegisters: true });
}

/** A fresh VM with the guest loaded and running on its own thread. */
async function runningGuest(factory: KvmVmFactory): Promise<{ vm: KvmVm; guest: KvmLiveGuest }> {
  const vm = factory.createVm();
  try {
    loadMteTestGuest(vm, LIVE_LAYOUT);
    return { vm, guest: await KvmLiveGuest.start(vm) };
  } catch (error) {
    vm.close();
    throw error;
  }
}

/** Where the guest was when it paused: at its checkpoint (fill done) or still filling, and after how long. */
function pausePoint(guest: KvmLiveGuest): string {
  if (guest.stop?.reason === 'exit') return `paused at its checkpoint (fill done after ${guest.ranMilliseconds.toFixed(0)} ms)`;
  return `paused while still filling, after running ${guest.ranMilliseconds.toFixed(0)} ms`;
}

function rounds(summary: PrecopySummary): string {
  const list = summary.rounds.map((r) => `${r.pages}${r.paused ? ' (paused)' : ''}`).join(', ');
  const mib = (summary.bytes / 2 ** 20).toFixed(1);
  return `${summary.rounds.length} rounds of [${list}] pages, ${mib} MiB, downtime ${summary.downtimeMilliseconds.toFixed(1)} ms`;
}

/** Restores `file` into a new KVM VM and runs the guest to its final verdict (through its checkpoint if it was mid-fill). */
async function resumeToVerdict(file: string, factory: VmFactory): Promise<GuestReport> {
  const { vm } = await restoreSnapshot(file, factory);
  try {
    const vcpu = runnableVcpu(vm);
    let report = runUntilReport(vcpu);
    if (report.status === 'checkpoint') {
      vcpu.completePendingExit();
      report = runUntilReport(vcpu);
    }
    return report;
  } finally {
    vm.close();
  }
}

async function liveCheckpointFile(
  factory: KvmVmFactory,
  file: string,
  options: PrecopyOptions,
): Promise<{ summary: PrecopySummary; where: string }> {
  const { vm, guest } = await runningGuest(factory);
  try {
    const { precopy } = await liveCheckpoint(vm, guest, file, { staging: stagingFactory(factory), precopy: options });
    return { summary: precopy, where: pausePoint(guest) };
  } finally {
    await guest.close();
    vm.close();
  }
}

/** The mutator needs a power of two of fill granules: 2 MiB is 131072, far more than the steps one batch adds after the pause. */
const MUTATOR_LAYOUT: MteGuestLayout = { ...LIVE_LAYOUT, fillLength: 2n * MIB };
/** Steps per command the vCPU thread answers: a pause most likely falls inside a batch. */
const MUTATOR_STEPS_PER_COMMAND = 512n;
/** A bound against a guest that stopped asking, not a measure of speed. */
const MUTATION_START_LIMIT_MS = 120_000;

/** Waits until the mutator has started its second batch: step 0 is done and pre-copy copies a guest that mutates. */
async function untilMutating(guest: KvmLiveGuest): Promise<void> {
  const started = performance.now();
  while (guest.answeredLoads < 2) {
    if (performance.now() - started > MUTATION_START_LIMIT_MS)
      throw new LabCheckFailure(`the mutator asked for ${guest.answeredLoads} commands in ${MUTATION_START_LIMIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A live checkpoint of the mutator mid-mutation; returns the step count at the pause (x19) with the pre-copy summary. */
async function liveMutatorCheckpoint(factory: KvmVmFactory, file: string): Promise<{ summary: PrecopySummary; steps: bigint }> {
  const vm = factory.createVm();
  try {
    loadMteTestGuest(vm, MUTATOR_LAYOUT, 'mutator');
    const guest = await KvmLiveGuest.start(vm, mutatorAutoAnswers(MUTATOR_LAYOUT.port, MUTATOR_STEPS_PER_COMMAND));
    try {
      await untilMutating(guest);
      const { precopy } = await liveCheckpoint(vm, guest, file, { staging: stagingFactory(factory), precopy: { maxRounds: 2 } });
      return { summary: precopy, steps: guest.register(19) };
    } finally {
      await guest.close();
    }
  } finally {
    vm.close();
  }
}

/** Restores a mutator checkpoint and resumes it: it finishes the batch it was in, then is told to verify. */
async function resumeMutatorToVerdict(file: string, factory: VmFactory): Promise<{ report: GuestReport; steps: bigint | null }> {
  const { vm } = await restoreSnapshot(file, factory);
  try {
    const vcpu = runnableVcpu(vm);
    // Paused inside a batch, the guest reports PROGRESS first; paused at its COMMAND load, it takes the 0 and verifies.
    const first = runUntilReport(vcpu, 0n);
    if (first.status !== 'progress') return { report: first, steps: null };
    return { report: stopMutator(vcpu), steps: first.steps };
  } finally {
    vm.close();
  }
}

const DESTINATION = fileURLToPath(new URL('./migration-destination.js', import.meta.url));

/** Migrates a running guest to a destination node process through a pipe; `damage` may alter the bytes on the way. */
async function migrateToProcess(factory: KvmVmFactory, damage?: Transform): Promise<{ answer: DestinationAnswer; detail: string }> {
  const child = spawn(process.execPath, [DESTINATION], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // A destination that stopped reading (it refused the stream) must not leave the source waiting on backpressure.
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      damage?.destroy();
      resolve(code);
    }),
  );
  // A destination that refuses the stream closes its input: the source then sees EPIPE, which is expected here.
  child.stdin.on('error', () => undefined);
  const { vm, guest } = await runningGuest(factory);
  let detail = '';
  try {
    const output = damage ? damage : child.stdin;
    if (damage) damage.pipe(child.stdin);
    const summary = await sendMigration(vm, guest, output, LIVE_OPTIONS).catch((error: Error) => {
      if (!damage) throw error;
      return null;
    });
    detail = summary ? `${pausePoint(guest)}; ${rounds(summary)}; stream ${summary.streamBytes} bytes` : pausePoint(guest);
  } finally {
    await guest.close();
    vm.close();
  }
  const code = await exited;
  const line = stdout.trim().split('\n').pop() ?? '';
  if (!line) throw new LabCheckFailure(`the destination process printed nothing (exit ${code}): ${stderr.trim()}`);
  return { answer: JSON.parse(line) as DestinationAnswer, detail };
}

/** Flips one byte of the stream once `at` bytes have passed. */
function flipByteAt(at: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const copy = Buffer.from(chunk);
      if (seen <= at && at < seen + copy.length) copy[at - seen] ^= 0x04;
      seen += copy.length;
      callback(null, copy);
    },
  });
}

/** The command line as built for the lab (dist/tools/vmsnap.js beside this file's dist/testkit/kvm-lab). */
const CLI = fileURLToPath(new URL('../../tools/vmsnap.js', import.meta.url));

/**
 * `vmsnap migrate send --kvm | vmsnap migrate receive --kvm`, two processes joined by a shell pipe; returns the
 * pipeline's status and each side's --json report (the sender's goes to a file: its standard output is the stream).
 */
function migrateByCommandLine(directory: string): { status: number | null; receiver: string; sender: string; stderr: string } {
  const sent = join(directory, 'migrate-send.json');
  const send = `${process.execPath} ${CLI} migrate send --kvm --fill 2MiB --seed 9 --json --to - 2>${sent}`;
  const receive = `${process.execPath} ${CLI} migrate receive --kvm --json`;
  const run = spawnSync('/bin/busybox', ['sh', '-c', `${send} | ${receive}`], { encoding: 'utf8' });
  const sender = existsSync(sent) ? readFileSync(sent, 'utf8') : '';
  return { status: run.status, receiver: run.stdout, sender, stderr: run.stderr };
}

export const LIVE_CHECKS: readonly LabCheck[] = [
  {
    name: 'live: checkpoint the filling guest (own vCPU thread, pre-copy by the dirty log), restore, resume: verified; bad tag caught',
    run: async ({ factory, scratchDirectory }) => {
      const file = join(scratchDirectory, 'live-precopy.vmsnap');
      const { summary, where } = await liveCheckpointFile(factory, file, LIVE_OPTIONS);
      const report = await resumeToVerdict(file, factory);
      if (report.status !== 'verified') throw new LabCheckFailure(`the resumed guest ${describeReport(report)} (${where})`);
      const damaging = tagCorruptingFactory(factory, DAMAGED_GRANULE);
      const damaged = corruptionVerdict(await resumeToVerdict(file, damaging.factory), damaging.corruption);
      return `${where}; ${rounds(summary)}; resumed in a new VM, the guest ${describeReport(report)}; with one tag damaged, ${damaged}`;
    },
  },
  {
    name: 'live: checkpoint the mutator mid-mutation (its vCPU thread answers its commands), restore, resume: verified; bad tag caught',
    run: async ({ factory, scratchDirectory }) => {
      const file = join(scratchDirectory, 'live-mutator.vmsnap');
      const { summary, steps } = await liveMutatorCheckpoint(factory, file);
      if (steps < MUTATOR_STEPS_PER_COMMAND) throw new LabCheckFailure(`paused after ${steps} steps: not in the middle of mutation`);
      const { report, steps: resumedTo } = await resumeMutatorToVerdict(file, factory);
      if (report.status !== 'verified')
        throw new LabCheckFailure(`the resumed mutator (paused at step ${steps}) ${describeReport(report)}`);
      // The granule of the last step before the pause: the steps left in that batch do not reach it again.
      const index = mutatorGranuleIndex(MUTATOR_LAYOUT, steps - 1n);
      const damaging = tagCorruptingFactory(factory, MUTATOR_LAYOUT.ramBase + MUTATOR_LAYOUT.fillOffset + index * 16n);
      const damaged = corruptionVerdict((await resumeMutatorToVerdict(file, damaging.factory)).report, damaging.corruption);
      // Paused between its PROGRESS stores (at a batch's end), the guest's report carries no step count: say which.
      const went =
        resumedTo === null
          ? `took the command to verify at once and ${describeReport(report)}`
          : `finished the batch it was in${resumedTo > 0n ? ` (step ${resumedTo})` : ''}, then ${describeReport(report)}`;
      return `paused at step ${steps}; ${rounds(summary)}; resumed in a new VM, the guest ${went}; with one tag damaged, ${damaged}`;
    },
  },
  {
    name: 'live: migrate the running guest through a pipe to another process, which restores as data arrives and resumes: verified',
    run: async ({ factory }) => {
      const { answer, detail } = await migrateToProcess(factory);
      if (!answer.resumed) throw new LabCheckFailure(`the destination refused the stream: ${answer.message}`);
      if (answer.status !== 'verified') throw new LabCheckFailure(`the migrated guest ${answer.verdict} (${detail})`);
      return `${detail}; the destination got ${answer.rounds} rounds, ${answer.pages} pages; the guest ${answer.verdict}`;
    },
  },
  {
    name: 'live: vmsnap migrate send --kvm | vmsnap migrate receive --kvm (the command line, two processes): resumed there, verified',
    run: async ({ scratchDirectory }) => {
      const { status, receiver, sender, stderr } = migrateByCommandLine(scratchDirectory);
      if (status !== 0) throw new LabCheckFailure(`the pipeline exited ${status}: ${stderr.trim()} ${sender.trim()}`.slice(0, 2000));
      const received = JSON.parse(receiver) as { guest?: { status?: string }; state?: unknown };
      const sent = JSON.parse(sender) as { state?: unknown; rounds?: unknown[] };
      if (received.guest?.status !== 'verified') throw new LabCheckFailure(`the destination's guest: ${JSON.stringify(received.guest)}`);
      if (JSON.stringify(received.state) !== JSON.stringify(sent.state))
        throw new LabCheckFailure(`state digests differ: sent ${JSON.stringify(sent.state)}, received ${JSON.stringify(received.state)}`);
      return `${sent.rounds?.length ?? '?'} rounds; both sides print the same state digest; the resumed guest verified every tag and word`;
    },
  },
  {
    name: 'live: a migration stream damaged on the way makes the destination resume nothing and say why',
    run: async ({ factory }) => {
      const { answer } = await migrateToProcess(factory, flipByteAt(1024 * 1024 + 77));
      if (answer.resumed) throw new LabCheckFailure(`the destination resumed a damaged stream: the guest ${answer.verdict}`);
      if (!answer.code.startsWith('migration-')) throw new LabCheckFailure(`refused for another reason: ${answer.message}`);
      return `refused, nothing resumed: ${answer.code}: ${answer.message}`;
    },
  },
  {
    name: 'live: downtime of a live checkpoint against stop-and-copy, same guest and dirty rate (rounds, pages and bytes per round)',
    run: async ({ factory, scratchDirectory }) => {
      const lines: string[] = [];
      for (const [label, options] of [
        ['stop-and-copy', { maxRounds: 0 }],
        ['live pre-copy', CONVERGING_OPTIONS],
      ] as const) {
        const file = join(scratchDirectory, `downtime-${label.replace(/\W+/g, '-')}.vmsnap`);
        const { summary, where } = await liveCheckpointFile(factory, file, options);
        const perRound = summary.rounds
          .map((r) => `${r.round}${r.paused ? 'p' : ''}:${r.pages}p/${(r.bytes / 2 ** 20).toFixed(2)}MiB/${r.milliseconds.toFixed(0)}ms`)
          .join(' ');
        lines.push(`${label}: downtime ${summary.downtimeMilliseconds.toFixed(1)} ms; ${where}; rounds ${perRound}`);
      }
      return lines.join(' | ');
    },
  },
];
