/**
 * The CLI keeps V8's heap small (tools/heap-flags.ts): the young generation at
 * its initial size, the old generation grown by a fifth of what lives instead
 * of up to four times, which holds peak RSS flat as the guest grows. A V8 that
 * renamed or dropped a flag would ignore it silently; this catches that.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const HEAP_FLAGS = resolve(import.meta.dirname, '../dist/tools/heap-flags.js');
const MiB = 1024 * 1024;

// Allocates objects of which a steady set survives each scavenge (what makes V8 grow the new space), then prints its size.
const YOUNG_CHURN = `
let kept = [];
for (let i = 0; i < 2e6; i++) { kept.push({ i, s: 'x' + i }); if (kept.length > 20000) kept = []; }
const space = require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
console.log(space.space_size);
`;

// About 10 MiB live, plus batches that outlive a few scavenges and then die
// (promoted garbage, as a read's per-chunk objects in flight are), with the
// event loop turning between batches; prints the most old space ever used.
const OLD_CHURN = `
const v8 = require('node:v8');
const live = [];
for (let i = 0; i < 150000; i++) live.push({ i, s: 'x' + i });
let batch = [];
let peak = 0;
let round = 0;
function step() {
  for (let i = 0; i < 20000; i++) batch.push({ i, s: 'y' + i, a: [i] });
  if (batch.length > 200000) batch = [];
  peak = Math.max(peak, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size);
  if (++round < 300) setImmediate(step);
  else console.log(peak);
}
step();
`;

function run(nodeArgs: string[], script: string): number {
  return Number(execFileSync(process.execPath, [...nodeArgs, '-e', script], { encoding: 'utf8' }).trim());
}

describe('the young generation of the vmsnap process', () => {
  it('grows under churn by default, so the check below can fail', () => {
    expect(run([], YOUNG_CHURN)).toBeGreaterThan(4 * MiB);
  });

  it('stays at its initial 2 MiB (two 1 MiB semi-spaces) once the CLI has set its flag', () => {
    expect(run(['--import', HEAP_FLAGS], YOUNG_CHURN)).toBeLessThanOrEqual(2 * MiB);
  });
});

describe('the old generation of the vmsnap process', () => {
  // Measured: about 130-140 MiB used by default, about 50 MiB with the flag, for at most about 30 MiB live.
  it('lets promoted garbage pile up to several times the live heap by default, so the check below can fail', () => {
    expect(run([], OLD_CHURN)).toBeGreaterThan(80 * MiB);
  });

  it('marks before it is much more than the live heap once the CLI has set its flag', () => {
    expect(run(['--import', HEAP_FLAGS], OLD_CHURN)).toBeLessThan(80 * MiB);
  });
});
