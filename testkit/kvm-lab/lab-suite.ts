/**
 * The entry point /init runs inside the emulated arm64 host: every lab check
 * against the real KVM, one result line each (lab-report.ts), exit code 0
 * only if none failed. Arguments, if any, keep only the checks whose names
 * contain one of them (for a person narrowing down a failure). Not meant to
 * run anywhere else.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import type { LabCheck, LabContext } from './lab-checks.js';
import { labPlan } from './lab-plan.js';
import { formatResult, type LabResult } from './lab-report.js';

async function runCheck(check: LabCheck, context: LabContext): Promise<LabResult> {
  const started = performance.now();
  try {
    const detail = await check.run(context);
    return { name: check.name, outcome: 'pass', detail, ms: Math.round(performance.now() - started) };
  } catch (error) {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return { name: check.name, outcome: 'fail', detail, ms: Math.round(performance.now() - started) };
  }
}

async function main(): Promise<number> {
  process.stdout.write(`vmsnap lab: ${readFileSync('/proc/version', 'utf8').trim()}\n`);
  const context: LabContext = { factory: new KvmVmFactory(), scratchDirectory: mkdtempSync(join(tmpdir(), 'vmsnap-lab-')) };
  let failed = 0;
  const filters = process.argv.slice(2);
  const checks = labPlan().filter((check) => filters.length === 0 || filters.some((filter) => check.name.includes(filter)));
  for (const check of checks) {
    // Names the check a crash (a signal that kills node) happened in.
    process.stdout.write(`vmsnap lab: running ${check.name}\n`);
    const result = await runCheck(check, context);
    if (result.outcome === 'fail') failed++;
    process.stdout.write(`${formatResult(result)}\n`);
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main().catch((error: unknown) => {
  process.stdout.write(`vmsnap lab: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return 2;
});
