/**
 * Live checkpoints and migration on the simulator (issue 8, items 3 and 4,
 * without KVM): pre-copy rounds driven by the dirty log while a simulated
 * guest keeps writing data and tags, a migration stream restored as it
 * arrives, and streams that are damaged or cut resuming nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { SimulatedVm, SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { liveCheckpoint } from '../src/live/live-checkpoint.js';
import { MigrationStreamError } from '../src/live/migration-frames.js';
import { receiveMigration } from '../src/live/migration-receiver.js';
import { type PrecopyOptions, precopy } from '../src/live/precopy.js';
import { StreamSink, sendMigration } from '../src/live/stream-sink.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { compareVms } from '../src/validate/compare.js';
import { writeGuestTags } from '../src/vm/tag-copy.js';
import { MutatingSimulatedGuest } from '../src/workload/mutating-guest.js';

const PAGE = 4096;
const RAM_PAGES = 256;
const work = mkdtempSync(join(tmpdir(), 'vmsnap-live-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A running guest: 1 MiB of RAM with data and tags everywhere, a read-only slot, one vCPU with a PC. */
function sourceVm(): { vm: SimulatedVm; guest: MutatingSimulatedGuest } {
  const vm = new SimulatedVm({ pageSize: PAGE });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: BigInt(RAM_PAGES * PAGE) });
  vm.addMemorySlot({ slot: 1, name: 'flash', guestAddress: 0x1_0000n, size: BigInt(4 * PAGE), readOnly: true });
  const memory = new Uint8Array(RAM_PAGES * PAGE).map((_, i) => (i * 7 + (i >> 12)) & 0xff);
  vm.writeMemory(0x4000_0000n, memory);
  vm.writeMemory(0x1_0000n, new Uint8Array(4 * PAGE).fill(0x5a));
  writeGuestTags(
    vm,
    0x4000_0000n,
    new Uint8Array((RAM_PAGES * PAGE) / 16).map((_, i) => (i * 5) & 0x0f),
  );
  const vcpu = vm.createVcpu(0);
  const pc = vcpu.registerIds().find((id) => id === 0x6030_0000_0010_0040n);
  if (pc !== undefined) vcpu.setRegister(pc, Uint8Array.of(0, 0x10, 0, 0x40, 0, 0, 0, 0));
  return { vm, guest: new MutatingSimulatedGuest(vm, { slot: 0, seed: 7 }) };
}

const restoringFactory = new SimulatedVmFactory({ adoptRegisters: true });

async function migrate(options: PrecopyOptions) {
  const { vm, guest } = sourceVm();
  const pipe = new PassThrough({ highWaterMark: 64 * 1024 });
  const [sent, received] = await Promise.all([sendMigration(vm, guest, pipe, options), receiveMigration(pipe, restoringFactory)]);
  return { vm, guest, sent, received };
}

/** The bytes of a whole migration stream of a fresh source, for damaging. */
async function streamBytes(): Promise<Buffer> {
  const { vm, guest } = sourceVm();
  const pipe = new PassThrough();
  const chunks: Buffer[] = [];
  pipe.on('data', (chunk: Buffer) => chunks.push(chunk));
  await sendMigration(vm, guest, pipe, { maxRounds: 4, framePages: 16 });
  return Buffer.concat(chunks);
}

