/**
 * `vmsnap demo`: the whole story in one command, on a generated guest of a
 * few hundred MiB with MTE tags: save it, verify the file, restore it, and
 * compare every page and every tag granule with the original. The guest is
 * generated page by page as it is read, and the restore compares each write
 * with the original as it happens, so memory stays bounded by the chunk size
 * for any guest size. Prints what each step did and how fast it went.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { comparingFactory } from '../../src/validate/comparing-target.js';
import { workloadAnnotations } from '../../src/workload/annotations.js';
import { GeneratedGuest } from '../../src/workload/generated-guest.js';
import { EXIT } from '../cli-support.js';
import { helpAfter, printJson, printLine } from '../help.js';
import { createProgress } from '../progress.js';
import { writerOptions } from '../save-options.js';
import { parseSimGuest, SIM_DEFAULTS } from '../sim-guest.js';
import { formatBytes, integerOption, megabytesPerSecond, percent } from '../units.js';
import { describeComparison, runRestore } from './restore.js';
import { runSave } from './save.js';
import { runVerify } from './verify.js';

interface DemoOptions {
  size?: string;
  seed?: string;
  pageSize?: string;
  output?: string;
  force?: boolean;
  threads?: number;
  json?: boolean;
  quiet?: boolean;
}

interface Step {
  step: string;
  ms: number;
  /** Guest memory handled per second, in MB/s. */
  mbPerSecond: number;
  detail: string;
}

async function timed<T>(
  steps: Step[],
  name: string,
  guestBytes: bigint,
  run: () => T | Promise<T>,
  detail: (value: T) => string,
): Promise<T> {
  const started = performance.now();
  const value = await run();
  const ms = performance.now() - started;
  steps.push({ step: name, ms, mbPerSecond: megabytesPerSecond(guestBytes, ms), detail: detail(value) });
  return value;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('Save a generated MTE guest, verify the file, restore it into a fresh VM and compare every page and tag')
    .option('--size <bytes>', `guest RAM size (default ${SIM_DEFAULTS.size})`)
    .option('--seed <n>', `workload seed (default ${SIM_DEFAULTS.seed})`)
    .option('--page-size <bytes>', 'host page size: 4096, 16384 or 65536 (default 4096)')
    .option('-o, --output <file>', 'keep the snapshot here (default: a temporary file, removed afterwards)')
    .option('--force', 'with --output: replace an existing file')
    .option(
      '--threads <n>',
      'compression threads (default: one per core, one more with the system libzstd)',
      integerOption('--threads', 0, 256),
    )
    .option('--json', 'print the steps and results as JSON')
    .option('-q, --quiet', 'no progress bars')
    .addHelpText('after', helpAfter(['vmsnap demo', 'vmsnap demo --size 1GiB --page-size 65536', 'vmsnap demo --json | jq .steps']))
    .action(async (options: DemoOptions) => {
      const spec = parseSimGuest(options);
      const quiet = options.quiet || options.json;
      const directory = options.output ? undefined : mkdtempSync(join(tmpdir(), 'vmsnap-demo-'));
      const path = options.output ?? join(directory!, 'demo.vmsnap');
      const steps: Step[] = [];
      const guestBytes = BigInt(spec.sizeMiB) * 1024n * 1024n;
      // One bar for every step, each its own phase.
      const progress = createProgress({ quiet });
      const onProgress = (done: bigint, total: bigint) => progress.update(done, total);
      try {
        const guest = new GeneratedGuest(spec);
        const saveOptions = writerOptions({ threads: options.threads }, spec.pageSize, workloadAnnotations(spec));
        const saved = await timed(
          steps,
          'save',
          guestBytes,
          () => runSave(guest, path, { ...saveOptions, force: options.force }, progress),
          (s) => `${formatBytes(s.fileBytes)} in ${s.chunks} chunks`,
        );
        const verified = await timed(
          steps,
          'verify',
          guestBytes,
          () => runVerify(path, { threads: options.threads }, progress),
          (r) => (r.ok ? 'every checksum good' : `${r.problems.length} problems`),
        );
        // Each page and tag restore writes is compared with the original as it is written.
        const restored = await timed(
          steps,
          'restore',
          guestBytes,
          () => runRestore(path, comparingFactory(guest), { threads: options.threads }, progress),
          (r) => `${r.summary.ramPagesWritten} pages, ${r.summary.tagCalls} tag copies, each compared with the original`,
        );
        const comparison = await timed(
          steps,
          'compare',
          guestBytes,
          () => {
            progress.phase('comparing unwritten pages');
            return restored.vm.finish(onProgress);
          },
          (c) => (c.equal ? 'identical' : `${c.differences.length} differences`),
        );
        progress.done();
        const result = {
          guest: { ...spec, regions: saved.regions.length, vcpus: saved.vcpus, guestBytes: saved.guestBytes },
          snapshot: {
            path: options.output ?? null,
            fileBytes: saved.fileBytes,
            compressionRatio: Number(saved.guestBytes) / Number(saved.fileBytes),
            tagBytes: saved.tagBytes,
            tagPercentOfRam: (Number(saved.tagBytes) / Number(saved.guestBytes)) * 100,
          },
          steps,
          verify: { ok: verified.ok, problems: verified.problems },
          comparison,
          ok: verified.ok && comparison.equal,
        };
        if (options.json) printJson(result);
        else {
          printLine(
            `guest: ${spec.sizeMiB} MiB RAM + flash (${formatBytes(saved.guestBytes)} in ${saved.regions.length} regions), ` +
              `seed ${spec.seed}, ${spec.pageSize}-byte pages, ${saved.vcpus} vCPUs`,
          );
          for (const s of steps)
            printLine(
              `  ${s.step.padEnd(8)} ${(s.ms / 1000).toFixed(2).padStart(6)} s ${s.mbPerSecond.toFixed(0).padStart(6)} MB/s  ${s.detail}`,
            );
          printLine(
            `snapshot: ${formatBytes(saved.fileBytes)}, ${result.snapshot.compressionRatio.toFixed(2)}:1, ` +
              `tags ${formatBytes(saved.tagBytes)} = ${percent(saved.tagBytes, saved.guestBytes)} of RAM` +
              `${options.output ? `, kept at ${options.output}` : ''}`,
          );
          for (const problem of verified.problems) printLine(`  verify ${problem.severity} ${problem.code}: ${problem.message}`);
          printLine(describeComparison(comparison));
          printLine(result.ok ? 'demo OK: every page and every tag came back' : 'demo FAILED');
        }
        if (!verified.ok) process.exitCode = EXIT.invalid;
        else if (!comparison.equal) process.exitCode = EXIT.differs;
      } finally {
        progress.done();
        if (directory) rmSync(directory, { recursive: true, force: true });
      }
    });
}
