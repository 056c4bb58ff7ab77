/**
 * `migrate send --sim` and `migrate receive` keep the guest in scratch files
 * (issue 10): the guest, the stream and the digests are those of the
 * in-memory simulated VM; slots beyond an in-memory slot's limit fit; no file
 * is left behind; and the peak resident memory of both processes, and of
 * `restore FILE` into the simulated VM, does not grow with the guest (no
 * timing assertion: memory only).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { ScratchFilesStorageFactory } from '../src/backends/raw-files/scratch-files.js';
import { MAX_IN_MEMORY_SLOT_BYTES } from '../src/backends/simulated/memory-slot-storage.js';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { streamLayoutOf } from '../src/live/precopy.js';
import { type StateDigest, stateDigest } from '../src/live/state-digest.js';
import { sendMigration } from '../src/live/stream-sink.js';
import { VmErrnoError } from '../src/vm/vm.js';
import { MutatingSimulatedGuest } from '../src/workload/mutating-guest.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';

const CLI = join(resolve(import.meta.dirname, '..'), 'dist/tools/vmsnap.js');
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-migrate-scratch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The stream and digest of `migrate send --sim`'s guest of `sizeMiB`, sent from a VM over `storage` (default: memory). */
async function sendSimulated(
  sizeMiB: number,
  seed: number,
  storage?: ScratchFilesStorageFactory,
): Promise<{ stream: Buffer; state: StateDigest }> {
  const { vm, workload } = createSimulatedGuest({ sizeMiB, seed, pageSize: 4096, storage });
  const ram = workload.regions.find((region) => region.mte)!;
  const output = new PassThrough();
  const pieces: Buffer[] = [];
  output.on('data', (piece: Buffer) => pieces.push(piece));
  const summary = await sendMigration(vm, new MutatingSimulatedGuest(vm, { slot: ram.slot, seed }), output);
  const state = stateDigest(vm, streamLayoutOf(vm), summary.vcpus);
  vm.close();
  storage?.close();
  return { stream: Buffer.concat(pieces), state };
}

