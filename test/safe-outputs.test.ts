/**
 * Nothing lost (issue 9): every command that writes a file checks its output
 * before it reads anything, writes under a temporary name beside it, and puts
 * the file in place only when complete. Each case below destroyed data before.
 * Runs the built CLI as a user would, as root where a case needs mknod.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist/tools/vmsnap.js');
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-outputs-'));
const at = (name: string) => join(dir, name);
const SNAP = at('good.vmsnap');
const BAD = at('bad.vmsnap');

function vmsnap(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const temporaries = (directory = dir) => readdirSync(directory).filter((name) => /\.vmsnap\.tmp-/.test(name));

/** A character device like /dev/null, made with mknod (root only); undefined where that is not allowed. */
function characterDevice(name: string): string | undefined {
  const path = at(name);
  const made = spawnSync('mknod', [path, 'c', '1', '3']);
  return made.status === 0 ? path : undefined;
}

beforeAll(() => {
  expect(vmsnap('save', '--sim', '--size', '16MiB', '--seed', '3', '-q', '-o', SNAP).status).toBe(0);
  // One flipped byte inside the metadata section: a snapshot every reader refuses.
  const bytes = readFileSync(SNAP);
  bytes[64 + 32 + 10] ^= 0xff;
  writeFileSync(BAD, bytes);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('restore to raw files', () => {
  it('keeps existing outputs when a --force restore then refuses the snapshot', () => {
    writeFileSync(at('o.ram'), 'previous ram');
    writeFileSync(at('o.tags'), 'previous tags');
    const run = vmsnap('restore', BAD, '--force', '--ram-out', at('o.ram'), '--tags-out', at('o.tags'));
    expect(run.status).toBe(1);
    expect(readFileSync(at('o.ram'), 'utf8')).toBe('previous ram');
    expect(readFileSync(at('o.tags'), 'utf8')).toBe('previous tags');
    expect(temporaries()).toEqual([]);
  });

  it('never writes over the snapshot it reads, even with --force', () => {
    const before = sha256(SNAP);
    const run = vmsnap('restore', SNAP, '--ram-out', SNAP, '--force');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/is also an input/);
    expect(sha256(SNAP)).toBe(before);
  });

  it('refuses a character device as --ram-out and leaves it a device', (context) => {
    const device = characterDevice('ramdev');
    if (!device) return context.skip('mknod needs root');
    const run = vmsnap('restore', SNAP, '--ram-out', device, '--force', '--tags-out', at('dev.tags'));
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/FIFO or device/);
    expect(lstatSync(device).isCharacterDevice()).toBe(true);
  });

  it('refuses - as a raw output and writes no file named -', () => {
    const run = vmsnap('restore', SNAP, '--ram-out', '-', '--tags-out', at('dash.tags'));
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/seekable/);
    expect(existsSync('-')).toBe(false);
  });

  it('creates its files 0600 and replaces a 0644 file with a 0600 one', () => {
    writeFileSync(at('mode.ram'), 'x');
    chmodSync(at('mode.ram'), 0o644);
    const run = vmsnap(
      'restore',
      SNAP,
      '--force',
      '--ram-out',
      at('mode.ram'),
      '--tags-out',
      at('mode.tags'),
      '--layout-out',
      at('mode.json'),
    );
    expect(run.status, run.stderr).toBe(0);
    for (const name of ['mode.ram', 'mode.tags', 'mode.json']) expect(statSync(at(name)).mode & 0o777, name).toBe(0o600);
  });
});

