/**
 * `vmsnap flatten CHAIN -o FULL`: a chain of diff snapshots merged into one
 * full snapshot of its final state, byte for byte what a direct full save of
 * that state writes with the same options: the snapshot id, creation time,
 * tool, annotations, chunk size, vCPUs and blobs come from the last link, and
 * --level must be the level the saves used (a file does not record it).
 */
import type { Command } from 'commander';
import { MAX_ZSTD_LEVEL } from '../../src/format/constants.js';
import { resolveOutput } from '../../src/io/output-file.js';
import { openChain } from '../../src/reader/chain.js';
import { flattenChain } from '../../src/writer/flatten.js';
import { resolveChain } from '../chain-options.js';
import { CliError, toJson } from '../cli-support.js';
import { helpAfter, printLine } from '../help.js';
import { createProgress } from '../progress.js';
import { integerOption } from '../units.js';
import { describeSave } from './save.js';

interface FlattenCommandOptions {
  output: string;
  chain?: string;
  level?: number;
  threads?: number;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

export function registerFlatten(program: Command): void {
  program
    .command('flatten')
    .description('Merge a chain of diff snapshots into one full snapshot, byte for byte a direct full save of the same state')
    .argument(
      '<snapshots...>',
      'the last snapshot of the chain (its parents found beside it by snapshot id), or the whole chain, oldest first',
    )
    .requiredOption('-o, --output <file>', 'the full snapshot to write, or - for standard output')
    .option('--chain <files>', 'the chain, oldest first, comma-separated (instead of finding the parents beside the last)')
    .option(
      '--level <n>',
      'zstd level the chain was saved with, 0..9 (default 1, as save): a file does not record it, and it decides the bytes',
      integerOption('--level', 0, 99),
    )
    .option(
      '--threads <n>',
      'threads (default: one per core, one more with the system libzstd; 0 works on the main thread)',
      integerOption('--threads', 0, 256),
    )
    .option('--force', 'replace an existing file (never one of the chain)')
    .option('--json', 'print the summary as JSON (to standard error when the snapshot goes to standard output)')
    .option('-q, --quiet', 'no progress bar and no summary')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap flatten tuesday.vmsnap -o full.vmsnap',
        'vmsnap flatten a.vmsnap b.vmsnap c.vmsnap -o full.vmsnap --level 3',
        'vmsnap flatten c.vmsnap --chain a.vmsnap,b.vmsnap -o - | ssh backup "cat > full.vmsnap"',
      ]),
    )
    .action(async (snapshots: string[], options: FlattenCommandOptions) => {
      if (options.level !== undefined && options.level > MAX_ZSTD_LEVEL) {
        throw new CliError(`--level: 0 (store) to ${MAX_ZSTD_LEVEL}, got ${options.level}`, 'usage');
      }
      if (snapshots.length > 1 && options.chain) throw new CliError('name the chain either as arguments or with --chain', 'usage');
      if (options.output === '-' && process.stdout.isTTY)
        throw new CliError('-o -: standard output is a terminal; redirect it to a file or a pipe', 'usage');
      if (options.output === '-') process.stdout.on('error', () => {});
      const files = snapshots.length > 1 ? snapshots : resolveChain(snapshots[0], options.chain);
      if (options.output !== '-') resolveOutput(options.output, { force: options.force, inputs: files, streamable: true });
      const chain = await openChain(files, { threads: options.threads });
      const progress = createProgress(options);
      const report = options.output === '-' ? process.stderr : process.stdout;
      try {
        progress.phase('flattening');
        const summary = await flattenChain(chain, options.output, {
          level: options.level,
          threads: options.threads,
          force: options.force,
          inputs: files,
          onProgress: (p) => progress.update(p.guestBytesDone, p.guestBytesTotal),
        });
        progress.done();
        if (options.json && !options.quiet) report.write(`${toJson({ chain: files, ...summary })}\n`);
        else if (!options.quiet) {
          printLine(`flattened ${files.length} snapshots: ${files.join(' <- ')}`);
          report.write(`${describeSave(summary)}\n`);
        }
      } finally {
        progress.done();
        await chain.close();
      }
    });
}
