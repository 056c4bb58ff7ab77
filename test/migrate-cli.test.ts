/**
 * `vmsnap migrate send|receive` (issue 8, item 4) as a user runs it: two real
 * processes of the built CLI, the source's simulated guest writing data and
 * tags while pre-copy rounds go through a shell pipe, a TCP connection or a
 * Unix socket; the destination restores as the stream arrives, and its digest
 * of the received state equals the one the source computed of what it sent.
 * A damaged, cut or foreign stream is refused with the offset and frame,
 * exit 1, and leaves no output file behind.
 */
import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { streamLayoutOf } from '../src/live/precopy.js';
import { stateDigest } from '../src/live/state-digest.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { vcpuStates } from '../src/writer/vcpu-state.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist/tools/vmsnap.js');
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-migrate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => join(dir, name);
const SOURCE = ['--sim', '--size', '4MiB', '--seed', '5'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `vmsnap ARGS`; `started` resolves once its standard error printed a line matching `ready` (or at once). */
function start(args: string[], ready?: RegExp, options: SpawnOptions = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { ...options, env: { ...process.env, VMSNAP_DEBUG: '' } });
  let stdout = '';
  let stderr = '';
  let announce: (line: string) => void = () => undefined;
  const started = new Promise<string>((resolve) => {
    announce = resolve;
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    const line = ready && stderr.split('\n').find((l) => ready.test(l));
    if (line) announce(line);
  });
  const done = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  if (!ready) announce('');
  return { child, started, done };
}

function vmsnap(args: string[], input?: Buffer): Run & { bytes: Buffer } {
  const run = spawnSync(process.execPath, [CLI, ...args], {
    input,
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, VMSNAP_DEBUG: '' },
  });
  return { code: run.status, stdout: run.stdout.toString(), stderr: run.stderr.toString(), bytes: run.stdout };
}

/** One error line, no stack trace (after a listening destination's address). */
function expectOneLineError(run: Run, pattern: RegExp): void {
  const lines = run.stderr
    .replace(/^listening on .*\n/, '')
    .trim()
    .split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^vmsnap: /);
  expect(lines[0]).toMatch(pattern);
}

/** The digest of a snapshot file's state, computed here from a restore, as the CLI's sides compute theirs. */
async function fileDigest(file: string) {
  const { vm } = await restoreSnapshot(file, new SimulatedVmFactory({ adoptRegisters: true }));
  try {
    return stateDigest(vm, streamLayoutOf(vm), vcpuStates(vm));
  } finally {
    vm.close();
  }
}

function noTemporaries(): void {
  expect(readdirSync(dir).filter((name) => name.includes('.tmp-'))).toEqual([]);
}

let stream: Buffer;

beforeAll(() => {
  const sent = vmsnap(['migrate', 'send', ...SOURCE, '--to', '-', '-q']);
  expect(sent.code, sent.stderr).toBe(0);
  stream = sent.bytes;
});

