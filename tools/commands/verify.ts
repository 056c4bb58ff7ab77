/**
 * `vmsnap verify FILE|-`: checks every section and chunk checksum without
 * restoring, and reports each problem with its code and location. Exit code
 * 1 when the snapshot has errors, so scripts can gate a restore on it.
 * A diff snapshot is checked with its chain (found beside it, or --chain):
 * every link verified, and each link against its parent.
 */
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { VmsnapError } from '../../src/format/errors.js';
import { openChain } from '../../src/reader/chain.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../../src/reader/stream.js';
import { problemFrom, type VerifyProblem, type VerifyReport, verifySnapshot } from '../../src/validate/verify.js';
import { isDiffFile, resolveChain } from '../chain-options.js';
import { CliError, EXIT, snapshotInput } from '../cli-support.js';
import { helpAfter, printJson, printLine } from '../help.js';
import { createProgress, type Progress } from '../progress.js';
import { formatBytes, integerOption } from '../units.js';

export interface VerifyCommandOptions {
  chain?: string;
  json?: boolean;
  quiet?: boolean;
  threads?: number;
  idleTimeout?: number;
}

/** A chain's verdict: its links (oldest first), each link's own report, and what is wrong between them. */
interface ChainReport {
  readonly files: string[];
  readonly ok: boolean;
  readonly problems: VerifyProblem[];
  readonly links: VerifyReport[];
}

/** Verifies the parents of `last` (its own report is made by the caller) and checks every link against its parent. */
async function verifyChain(last: string, options: VerifyCommandOptions, progress: Progress): Promise<ChainReport> {
  let files: string[];
  try {
    files = resolveChain(last, options.chain);
  } catch (error) {
    if (!(error instanceof VmsnapError)) throw error;
    return { files: [last], ok: false, problems: [problemFrom(error)], links: [] };
  }
  const links: VerifyReport[] = [];
  for (const file of files.slice(0, -1)) links.push(await runVerify(file, options, progress));
  const problems: VerifyProblem[] = [];
  if (links.every((link) => link.ok)) {
    try {
      await (await openChain(files, { threads: options.threads })).close();
    } catch (error) {
      if (!(error instanceof VmsnapError)) throw error;
      problems.push(problemFrom(error));
    }
  }
  return { files, ok: problems.length === 0 && links.every((link) => link.ok), problems, links };
}

function isDiff(path: string): boolean {
  try {
    return isDiffFile(path);
  } catch {
    return false; // A file that cannot even be read that far: its own report says why.
  }
}

function printChain(chain: ChainReport): void {
  printLine(`chain (oldest first): ${chain.files.join(' <- ')}: ${chain.ok ? 'OK' : 'INVALID'}`);
  for (const link of chain.links) printLine(`  ${link.source}: ${link.ok ? 'OK' : 'INVALID'}`);
  for (const link of chain.links) for (const p of link.problems) printLine(`  ${link.source}: ${p.severity} ${p.code}: ${p.message}`);
  for (const problem of chain.problems) printLine(`  ${problem.severity} ${problem.code}: ${problem.message}`);
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
    .option(
      '--threads <n>',
      'decoding threads (default: one per core, one more with the system libzstd; 0 decodes on the main thread)',
      integerOption('--threads', 0, 256),
    )
    .option(
      '--idle-timeout <ms>',
      `with -: give up when the stream sends nothing for this long (default ${DEFAULT_IDLE_TIMEOUT_MS}; 0 waits forever)`,
      integerOption('--idle-timeout', 0, 2 ** 31 - 1),
    )
    .option('--chain <files>', "a diff's chain, oldest first, comma-separated (default: its parents found beside it)")
    .option('-q, --quiet', 'no progress bar')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap verify guest.vmsnap',
        'vmsnap verify guest.vmsnap --json | jq .problems',
        'ssh host cat guest.vmsnap | vmsnap verify -',
        'vmsnap verify tuesday.vmsnap          # a diff: its chain is checked too',
        'vmsnap verify c.vmsnap --chain a.vmsnap,b.vmsnap,c.vmsnap --json | jq .chain',
      ]),
    )
    .action(async (source: string, options: VerifyCommandOptions) => {
      snapshotInput(source, 'verify');
      // A missing or unreadable file is an I/O failure (exit 3), not an invalid snapshot.
      if (source !== '-') statSync(source);
      if (source === '-' && options.chain)
        throw new CliError('--chain: verify a chain from files (restore - --chain reads a pipe)', 'usage');
      const progress = createProgress(options);
      const report = await runVerify(source, options, progress);
      const chain = source !== '-' && (options.chain !== undefined || isDiff(source)) ? await verifyChain(source, options, progress) : null;
      if (options.json) printJson(chain ? { ...report, ok: report.ok && chain.ok, chain } : report);
      else {
        printReport(report);
        if (chain) printChain(chain);
      }
      if (!report.ok || (chain && !chain.ok)) process.exitCode = EXIT.invalid;
    });
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
