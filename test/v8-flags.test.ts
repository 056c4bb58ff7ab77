/**
 * The CLI keeps V8's heap small (tools/v8-flags.ts): the young generation at
 * its initial size, the old generation grown by a fifth of what lives instead
 * of up to four times, which holds peak RSS flat as the guest grows; and it
 * optimizes later. A V8 that renamed or dropped a flag would ignore it
 * silently; this catches that.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const V8_FLAGS = resolve(import.meta.dirname, '../dist/tools/v8-flags.js');
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

// Calls a small function until V8 has optimized it (synchronously, so the count does not depend on timing) and prints the count.
const CALLS_UNTIL_OPTIMIZED = `
function work(a) { let s = 0; for (let i = 0; i < 16; i++) s += (a * i) & 7; return s; }
let calls = 0;
// Bit 4 of the status: optimized (v8/src/runtime/runtime-test.cc, OptimizationStatus::kOptimized).
while (calls < 1e6 && !(%GetOptimizationStatus(work) & 16)) work(calls++);
console.log(calls);
`;

function run(nodeArgs: string[], script: string): number {
  return Number(execFileSync(process.execPath, [...nodeArgs, '-e', script], { encoding: 'utf8' }).trim());
}

describe('the young generation of the vmsnap process', () => {
  it('grows under churn by default, so the check below can fail', () => {
    expect(run([], YOUNG_CHURN)).toBeGreaterThan(4 * MiB);
  });

  it('stays at its initial 2 MiB (two 1 MiB semi-spaces) once the CLI has set its flag', () => {
    expect(run(['--import', V8_FLAGS], YOUNG_CHURN)).toBeLessThanOrEqual(2 * MiB);
  });
});

describe('the old generation of the vmsnap process', () => {
  // Measured: about 130-140 MiB used by default, about 50 MiB with the flag, for at most about 30 MiB live.
  it('lets promoted garbage pile up to several times the live heap by default, so the check below can fail', () => {
    expect(run([], OLD_CHURN)).toBeGreaterThan(80 * MiB);
  });

  it('marks before it is much more than the live heap once the CLI has set its flag', () => {
    expect(run(['--import', V8_FLAGS], OLD_CHURN)).toBeLessThan(80 * MiB);
  });
});

describe('optimization in the vmsnap process', () => {
  const args = ['--allow-natives-syntax', '--no-concurrent-recompilation'];
  // Measured on Node 20: 135 calls by default, 983 with the flag.
  it('comes after several times as many calls once the CLI has set its flag', () => {
    const byDefault = run(args, CALLS_UNTIL_OPTIMIZED);
    expect(byDefault).toBeLessThan(1e6);
    expect(run([...args, '--import', V8_FLAGS], CALLS_UNTIL_OPTIMIZED)).toBeGreaterThan(4 * byDefault);
  });
});