describe('vmsnap migrate between two processes', () => {
  it('send | receive through a shell pipe: rounds while the guest writes, the last paused; received state = sent state', async () => {
    const run = spawnSync(
      'bash',
      [
        '-c',
        'set -o pipefail; $V migrate send --sim --size 4MiB --seed 5 --to - --json 2> "$D/send.json" | ' +
          '$V migrate receive -o "$D/piped.vmsnap" --threads 0 --json',
      ],
      { encoding: 'utf8', env: { ...process.env, V: `${process.execPath} ${CLI}`, D: dir, VMSNAP_DEBUG: '' } },
    );
    expect(run.status, run.stderr).toBe(0);
    const sent = JSON.parse(readFileSync(at('send.json'), 'utf8'));
    const received = JSON.parse(run.stdout);
    expect(sent.schemaVersion).toBe(1);
    expect(received.schemaVersion).toBe(1);
    expect(sent.source).toMatchObject({ kind: 'simulated', seed: 5, guestBytes: String(4 << 20) });
    // Round 0 is all of RAM and flash; later rounds are what the guest dirtied meanwhile; only the last ran paused.
    expect(sent.rounds[0].pages).toBe(2 * 1024);
    expect(sent.rounds.length).toBeGreaterThan(1);
    expect(sent.rounds.map((round: { paused: boolean }) => round.paused)).toEqual(
      sent.rounds.map((_: unknown, i: number) => i === sent.rounds.length - 1),
    );
    for (const round of sent.rounds.slice(1)) expect(round.pages).toBeLessThan(1024);
    expect(received.rounds).toBe(sent.rounds.length);
    expect(received.pages).toBe(sent.rounds.reduce((sum: number, round: { pages: number }) => sum + round.pages, 0));
    expect(received.streamBytes).toBe(sent.streamBytes);
    expect(received.state).toEqual(sent.state);
    expect(received.state.vcpus).toMatch(/^[0-9a-f]{64}$/);
    // The saved file holds that state too, and is an ordinary, valid snapshot.
    expect(await fileDigest(at('piped.vmsnap'))).toEqual(sent.state);
    const verified = vmsnap(['verify', at('piped.vmsnap')]);
    expect(verified.code, verified.stderr).toBe(0);
    const info = JSON.parse(vmsnap(['info', at('piped.vmsnap'), '--json']).stdout);
    expect(info.annotations['migration.rounds']).toBe(String(sent.rounds.length));
  });

  it('over TCP to a destination listening on port 0 (the chosen port printed), into raw files', async () => {
    const receiver = start(
      ['migrate', 'receive', '--listen', 'tcp:127.0.0.1:0', '--ram-out', at('tcp.ram'), '--tags-out', at('tcp.tags'), '--json'],
      /^listening on tcp:127\.0\.0\.1:\d+$/,
    );
    const port = /:(\d+)$/.exec(await receiver.started)![1];
    expect(Number(port)).toBeGreaterThan(0);
    const sender = start(['migrate', 'send', ...SOURCE, '--to', `tcp:127.0.0.1:${port}`, '--json']);
    const [sent, received] = await Promise.all([sender.done, receiver.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    const sentJson = JSON.parse(sent.stdout);
    const receivedJson = JSON.parse(received.stdout);
    expect(sentJson.destination).toBe(`tcp:127.0.0.1:${port}`);
    // Over a socket the destination answers: accepted, with the digest of what it holds, which the source checked.
    expect(sentJson.answer).toMatchObject({ accepted: true, stateMatches: true, state: sentJson.state });
    expect(receivedJson).toMatchObject({ from: `tcp:127.0.0.1:${port}`, target: 'raw-files', rounds: sentJson.rounds.length });
    // Raw files keep memory and tags, not registers: the registers' digest is of those the stream carried.
    expect(receivedJson.state).toEqual(sentJson.state);
    expect(readFileSync(at('tcp.ram')).length).toBe(8 << 20);
    expect(readFileSync(at('tcp.tags')).length).toBe((8 << 20) / 16);
  });

  it('over a Unix socket, whose path is gone afterwards', async () => {
    const socket = at('migrate.sock');
    const receiver = start(['migrate', 'receive', '--listen', `unix:${socket}`, '--json'], /^listening on unix:/);
    await receiver.started;
    const sender = start(['migrate', 'send', ...SOURCE, '--max-rounds', '0', '--to', `unix:${socket}`, '--json']);
    const [sent, received] = await Promise.all([sender.done, receiver.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    const sentJson = JSON.parse(sent.stdout);
    // Stop-and-copy: one round, paused.
    expect(sentJson.rounds).toHaveLength(1);
    expect(sentJson.rounds[0]).toMatchObject({ round: 0, paused: true, pages: 2048 });
    expect(JSON.parse(received.stdout).state).toEqual(sentJson.state);
    expect(existsSync(socket)).toBe(false);
  });
});

describe('a destination given a damaged, cut or foreign stream resumes nothing and says why', () => {
  it('a byte flipped in the middle: exit 1, the offset and frame named, no output file', () => {
    const damaged = Buffer.from(stream);
    damaged[Math.floor(damaged.length / 2)] ^= 0x10;
    const run = vmsnap(['migrate', 'receive', '-o', at('damaged.vmsnap')], damaged);
    expect(run.code).toBe(1);
    expectOneLineError(run, /migration stream at byte \d+, frame \d+: .*(checksum|frame)/);
    expect(existsSync(at('damaged.vmsnap'))).toBe(false);
    noTemporaries();
  });

  it('a cut stream: exit 1, truncated, and an existing file given with --force stays as it was', () => {
    writeFileSync(at('kept.vmsnap'), 'the file that was here');
    for (const length of [10, Math.floor(stream.length / 3), stream.length - 1]) {
      const run = vmsnap(['migrate', 'receive', '-o', at('kept.vmsnap'), '--force'], stream.subarray(0, length));
      expect(run.code, `cut at ${length}`).toBe(1);
      expectOneLineError(run, /migration stream at byte \d+.*: the stream ended/);
      expect(readFileSync(at('kept.vmsnap'), 'utf8')).toBe('the file that was here');
    }
    const raw = vmsnap(['migrate', 'receive', '--ram-out', at('cut.ram'), '--tags-out', at('cut.tags')], stream.subarray(0, 5000));
    expect(raw.code).toBe(1);
    expect(existsSync(at('cut.ram')) || existsSync(at('cut.tags'))).toBe(false);
    noTemporaries();
  });

  it('damaged on the way over TCP: the destination refuses, answers why, and the source stops and reports it', async () => {
    const receiver = start(['migrate', 'receive', '--listen', 'tcp:127.0.0.1:0', '-o', at('tcp-damaged.vmsnap')], /^listening on /);
    const port = Number(/:(\d+)$/.exec(await receiver.started)![1]);
    // A relay that flips one byte 3 MiB into the stream and carries the answer back untouched.
    let seen = 0;
    const flipAt = 3 * 1024 * 1024 + 77;
    const relay = createServer({ allowHalfOpen: true }, (client) => {
      const upstream = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      const flip = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          const copy = Buffer.from(chunk);
          if (seen <= flipAt && flipAt < seen + copy.length) copy[flipAt - seen] ^= 0x04;
          seen += copy.length;
          callback(null, copy);
        },
      });
      for (const end of [client, upstream, flip]) end.on('error', () => undefined);
      client.pipe(flip).pipe(upstream);
      upstream.pipe(client);
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const relayPort = (relay.address() as { port: number }).port;
    try {
      const sender = start(['migrate', 'send', ...SOURCE, '--to', `tcp:127.0.0.1:${relayPort}`]);
      const [sent, received] = await Promise.all([sender.done, receiver.done]);
      expect(received.code).toBe(1);
      expectOneLineError(received, /migration stream at byte \d+, frame \d+: PAGES frame checksum/);
      expect(sent.code).toBe(3);
      expect(sent.stderr).toMatch(
        /vmsnap: the destination refused the stream: migration stream at byte \d+, frame \d+: .*\(migration-checksum\)/,
      );
      expect(existsSync(at('tcp-damaged.vmsnap'))).toBe(false);
      noTemporaries();
    } finally {
      relay.close();
    }
  });

  it('a destination that cannot hold the tags refuses over the socket, and the source says why', async () => {
    const receiver = start(['migrate', 'receive', '--listen', 'tcp:127.0.0.1:0', '--ram-out', at('untagged.ram')], /^listening on /);
    const port = /:(\d+)$/.exec(await receiver.started)![1];
    const sender = start(['migrate', 'send', ...SOURCE, '--to', `tcp:127.0.0.1:${port}`]);
    const [sent, received] = await Promise.all([sender.done, receiver.done]);
    expect(received.code).toBe(2);
    expectOneLineError(received, /give --tags-out FILE/);
    expect(sent.code).toBe(3);
    expect(sent.stderr).toMatch(/the destination refused the stream: the stream carries MTE tags/);
    expect(existsSync(at('untagged.ram'))).toBe(false);
  });

  it('the whole stream, from a file, is received', () => {
    const run = vmsnap(['migrate', 'receive', '--json'], stream);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).target).toBe('simulated');
  });

  it('bytes that are no migration stream, over TCP: exit 1, refused on the header alone, the answer says why', async () => {
    const receiver = start(['migrate', 'receive', '--listen', 'tcp:127.0.0.1:0', '-o', at('foreign.vmsnap')], /^listening on /);
    const port = Number(/:(\d+)$/.exec(await receiver.started)![1]);
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    // The connection stays open: the destination must refuse on the header alone, and answer before it closes.
    socket.write(Buffer.from('SNAPSHOT and then some more bytes'));
    let answer = '';
    await new Promise<void>((resolve) =>
      socket.on('data', (chunk: Buffer) => {
        answer += chunk.toString();
        if (answer.includes('\n')) resolve();
      }),
    );
    socket.destroy();
    expect(JSON.parse(answer)).toMatchObject({ accepted: false, code: 'migration-bad-header' });
    const run = await receiver.done;
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/vmsnap: migration stream at byte 0: not a vmsnap migration stream/);
    expect(existsSync(at('foreign.vmsnap'))).toBe(false);
  });
});