describe('the simulated guest over scratch files', () => {
  it('sends the same stream and digests as the in-memory guest', async () => {
    const scratchDir = join(dir, 'library');
    mkdirSync(scratchDir);
    const inMemory = await sendSimulated(16, 5);
    const inFiles = await sendSimulated(16, 5, new ScratchFilesStorageFactory(scratchDir));
    expect(inFiles.state).toEqual(inMemory.state);
    expect(inFiles.stream.equals(inMemory.stream)).toBe(true);
    // The files were unlinked as soon as they were opened.
    expect(readdirSync(scratchDir)).toEqual([]);
  });

  it('holds a slot larger than an in-memory slot can be', () => {
    const size = BigInt(MAX_IN_MEMORY_SLOT_BYTES) + BigInt(GiB);
    const spec = { slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size };
    expect(() => new SimulatedVm({ pageSize: 4096 }).addMemorySlot(spec)).toThrow(VmErrnoError);
    const storage = new ScratchFilesStorageFactory(dir);
    const vm = new SimulatedVm({ pageSize: 4096, storage });
    try {
      vm.addMemorySlot(spec);
      const last = spec.guestAddress + size - 8n;
      vm.writeMemory(last, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
      const back = new Uint8Array(16);
      vm.readMemory(last - 8n, back);
      expect([...back]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    } finally {
      vm.close();
      storage.close();
    }
  });
});

/** A script that runs the CLI (`node peak-rss.mjs -- NAME ARGS...`) and prints `maxrss NAME KiB` on exit. */
function peakRssWrapper(): string {
  const wrapper = join(dir, 'peak-rss.mjs');
  writeFileSync(
    wrapper,
    `const side = process.argv[3];
process.on('exit', () => process.stderr.write('maxrss ' + side + ' ' + process.resourceUsage().maxRSS + '\\n'));
process.argv.splice(2, 2);
await import(${JSON.stringify(CLI)});\n`,
  );
  return wrapper;
}

/** The peak resident memory of `vmsnap restore FILE -q` (into the simulated VM), its scratch files in `scratchDir`. */
function restorePeak(file: string, scratchDir: string): number {
  const run = spawnSync(process.execPath, [peakRssWrapper(), '--', 'restore', 'restore', file, '-q'], {
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, TMPDIR: scratchDir },
  });
  expect(run.status, run.stderr).toBe(0);
  const match = /maxrss restore (\d+)/.exec(run.stderr);
  expect(match, run.stderr).not.toBeNull();
  return Number(match![1]) * 1024;
}

/** A shell pipeline of the CLI whose two processes each print their peak resident memory on exit. */
function pipeline(sendArgs: string, receiveArgs: string, scratchDir: string): { send: number; receive: number; stderr: string } {
  const wrapper = peakRssWrapper();
  const node = JSON.stringify(process.execPath);
  const run = spawnSync(
    'sh',
    ['-c', `${node} ${wrapper} -- send migrate send ${sendArgs} --to - | ${node} ${wrapper} -- receive migrate receive ${receiveArgs}`],
    { encoding: 'utf8', timeout: 600_000, env: { ...process.env, TMPDIR: scratchDir } },
  );
  expect(run.status, run.stderr).toBe(0);
  const peak = (side: string) => {
    const match = new RegExp(`maxrss ${side} (\\d+)`).exec(run.stderr);
    expect(match, run.stderr).not.toBeNull();
    return Number(match![1]) * 1024;
  };
  return { send: peak('send'), receive: peak('receive'), stderr: run.stderr };
}

describe('vmsnap migrate send --sim | receive', () => {
  it('prints the digests of the in-memory guest on both sides and leaves no scratch file', async () => {
    const scratchDir = join(dir, 'cli');
    mkdirSync(scratchDir);
    const expected = await sendSimulated(16, 9);
    const run = pipeline('--sim --size 16MiB --seed 9 --json', `-o ${join(dir, 'cli.vmsnap')} -q`, scratchDir);
    const sent = JSON.parse(/^\{[\s\S]*?^\}$/m.exec(run.stderr)?.[0] ?? run.stderr);
    expect(sent.state).toEqual(expected.state);
    const received = spawnSync(process.execPath, [CLI, 'migrate', 'receive', '--json'], {
      input: expected.stream,
      encoding: 'utf8',
      env: { ...process.env, TMPDIR: scratchDir },
    });
    expect(received.status, received.stderr).toBe(0);
    expect(JSON.parse(received.stdout).state).toEqual(expected.state);
    expect(readdirSync(scratchDir)).toEqual([]);
  });

  it('the same peak for 64 MiB and 256 MiB on each side', () => {
    const scratchDir = join(dir, 'flat');
    mkdirSync(scratchDir);
    const [small, large] = ['64MiB', '256MiB'].map((size) =>
      pipeline(`--sim --size ${size} -q`, `-o ${join(dir, `flat-${size}.vmsnap`)} -q`, scratchDir),
    );
    // A guest held in memory would add 192 MiB to each side; GC timing moves a peak by a few tens of MiB.
    expect(large.send - small.send).toBeLessThan(64 * MiB);
    expect(large.receive - small.receive).toBeLessThan(64 * MiB);
    expect(readdirSync(scratchDir)).toEqual([]);
  });
});

describe('vmsnap restore FILE into the simulated VM', () => {
  it('the same peak for 64 MiB and 256 MiB, and no scratch file left', () => {
    const scratchDir = join(dir, 'restore');
    mkdirSync(scratchDir);
    const [small, large] = ['64MiB', '256MiB'].map((size) => {
      const file = join(dir, `restore-${size}.vmsnap`);
      const saved = spawnSync(process.execPath, [CLI, 'save', '--sim', '--size', size, '-q', '-o', file], { encoding: 'utf8' });
      expect(saved.status, saved.stderr).toBe(0);
      return restorePeak(file, scratchDir);
    });
    expect(large - small).toBeLessThan(64 * MiB);
    expect(readdirSync(scratchDir)).toEqual([]);
  });
});
