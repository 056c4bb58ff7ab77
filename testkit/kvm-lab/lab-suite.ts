/**
 * The entry point /init runs inside the emulated arm64 host: every lab check
 * against the real KVM, one result line each (lab-report.ts), exit code 0
 * only if none failed. Arguments, if any, keep only the checks whose names
 * contain one of them (for a person narrowing down a failure). Not meant to
 * run anywhere else.
 *
 * Each group of checks (lab-plan.ts) runs in a node process of its own, so
 * that what one group leaves behind in a process cannot decide another's
 * outcome. Node in the emulated host has died by a signal (SIGSEGV, a V8
 * fatal error) at random points, mostly on the 6.1 kernel and after the
 * guest checks; the cause is not found. A group whose process dies so runs
 * once more, and the crash is reported (a CRASH line with the kernel's
 * report of the fault), so the host-side runner shows it as a flake. A
 * failed check is never run again.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import type { LabCheck, LabContext } from './lab-checks.js';
import { type LabGroup, labGroups } from './lab-plan.js';
import { formatCrash, formatFileLines, formatResult, GROUP_ATTEMPTS, type LabResult } from './lab-report.js';

const GROUP_FLAG = '--group';
const RUNNING = 'vmsnap lab: running ';

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

function selected(group: LabGroup, filters: readonly string[]): LabCheck[] {
  return group.checks.filter((check) => filters.length === 0 || filters.some((filter) => check.name.includes(filter)));
}

/** In a group's own process: its checks, one after another. */
async function runGroup(group: LabGroup, filters: readonly string[]): Promise<number> {
  const context: LabContext = {
    factory: new KvmVmFactory(),
    scratchDirectory: mkdtempSync(join(tmpdir(), 'vmsnap-lab-')),
    handOver: (name, bytes) => process.stdout.write(`${formatFileLines(name, bytes).join('\n')}\n`),
  };
  let failed = 0;
  for (const check of selected(group, filters)) {
    // Names the check a crash (a signal that kills node) happened in.
    process.stdout.write(`${RUNNING}${check.name}\n`);
    const result = await runCheck(check, context);
    if (result.outcome === 'fail') failed++;
    process.stdout.write(`${formatResult(result)}\n`);
  }
  return failed === 0 ? 0 : 1;
}

interface GroupExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly lastCheck: string | null;
}

/** Runs one group in a child node process, its output passed through line by line. */
function spawnGroup(group: LabGroup, filters: readonly string[]): Promise<GroupExit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), GROUP_FLAG, group.name, ...filters], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let lastCheck: string | null = null;
    let pending = '';
    child.stdout.on('data', (data: Buffer) => {
      process.stdout.write(data);
      const lines = (pending + data.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith(RUNNING)) lastCheck = line.slice(RUNNING.length);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, lastCheck }));
  });
}

/** The kernel log's last lines: with exception-trace on (/init), the faulting pc, far and esr of a crash. */
function kernelLogTail(): string[] {
  const dmesg = spawnSync('/bin/busybox', ['dmesg'], { encoding: 'utf8' });
  return (dmesg.stdout ?? '').trimEnd().split('\n').slice(-12);
}

async function supervise(filters: readonly string[]): Promise<number> {
  process.stdout.write(`vmsnap lab: ${readFileSync('/proc/version', 'utf8').trim()}\n`);
  let failed = 0;
  for (const group of labGroups().filter((candidate) => selected(candidate, filters).length > 0)) {
    for (let attempt = 1; ; attempt++) {
      const exit = await spawnGroup(group, filters);
      if (exit.signal) {
        const crash = { group: group.name, signal: exit.signal, attempt, lastCheck: exit.lastCheck, kernelLog: kernelLogTail() };
        process.stdout.write(`${formatCrash(crash)}\n`);
        if (attempt < GROUP_ATTEMPTS) continue;
      }
      if (exit.code !== 0) failed++;
      break;
    }
  }
  return failed === 0 ? 0 : 1;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args[0] !== GROUP_FLAG) return supervise(args);
  const group = labGroups().find((candidate) => candidate.name === args[1]);
  if (!group) throw new Error(`no lab group ${args[1]}`);
  return runGroup(group, args.slice(2));
}

process.exitCode = await main().catch((error: unknown) => {
  process.stdout.write(`vmsnap lab: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return 2;
});