describe('vmsnap migrate usage', () => {
  it('has help with examples for both halves', () => {
    for (const half of ['send', 'receive']) {
      const help = vmsnap(['migrate', half, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/Examples:\n {2}\$ vmsnap migrate/);
      expect(help.stdout).toContain('Exit codes:');
    }
  });

  it('refuses bad arguments with exit 2 before anything starts', () => {
    expectOneLineError(vmsnap(['migrate', 'send', '--to', '-']), /choose one source/);
    expectOneLineError(vmsnap(['migrate', 'send', '--sim', '--to', 'ftp:host']), /--to: "ftp:host" is not -, tcp:HOST:PORT or unix:PATH/);
    expectOneLineError(vmsnap(['migrate', 'send', '--sim', '--to', 'tcp:127.0.0.1:0']), /needs its port/);
    expectOneLineError(vmsnap(['migrate', 'receive', '--tags-out', at('x.tags')], Buffer.alloc(0)), /--tags-out needs --ram-out/);
    expectOneLineError(vmsnap(['migrate', 'receive', '-o', at('a'), '--kvm'], Buffer.alloc(0)), /choose one destination/);
    writeFileSync(at('exists.vmsnap'), 'x');
    const exists = vmsnap(['migrate', 'receive', '-o', at('exists.vmsnap')], stream);
    expect(exists.code).toBe(2);
    expectOneLineError(exists, /exists/);
  });

  // On a host with KVM these would run a guest; there the lab runs the KVM migration instead.
  it.skipIf(existsSync('/dev/kvm'))('--kvm on a host without KVM: exit 3, one line saying what it needs, on either side', () => {
    for (const args of [
      ['migrate', 'receive', '--kvm'],
      ['migrate', 'send', '--kvm', '--to', '-'],
    ]) {
      const run = vmsnap(args, Buffer.alloc(0));
      expect(run.code).toBe(3);
      expectOneLineError(run, /KVM is not usable here: .*needs an arm64 host with KVM and MTE/);
    }
  });

  it('a source with nobody listening: exit 3, one line', () => {
    const run = vmsnap(['migrate', 'send', ...SOURCE, '--to', `unix:${at('nobody.sock')}`]);
    expect(run.code).toBe(3);
    expectOneLineError(run, /nothing listens there/);
  });
});