describe('export core and tags map', () => {
  it('never write over the snapshot they read', () => {
    const before = sha256(SNAP);
    for (const args of [
      ['export', 'core', SNAP, '-o', SNAP],
      ['export', 'core', SNAP, '-o', SNAP, '--force'],
      ['tags', 'map', SNAP, '-o', SNAP, '--force'],
    ]) {
      const run = vmsnap(...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(sha256(SNAP)).toBe(before);
    }
  });

  it('refuse to replace an existing file without --force, and replace it atomically with it, 0600', () => {
    for (const [args, name] of [
      [['export', 'core', SNAP], 'x.core'],
      [['tags', 'map', SNAP], 'x.svg'],
    ] as const) {
      writeFileSync(at(name), 'keep me');
      chmodSync(at(name), 0o644);
      const refused = vmsnap(...args, '-o', at(name));
      expect(refused.status).toBe(2);
      expect(refused.stderr).toMatch(/exists; pass --force/);
      expect(readFileSync(at(name), 'utf8')).toBe('keep me');
      const forced = vmsnap(...args, '-o', at(name), '--force');
      expect(forced.status, forced.stderr).toBe(0);
      expect(readFileSync(at(name), 'utf8')).not.toBe('keep me');
      expect(statSync(at(name)).mode & 0o777).toBe(0o600);
    }
  });

  it('follow a symbolic link: its target is replaced and the link stays', () => {
    writeFileSync(at('real.svg'), 'old');
    symlinkSync(at('real.svg'), at('link.svg'));
    const run = vmsnap('tags', 'map', SNAP, '-o', at('link.svg'), '--force');
    expect(run.status, run.stderr).toBe(0);
    expect(lstatSync(at('link.svg')).isSymbolicLink()).toBe(true);
    expect(readFileSync(at('real.svg'), 'utf8')).toMatch(/^<\?xml[\s\S]*<svg /);
  });

  it('take - for standard output', () => {
    const map = vmsnap('tags', 'map', SNAP, '-o', '-');
    expect(map.status, map.stderr).toBe(0);
    expect(map.stdout).toMatch(/^<\?xml[\s\S]*<svg /);
    const core = spawnSync(process.execPath, [CLI, 'export', 'core', SNAP, '-o', '-'], { maxBuffer: 256 << 20 });
    expect(core.status, String(core.stderr)).toBe(0);
    expect(core.stdout.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(existsSync(at('-'))).toBe(false);
  });
});

describe('save', () => {
  it('writes through a character device and never replaces it', (context) => {
    const device = characterDevice('null');
    if (!device) return context.skip('mknod needs root');
    const run = vmsnap('save', '--sim', '--size', '8MiB', '-q', '-o', device);
    expect(run.status, run.stderr).toBe(0);
    expect(lstatSync(device).isCharacterDevice()).toBe(true);
  });

  it('writes through a FIFO as a stream', async () => {
    const fifo = at('pipe');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // The reader drains the FIFO into a file by itself: this process blocks in spawnSync meanwhile.
    const reader = spawn('sh', ['-c', 'cat "$0" > "$1"', fifo, at('from-fifo.vmsnap')], { stdio: 'ignore' });
    const done = new Promise((settle) => reader.on('exit', settle));
    const run = vmsnap('save', '--sim', '--size', '8MiB', '--seed', '5', '-q', '-o', fifo);
    await done;
    expect(run.status, run.stderr).toBe(0);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(vmsnap('verify', at('from-fifo.vmsnap')).status).toBe(0);
  });

  it('refuses an existing snapshot without --force, the same way as every command', () => {
    const before = sha256(SNAP);
    const run = vmsnap('save', '--sim', '--size', '8MiB', '-q', '-o', SNAP);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/exists; pass --force/);
    expect(sha256(SNAP)).toBe(before);
  });

  it('names the target, not a temporary file, when the target is a directory', () => {
    mkdirSync(at('a-directory'));
    const run = vmsnap('save', '--sim', '--size', '8MiB', '-q', '-o', at('a-directory'));
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${at('a-directory')}: is a directory`);
    expect(run.stderr).not.toMatch(/tmp-/);
    expect(temporaries(at('a-directory'))).toEqual([]);
  });

  it('names the file when the disk is full, and a directory given as input', () => {
    const full = vmsnap('save', '--sim', '--size', '8MiB', '-q', '-o', '/dev/full');
    expect(full.status).toBe(3);
    expect(full.stderr).toMatch(/\/dev\/full: no space left on device \(ENOSPC\)/);
    for (const args of [
      ['verify', dir],
      ['tags', 'stats', dir],
      ['restore', dir],
    ]) {
      const run = vmsnap(...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr).toContain(`${dir}: is a directory`);
    }
  });

  it('never writes over its raw input files', () => {
    const restored = vmsnap('restore', SNAP, '--ram-out', at('in.ram'), '--tags-out', at('in.tags'), '--layout-out', at('in.json'));
    expect(restored.status, restored.stderr).toBe(0);
    const before = sha256(at('in.ram'));
    const run = vmsnap('save', '--ram', at('in.ram'), '--tags', at('in.tags'), '--layout', at('in.json'), '-o', at('in.ram'), '--force');
    expect(run.status).toBe(2);
    expect(sha256(at('in.ram'))).toBe(before);
  });
});

/** Starts `args`, kills it with SIGKILL after `delayMs`, and waits for it to die. */
async function killAfter(args: string[], delayMs: number): Promise<void> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
  const exited = new Promise((settle) => child.on('exit', settle));
  await new Promise((settle) => setTimeout(settle, delayMs));
  child.kill('SIGKILL');
  await exited;
}

describe('kill -9 at any moment of a writing command', () => {
  const killDir = at('kills');
  const into = (name: string) => join(killDir, name);
  // Moments spread from start-up to well past the end; a seeded list, so a failure names its moment.
  const moments = [0, 40, 90, 150, 220, 300, 420, 600, 900];

  beforeAll(() => mkdirSync(killDir));

  it('leaves each target as it was or complete, and no temporary file after the next run', async () => {
    writeFileSync(into('old.core'), 'old core');
    writeFileSync(into('old.ram'), 'old ram');
    writeFileSync(into('old.tags'), 'old tags');
    const oldSnapshot = sha256(SNAP);
    writeFileSync(into('old.vmsnap'), readFileSync(SNAP));
    for (const delay of moments) {
      await killAfter(
        ['save', '--sim', '--size', '32MiB', '--seed', '9', '--threads', '0', '-q', '--force', '-o', into('old.vmsnap')],
        delay,
      );
      const saved = sha256(into('old.vmsnap'));
      if (saved !== oldSnapshot) expect(vmsnap('verify', into('old.vmsnap')).status, `save killed at ${delay} ms`).toBe(0);

      await killAfter(['export', 'core', SNAP, '-o', into('old.core'), '--force'], delay);
      const core = readFileSync(into('old.core'));
      if (core.toString() !== 'old core') expect(core.subarray(0, 4).toString('latin1'), `export killed at ${delay} ms`).toBe('\x7fELF');

      await killAfter(['restore', SNAP, '--force', '--ram-out', into('old.ram'), '--tags-out', into('old.tags')], delay);
      const ram = readFileSync(into('old.ram'));
      if (ram.toString() !== 'old ram') expect(ram.length, `restore killed at ${delay} ms`).toBe(20 * 1024 * 1024);
    }
    // The next run into the directory removes what the killed runs left.
    expect(vmsnap('tags', 'map', SNAP, '-o', into('map.svg')).status).toBe(0);
    expect(temporaries(killDir)).toEqual([]);
  });
});