describe('pre-copy against a guest that keeps writing', () => {
  it('migrates through a pipe: rounds shrink, only the last runs paused, the destination equals the paused source', async () => {
    const { vm, guest, sent, received } = await migrate({ maxRounds: 6, stopAtPages: 4, framePages: 16 });
    expect(guest.isPaused).toBe(true);
    expect(guest.slices).toBeGreaterThan(RAM_PAGES / 16);
    const rounds = sent.rounds;
    expect(rounds[0].pages).toBe(RAM_PAGES + 4);
    expect(rounds.length).toBeGreaterThan(1);
    expect(rounds.filter((round) => round.paused).map((round) => round.round)).toEqual([rounds.length - 1]);
    // Rounds after the first copy only what the guest wrote: the hot pages and a few others, far less than all.
    for (const round of rounds.slice(1)) expect(round.pages).toBeLessThan(RAM_PAGES / 4);
    expect(rounds[rounds.length - 1].pages).toBeGreaterThanOrEqual(1);
    expect(received.rounds).toBe(rounds.length);
    expect(received.pages).toBe(rounds.reduce((sum, round) => sum + round.pages, 0));
    expect(received.bytes).toBe(sent.streamBytes);
    // The registers as sent at the pause are the registers received.
    const hexOf = (vcpus: typeof sent.vcpus) =>
      vcpus.map((vcpu) => ({ id: vcpu.id, registers: vcpu.registers.map((r) => `${r.id}=${Buffer.from(r.value).toString('hex')}`) }));
    expect(hexOf(received.vcpus)).toEqual(hexOf(sent.vcpus));
    expect(sent.vcpus.map((vcpu) => vcpu.id)).toEqual([0]);
    const comparison = compareVms(vm, received.vm);
    expect(comparison.differences).toEqual([]);
    expect(comparison.granulesCompared).toBe((RAM_PAGES * PAGE) / 16);
    expect(vm.memorySlots().every((slot) => !slot.dirtyLogging)).toBe(true);
  });

  it('stop-and-copy (no live round) pauses first and copies everything in one paused round', async () => {
    const { vm, guest, sent, received } = await migrate({ maxRounds: 0 });
    expect(guest.slices).toBe(0);
    expect(sent.rounds).toHaveLength(1);
    expect(sent.rounds[0]).toMatchObject({ round: 0, paused: true, pages: RAM_PAGES + 4 });
    expect(compareVms(vm, received.vm).equal).toBe(true);
  });

  it('without the dirty log a live copy would be wrong: the log is what makes it right', async () => {
    const { vm, guest } = sourceVm();
    // A sink that drops every round after the first: what pre-copy would send if it ignored the log.
    const staged = restoringFactory.createVm({ pageSize: PAGE });
    const { TargetApplier } = await import('../src/live/target-applier.js');
    const applier = new TargetApplier({ backend: 'simulated', createVm: () => staged });
    await precopy(vm, guest, {
      layout: (layout) => applier.layout(layout),
      pages: (frame) => (frame.round === 0 ? applier.pages(frame) : undefined),
      endRound: () => undefined,
      finish: (vcpus) => void applier.finish(vcpus),
    });
    const comparison = compareVms(vm, staged);
    expect(comparison.equal).toBe(false);
    expect(comparison.differences.some((difference) => difference.kind === 'tag')).toBe(true);
  });

  it('a live checkpoint saves one file that restores to the paused state, granule for granule', async () => {
    const { vm, guest } = sourceVm();
    const file = join(work, 'live.vmsnap');
    const summary = await liveCheckpoint(vm, guest, file, { staging: restoringFactory, precopy: { maxRounds: 5 } });
    expect(summary.precopy.rounds.length).toBeGreaterThan(1);
    const { vm: restored } = await restoreSnapshot(file, restoringFactory);
    const comparison = compareVms(vm, restored);
    expect(comparison.differences).toEqual([]);
    expect(comparison.granulesCompared).toBe((RAM_PAGES * PAGE) / 16);
  });

  it('re-reading every tag at the pause (for a kernel that would not log tag stores) copies every tagged page paused', async () => {
    const { vm, guest } = sourceVm();
    const frames: number[] = [];
    const sink = new StreamSink(new PassThrough().resume());
    const summary = await precopy(
      vm,
      guest,
      { ...bind(sink), pages: (frame) => void frames.push(frame.round) },
      {
        maxRounds: 3,
        rereadTagsAtPause: true,
      },
    );
    const last = summary.rounds[summary.rounds.length - 1];
    expect(last.paused).toBe(true);
    expect(last.pages).toBeGreaterThanOrEqual(RAM_PAGES);
  });
});

function bind(sink: StreamSink) {
  return {
    layout: sink.layout.bind(sink),
    pages: sink.pages.bind(sink),
    endRound: sink.endRound.bind(sink),
    finish: sink.finish.bind(sink),
  };
}

