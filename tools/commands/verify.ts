/**
 * `vmsnap verify FILE|-`: checks every section and chunk checksum without
 * restoring, and reports each problem with its code and location. Exit code
 * 1 when the snapshot has errors, so scripts can gate a restore on it.
 */
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../../src/reader/stream.js';
import { type VerifyReport, verifySnapshot } from '../../src/validate/verify.js';
import { EXIT, snapshotInput } from '../cli-support.js';
import { helpAfter, printJson, printLine } from '../help.js';
import { createProgress, type Progress } from '../progress.js';
import { formatBytes, integerOption } from '../units.js';

export interface VerifyCommandOptions {
  json?: boolean;
  quiet?: boolean;
  threads?: number;
  idleTimeout?: number;
}

function printReport(report: VerifyReport): void {
  const s = report.stats;
  const errors = report.problems.filter((p) => p.severity === 'error').length;
  const warnings = report.problems.length - errors;
  const verdict = report.ok ? 'OK' : 'INVALID';
  printLine(
    `${report.source}: ${verdict}${report.formatVersion ? ` (format ${report.formatVersion})` : ''}, ` +
      `${count(errors, 'error')}, ${count(warnings, 'warning')}`,
  );
  printLine(`  ${s.regions} regions, ${s.chunks} chunks checked, ${formatBytes(s.fileBytes)}`);
  printLine(
    `  RAM pages: ${s.ramPagesStored} stored, ${s.ramPagesZero} zero; tag pages: ${s.tagPagesStored} stored, ${s.tagPagesZero} all-zero`,
  );
  printLine(`  ${s.vcpus} vCPUs, ${s.blobs} blobs`);
  for (const problem of report.problems) printLine(`  ${problem.severity} ${problem.code}: ${problem.message}`);
}

/** Runs the check in a "verifying" phase of `progress`; shared with `demo`, which verifies what it saved. */
export async function runVerify(
  source: string,
  options: { threads?: number; idleTimeout?: number },
  progress: Progress,
): Promise<VerifyReport> {
  progress.phase('verifying');
  try {
    return await verifySnapshot(source, {
      threads: options.threads,
      idleTimeoutMs: options.idleTimeout,
      onProgress: ({ bytesDone, bytesTotal }) => progress.update(bytesDone, bytesTotal),
    });
  } finally {
    progress.done();
  }
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('Check a snapshot completely (structure, every checksum, every chunk) without restoring it')
    .argument('<source>', 'snapshot file, or - for standard input')
    .option('--json', 'machine-readable report on standard output')
    .option('--threads <n>', 'decoding threads (default: one per core; 0 decodes on the main thread)', integerOption('--threads', 0, 256))
    .option(
      '--idle-timeout <ms>',
      `with -: give up when the stream sends nothing for this long (default ${DEFAULT_IDLE_TIMEOUT_MS}; 0 waits forever)`,
      integerOption('--idle-timeout', 0, 2 ** 31 - 1),
    )
    .option('-q, --quiet', 'no progress bar')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap verify guest.vmsnap',
        'vmsnap verify guest.vmsnap --json | jq .problems',
        'ssh host cat guest.vmsnap | vmsnap verify -',
      ]),
    )
    .action(async (source: string, options: VerifyCommandOptions) => {
      snapshotInput(source, 'verify');
      // A missing or unreadable file is an I/O failure (exit 3), not an invalid snapshot.
      if (source !== '-') statSync(source);
      const report = await runVerify(source, options, createProgress(options));
      if (options.json) printJson(report);
      else printReport(report);
      if (!report.ok) process.exitCode = EXIT.invalid;
    });
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
