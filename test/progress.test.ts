/**
 * The progress bar is part of the command line's contract on a terminal:
 * it names the phase, draws at once, shows elapsed time and an ETA, erases
 * itself, and stays silent off a terminal. The renderer takes its stream and
 * its clock from the test, so nothing here depends on real time.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FORMAT_MAJOR, FORMAT_MINOR } from '../src/format/constants.js';
import { compareVms } from '../src/validate/compare.js';
import { VERSION } from '../src/version.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { createProgress, type ProgressStream } from '../tools/progress.js';

const ROOT = resolve(import.meta.dirname, '..');
const MiB = 1024n * 1024n;
const ERASE_TO_END = '\x1b[K';

/** A terminal that records what is written to it, and a clock the test moves. */
function fakeTerminal(options: { isTTY?: boolean; columns?: number; quiet?: boolean } = {}) {
  const writes: string[] = [];
  const stream: ProgressStream = { isTTY: options.isTTY ?? true, columns: options.columns ?? 120, write: (text) => writes.push(text) };
  const clock = { ms: 0 };
  const progress = createProgress({ stream, quiet: options.quiet, now: () => clock.ms });
  /** The last frame as it shows: without the carriage return before it and the erase-to-end-of-line after it. */
  const frame = () => {
    const last = writes.at(-1) ?? '';
    expect(last.startsWith('\r') && last.endsWith(ERASE_TO_END)).toBe(true);
    return last.slice(1, -ERASE_TO_END.length);
  };
  return { writes, clock, progress, frame };
}

describe('terminal progress', () => {
  it('draws the first frame when a phase starts, before any update, naming the phase', () => {
    const { writes, progress, frame } = fakeTerminal();
    progress.phase('generating guest', 512n * MiB);
    expect(writes).toHaveLength(1);
    expect(frame()).toMatch(/^generating guest /);
    expect(frame()).toContain('0% 0 B/512 MiB');
    expect(frame()).toContain('0s elapsed');
    progress.done();
  });

  it('shows elapsed time and an ETA from the clock: at 50% after 10 s, 10 s to go', () => {
    const { clock, progress, frame } = fakeTerminal();
    progress.phase('saving', 1024n * MiB);
    clock.ms = 10_000;
    progress.update(512n * MiB);
    expect(frame()).toMatch(/^saving \[#+\.+\] {2}50% 512 MiB\/1 GiB {2}54 MB\/s {2}10s elapsed {2}ETA 10s$/);
    clock.ms = 70_000;
    progress.update(768n * MiB);
    expect(frame()).toContain('75% 768 MiB/1 GiB');
    expect(frame()).toContain('1m10s elapsed');
    expect(frame()).toContain('ETA 23s');
    progress.done();
  });

  it('each phase counts its own time, and a total learned from an update is kept', () => {
    const { clock, progress, frame } = fakeTerminal();
    progress.phase('restoring');
    expect(frame()).toBe('restoring  0s elapsed');
    clock.ms = 4_000;
    progress.update(100n * MiB, 400n * MiB);
    expect(frame()).toContain('ETA 12s');
    progress.phase('comparing');
    expect(frame()).toBe('comparing  0s elapsed');
    clock.ms = 6_000;
    progress.update(200n * MiB, 400n * MiB);
    expect(frame()).toContain('2s elapsed  ETA 2s');
    progress.done();
  });

  it('an unknown total (a pipe) shows bytes and rate, no percentage and no ETA', () => {
    const { clock, progress, frame } = fakeTerminal();
    progress.phase('verifying');
    clock.ms = 2_000;
    progress.update(64n * MiB, null);
    expect(frame()).toBe('verifying  64 MiB  34 MB/s  2s elapsed');
    progress.done();
  });

  it('throttles updates but always draws the last one', () => {
    const { writes, clock, progress, frame } = fakeTerminal();
    progress.phase('saving', 100n);
    clock.ms = 1_000;
    progress.update(10n);
    const drawn = writes.length;
    clock.ms = 1_001;
    progress.update(20n);
    expect(writes).toHaveLength(drawn);
    progress.update(100n);
    expect(writes).toHaveLength(drawn + 1);
    expect(frame()).toContain('100%');
    progress.done();
  });

  it('done() erases the line, and draws nothing more', () => {
    const { writes, progress } = fakeTerminal();
    progress.phase('saving', 100n);
    progress.done();
    expect(writes.at(-1)).toBe(`\r${ERASE_TO_END}`);
    const count = writes.length;
    progress.update(50n);
    progress.done();
    expect(writes).toHaveLength(count);
  });

  it('never draws a line wider than the terminal', () => {
    const { clock, progress, frame } = fakeTerminal({ columns: 40 });
    progress.phase('regenerating guest', 4095n * MiB);
    clock.ms = 65_000;
    progress.update(1000n * MiB);
    expect(frame().length).toBeLessThanOrEqual(39);
    expect(frame()).toMatch(/^regenerating guest /);
    progress.done();
  });

  it('writes nothing when standard error is not a terminal, or with --quiet', () => {
    for (const options of [{ isTTY: false }, { quiet: true }]) {
      const { writes, clock, progress } = fakeTerminal(options);
      progress.phase('saving', 100n);
      clock.ms = 1_000;
      progress.update(50n);
      progress.update(100n);
      progress.done();
      expect(writes).toEqual([]);
    }
  });
});

describe('library progress callbacks', () => {
  it('createSimulatedGuest reports bytes generated up to the guest size', () => {
    const calls: Array<[bigint, bigint]> = [];
    createSimulatedGuest({ sizeMiB: 8, seed: 3, flashMiB: 1, onProgress: (done, total) => calls.push([done, total]) }).vm.close();
    expect(calls.length).toBeGreaterThan(1);
    expect(calls.every(([, total]) => total === 9n * MiB)).toBe(true);
    expect(calls.map(([done]) => done)).toEqual([...calls.map(([done]) => done)].sort((a, b) => (a < b ? -1 : 1)));
    expect(calls.at(-1)).toEqual([9n * MiB, 9n * MiB]);
  });

  it('compareVms reports bytes compared of all memory slots', () => {
    const a = createSimulatedGuest({ sizeMiB: 4, seed: 3, flashMiB: 1 });
    const b = createSimulatedGuest({ sizeMiB: 4, seed: 3, flashMiB: 1 });
    const calls: Array<[bigint, bigint]> = [];
    const comparison = compareVms(a.vm, b.vm, { onProgress: (done, total) => calls.push([done, total]) });
    expect(comparison.equal).toBe(true);
    expect(calls.length).toBeGreaterThan(1);
    expect(calls.at(-1)).toEqual([5n * MiB, 5n * MiB]);
    a.vm.close();
    b.vm.close();
  });
});

describe('vmsnap --version', () => {
  it('prints the package version and the format version', () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'dist/tools/vmsnap.js'), '--version'], { encoding: 'utf8' });
    const packageVersion = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
    expect(run.status, run.stderr).toBe(0);
    expect(VERSION).toBe(packageVersion);
    expect(run.stdout).toBe(`vmsnap ${packageVersion} (format ${FORMAT_MAJOR}.${FORMAT_MINOR})\n`);
  });
});