describe('a damaged or cut migration stream resumes nothing', () => {
  /** Receives `bytes` in small chunks; returns the error and whether any VM made was left open with vCPUs. */
  async function receiveBroken(bytes: Uint8Array): Promise<{ error: unknown; vcpusCreated: number; closed: boolean }> {
    const made: SimulatedVm[] = [];
    const factory = {
      backend: 'simulated',
      createVm: (requirements?: { pageSize: number }) => {
        const vm = restoringFactory.createVm(requirements);
        made.push(vm);
        return vm;
      },
    };
    const chunks = [];
    for (let i = 0; i < bytes.length; i += 1000) chunks.push(bytes.subarray(i, i + 1000));
    let error: unknown = null;
    try {
      await receiveMigration(Readable.from(chunks), factory);
    } catch (caught) {
      error = caught;
    }
    const vm = made[0];
    let closed = true;
    if (vm) {
      try {
        vm.memorySlots();
        vm.readMemory(0x4000_0000n, new Uint8Array(1));
        closed = false;
      } catch {
        closed = true;
      }
    }
    return { error, vcpusCreated: vm ? vm.vcpus().length : 0, closed };
  }

  it('a flipped byte in the middle fails its frame checksum', async () => {
    const bytes = Buffer.from(await streamBytes());
    bytes[Math.floor(bytes.length / 2)] ^= 0x10;
    const { error, vcpusCreated, closed } = await receiveBroken(bytes);
    expect(error).toBeInstanceOf(MigrationStreamError);
    expect((error as MigrationStreamError).code).toMatch(/migration-(checksum|bad-frame)/);
    expect((error as MigrationStreamError).kind).toBe('invalid-input');
    // The frame it arose in: past the LAYOUT frame (0), in the middle of the PAGES frames.
    expect((error as MigrationStreamError).frame).toBeGreaterThan(0);
    expect((error as Error).message).toMatch(/^migration stream at byte \d+, frame \d+: /);
    expect(vcpusCreated).toBe(0);
    expect(closed).toBe(true);
  });

  it('a stream cut anywhere, frame boundaries included, is truncated and names where', async () => {
    const bytes = await streamBytes();
    for (const cut of [0, 10, 16, 20, 5000, Math.floor(bytes.length / 3), bytes.length - 30, bytes.length - 1]) {
      const { error, vcpusCreated } = await receiveBroken(bytes.subarray(0, cut));
      expect((error as MigrationStreamError).code, `cut at ${cut}`).toBe('migration-truncated');
      expect((error as Error).message).toMatch(/migration stream at byte \d+/);
      expect(vcpusCreated).toBe(0);
    }
  });

  it('a whole frame dropped is caught by the END counts; garbage after END and a foreign stream are refused', async () => {
    const bytes = await streamBytes();
    // Drop the first PAGES frame: after the 16-byte header and the LAYOUT frame.
    const layoutLength = bytes.readUInt32LE(16 + 4);
    const pagesAt = 16 + 8 + layoutLength + 8;
    const pagesLength = bytes.readUInt32LE(pagesAt + 4);
    const dropped = Buffer.concat([bytes.subarray(0, pagesAt), bytes.subarray(pagesAt + 8 + pagesLength + 8)]);
    expect(((await receiveBroken(dropped)).error as MigrationStreamError).code).toBe('migration-truncated');
    const extra = Buffer.concat([bytes, Buffer.from('more')]);
    expect(((await receiveBroken(extra)).error as MigrationStreamError).code).toBe('migration-bad-frame');
    const foreign = Buffer.from(bytes);
    foreign.write('NOTVMSNP', 0, 'ascii');
    expect(((await receiveBroken(foreign)).error as MigrationStreamError).code).toBe('migration-bad-header');
  });

  it('the whole stream, chunked the same way, restores', async () => {
    const { error, vcpusCreated } = await receiveBroken(await streamBytes());
    expect(error).toBe(null);
    expect(vcpusCreated).toBe(1);
  });
});
