/**
 * Memory bounded by the chunk, not by the guest (issue 10): saving the
 * generated guest, restoring it with --compare-sim and flattening a chain
 * hold no guest in memory, nor do restoring a chain and the store commands,
 * so their peak resident memory is the same for a guest 4 times as large.
 * Peak RSS is what the child process itself reports at exit.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = join(resolve(import.meta.dirname, '..'), 'dist/tools/vmsnap.js');
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-flat-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;
/** What two runs may differ by, from GC timing alone: a guest held in memory would add hundreds of MiB. */
const FLAT_MARGIN = 64 * MiB;

/** Runs the CLI in a node that prints its peak resident memory on exit; returns it in bytes. */
function peakRss(...args: string[]): number {
  const report = `process.on('exit', () => process.stderr.write('maxrss ' + process.resourceUsage().maxRSS + '\\n'));`;
  const wrapper = `${report} await import(${JSON.stringify(CLI)});`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', wrapper, 'vmsnap', ...args], {
    encoding: 'utf8',
    // Only stderr is read: a listing on stdout (tags diff --list) would overflow spawnSync's buffer.
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 300_000,
  });
  expect(run.status, run.stderr).toBe(0);
  const match = /maxrss (\d+)/.exec(run.stderr);
  expect(match, run.stderr).not.toBeNull();
  return Number(match![1]) * 1024;
}

describe('commands on the generated guest hold no guest in memory', () => {
  const sizes = ['256MiB', '1GiB'];
  const file = (size: string) => join(dir, `${size}.vmsnap`);

  it('save --sim: the same peak for 256 MiB and 1 GiB', () => {
    const [small, large] = sizes.map((size) => peakRss('save', '--sim', '--size', size, '--threads', '0', '-q', '-o', file(size)));
    expect(large - small).toBeLessThan(FLAT_MARGIN);
  });

  it('restore --compare-sim: the same peak for 256 MiB and 1 GiB', () => {
    const [small, large] = sizes.map((size) => peakRss('restore', file(size), '--compare-sim', '--threads', '0', '-q'));
    expect(large - small).toBeLessThan(FLAT_MARGIN);
  });
});

describe('commands on a chain hold no guest in memory', () => {
  // Smaller guests than above: a command that keeps a buffer per chunk (flatten did, in the writer's
  // buffer pool) grows by the whole guest, 192 MiB from the first size to the second, far past the margin.
  const sizes = ['64MiB', '256MiB'];
  const full = (size: string) => join(dir, `chain-${size}.vmsnap`);
  const diff = (size: string) => join(dir, `chain-${size}-diff.vmsnap`);

  it('flatten: the same peak for 64 MiB and 256 MiB', () => {
    const [small, large] = sizes.map((size) => {
      peakRss('save', '--sim', '--size', size, '-q', '-o', full(size));
      peakRss('save', '--sim', '--size', size, '--seed', '2', '--parent', full(size), '-q', '-o', diff(size));
      return peakRss('flatten', full(size), diff(size), '-q', '-o', join(dir, `flat-${size}.vmsnap`));
    });
    expect(large - small).toBeLessThan(FLAT_MARGIN);
  });

  it('restore of a diff chain, push, pull and store verify: the same peak for 64 MiB and 256 MiB', () => {
    // The chains flatten made above (made here when run alone); each step's peak at the larger size against the smaller's.
    const key = join(dir, 'store.key');
    writeFileSync(key, randomBytes(32), { mode: 0o600 });
    const steps = (size: string): number[] => {
      const store = join(dir, `store-${size}`);
      if (!existsSync(diff(size))) {
        peakRss('save', '--sim', '--size', size, '-q', '-o', full(size));
        peakRss('save', '--sim', '--size', size, '--seed', '2', '--parent', full(size), '-q', '-o', diff(size));
      }
      return [
        peakRss(
          'restore',
          diff(size),
          '--chain',
          `${full(size)},${diff(size)}`,
          '-q',
          '--ram-out',
          join(dir, `r-${size}.ram`),
          '--tags-out',
          join(dir, `r-${size}.tags`),
        ),
        peakRss('push', full(size), store, '--key-file', key, '--name', 'full', '-q'),
        peakRss('push', diff(size), store, '--key-file', key, '--name', 'diff', '-q'),
        peakRss('pull', `${store}/full`, '--key-file', key, '-q', '-o', join(dir, `pulled-${size}.vmsnap`)),
        peakRss('store', 'verify', store, '--key-file', key, '-q'),
      ];
    };
    const [small, large] = sizes.map(steps);
    for (const [i, peak] of large.entries()) expect(peak - small[i], `step ${i}`).toBeLessThan(FLAT_MARGIN);
  });
});

describe('forensics passes hold no guest in memory', () => {
  // The chain test's files: a full snapshot (seed 1) and its diff flattened (the seed 2 guest), at 64 and 256 MiB.
  // Each pass holds one chunk at a time in the reader's reused memory (src/forensics/held-chunk.ts).
  const sizes = ['64MiB', '256MiB'];
  const full = (size: string) => join(dir, `chain-${size}.vmsnap`);
  const flat = (size: string) => join(dir, `flat-${size}.vmsnap`);
  const flatAcross = (run: (size: string) => string[]) => {
    const [small, large] = sizes.map((size) => peakRss(...run(size)));
    expect(large - small).toBeLessThan(FLAT_MARGIN);
  };

  it('tags diff --list, tags map --against: the same peak for 64 MiB and 256 MiB', () => {
    flatAcross((size) => ['tags', 'diff', full(size), flat(size), '--list']);
    flatAcross((size) => ['tags', 'map', flat(size), '--against', full(size), '-o', join(dir, `map-${size}.svg`)]);
  });

  it('tags search, scan pointers, export core: the same peak for 64 MiB and 256 MiB', () => {
    flatAcross((size) => ['tags', 'search', full(size), '--string', 'vmsnap']);
    flatAcross((size) => ['scan', 'pointers', full(size), '-q']);
    flatAcross((size) => ['export', 'core', full(size), '-o', join(dir, `core-${size}.core`)]);
  });
});
