/**
 * The CLI keeps V8's young generation at its initial size (tools/young-generation.ts),
 * which holds peak RSS flat as the guest grows. A V8 that renamed or dropped the
 * flag would ignore it silently; this catches that.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const YOUNG_GENERATION = resolve(import.meta.dirname, '../dist/tools/young-generation.js');

// Allocates objects of which a steady set survives each scavenge (what makes V8 grow the new space), then prints its size.
const CHURN = `
let kept = [];
for (let i = 0; i < 2e6; i++) { kept.push({ i, s: 'x' + i }); if (kept.length > 20000) kept = []; }
const space = require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
console.log(space.space_size);
`;

function newSpaceBytesAfterChurn(nodeArgs: string[]): number {
  return Number(execFileSync(process.execPath, [...nodeArgs, '-e', CHURN], { encoding: 'utf8' }).trim());
}

describe('the young generation of the vmsnap process', () => {
  it('grows under churn by default, so the check below can fail', () => {
    expect(newSpaceBytesAfterChurn([])).toBeGreaterThan(4 * 1024 * 1024);
  });

  it('stays at its initial 2 MiB (two 1 MiB semi-spaces) once the CLI has set its flag', () => {
    expect(newSpaceBytesAfterChurn(['--import', YOUNG_GENERATION])).toBeLessThanOrEqual(2 * 1024 * 1024);
  });
});
