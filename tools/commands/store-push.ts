/**
 * `vmsnap push FILE STORE` and `vmsnap pull STORE/NAME -o FILE`: a snapshot
 * file into the chunk store (deduplicated, encrypted) and back.
 */
import { basename, extname } from 'node:path';
import { Transform } from 'node:stream';
import type { Command } from 'commander';
import { resolveOutput } from '../../src/io/output-file.js';
import { openSnapshot } from '../../src/reader/open.js';
import { readSnapshotStream } from '../../src/reader/stream.js';
import { checkSnapshotName } from '../../src/store/chunk-store.js';
import { type PullSummary, pullSnapshot } from '../../src/store/pull.js';
import { type PushSummary, pushSnapshot } from '../../src/store/push.js';
import { CliError, snapshotInput, standardOutput, toJson } from '../cli-support.js';
import { helpAfter, printLine } from '../help.js';
import { createProgress } from '../progress.js';
import { openStore, openStoreReference, STORE_HELP, type StoreCommandOptions, storeOptions } from '../store-options.js';
import { formatBytes, formatRate, integerOption } from '../units.js';

interface PushCommandOptions extends StoreCommandOptions {
  name?: string;
  parent?: string;
  level?: number;
  force?: boolean;
  threads?: number;
  json?: boolean;
  quiet?: boolean;
}

export function describePush(summary: PushSummary): string {
  return [
    `pushed ${summary.name}${summary.parent ? ` (a diff of ${summary.parent})` : ''} ` +
      `(${formatBytes(summary.guestBytes)} of guest memory, a ${formatBytes(summary.fileBytes)} file) to ${summary.store}`,
    `  ${summary.chunks} chunks: ${summary.chunksUploaded} uploaded (${formatBytes(summary.bytesUploaded)}), ` +
      `${summary.chunksReused} already stored`,
    `  ${(summary.durationMs / 1000).toFixed(2)} s, ${formatRate(summary.guestBytes, summary.durationMs)}`,
  ].join('\n');
}

function describePull(summary: PullSummary): string {
  return [
    `pulled ${summary.name}${summary.parent ? ` (a diff of ${summary.parent}: pull it too for the chain)` : ''} from ${summary.store} ` +
      `to ${summary.destination}: ${formatBytes(summary.fileBytes)}, ` +
      `${summary.chunks} chunks, ${formatBytes(summary.bytesFetched)} fetched`,
    `  ${(summary.durationMs / 1000).toFixed(2)} s, ${formatRate(summary.guestBytes, summary.durationMs)}`,
  ].join('\n');
}

/** The name a pushed file gets: its file name without the extension. */
function defaultName(file: string): string {
  const base = basename(file);
  return base.slice(0, base.length - extname(base).length) || base;
}

export function registerPush(program: Command): void {
  storeOptions(
    program
      .command('push')
      .description('Push a snapshot file into a chunk store (deduplicated, encrypted; spec/STORE.md)')
      .argument('<file>', 'snapshot file, or - for standard input (then --name)')
      .argument('<store>', 'a directory or s3://bucket/prefix'),
  )
    .option('--name <name>', 'the name in the store (default: the file name without its extension)')
    .option(
      '--parent <name>',
      "a diff snapshot's parent in the store (default: the snapshot of the store with the diff's parent id); it must be pushed first",
    )
    .option(
      '--level <n>',
      'compress the stored chunks anew at this zstd level, 1..9, 0 for none (default: keep the encoding each chunk has in the snapshot)',
      integerOption('--level', 0, 9),
    )
    .option('--force', 'replace a snapshot of the same name')
    .option(
      '--threads <n>',
      'encoding threads (default: one per core, one more with the system libzstd)',
      integerOption('--threads', 0, 256),
    )
    .option('--json', 'print the summary as JSON')
    .option('-q, --quiet', 'no progress bar and no summary')
    .addHelpText(
      'after',
      helpAfter([
        'head -c 32 /dev/urandom > tenant.key',
        'vmsnap push guest.vmsnap /srv/snapshots --key-file tenant.key',
        'AWS_ENDPOINT_URL=http://127.0.0.1:7480 vmsnap push guest.vmsnap s3://fleet/snaps --key-file tenant.key --name web-1',
        'vmsnap save --sim -o - | vmsnap push - /srv/snapshots --name sim --key-file tenant.key',
        'vmsnap push monday.vmsnap /srv/snapshots --key-file tenant.key; vmsnap push tuesday.vmsnap /srv/snapshots --key-file tenant.key',
        '    # tuesday is a diff of monday: only its own chunks are stored, its manifest names monday',
      ]) + STORE_HELP,
    )
    .action(async (file: string, location: string, options: PushCommandOptions) => {
      const input = snapshotInput(file, 'push');
      if (file === '-' && !options.name) throw new CliError('push -: give --name NAME for a snapshot read from standard input', 'usage');
      const name = checkSnapshotName(options.name ?? defaultName(file));
      const store = await openStore(location, options, true);
      const progress = createProgress(options);
      try {
        progress.phase('pushing');
        let summary: PushSummary;
        const common = {
          level: options.level,
          force: options.force,
          parent: options.parent,
          threads: options.threads,
          parallel: options.parallel,
          onProgress: (p: { guestBytesDone: bigint; guestBytesTotal: bigint }) => progress.update(p.guestBytesDone, p.guestBytesTotal),
        };
        if (typeof input.source === 'string') {
          const reader = await openSnapshot(input.source, { threads: options.threads });
          try {
            // Chunks in reused memory, each released once named and its stored payload copied (issue 10: peak memory).
            const events = reader.events(undefined, { transient: true, payloads: true });
            summary = await pushSnapshot(events, store, name, { ...common, fileBytes: () => reader.fileSize });
          } finally {
            await reader.close();
          }
        } else {
          let bytes = 0n;
          // Counts the bytes as they pass: the size of the snapshot as a file, for `store stats`.
          const counted = new Transform({
            transform(piece: Buffer, _encoding, done) {
              bytes += BigInt(piece.length);
              done(null, piece);
            },
          });
          (input.source as NodeJS.ReadableStream).pipe(counted);
          summary = await pushSnapshot(readSnapshotStream(counted, { threads: options.threads }), store, name, {
            ...common,
            fileBytes: () => bytes,
          });
        }
        progress.done();
        if (options.json) printLine(toJson(summary));
        else if (!options.quiet) printLine(describePush(summary));
      } finally {
        progress.done();
        store.close();
      }
    });
}

interface PullCommandOptions extends StoreCommandOptions {
  output: string;
  force?: boolean;
  threads?: number;
  json?: boolean;
  quiet?: boolean;
}

export function registerPull(program: Command): void {
  storeOptions(
    program
      .command('pull')
      .description('Fetch a snapshot from a chunk store into a snapshot file')
      .argument('<snapshot>', 'STORE/NAME: a snapshot in a store (a directory or s3://bucket/prefix)'),
  )
    .requiredOption('-o, --output <file>', 'snapshot file to write, or - for standard output')
    .option('--force', 'replace an existing file')
    .option(
      '--threads <n>',
      'checking threads (default: one per core, one more with the system libzstd)',
      integerOption('--threads', 0, 256),
    )
    .option('--json', 'print the summary as JSON (to standard error when the snapshot goes to standard output)')
    .option('-q, --quiet', 'no progress bar and no summary')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap pull /srv/snapshots/guest -o guest.vmsnap --key-file tenant.key',
        'vmsnap pull s3://fleet/snaps/web-1 -o - --key-file tenant.key | vmsnap verify -',
        'vmsnap pull /srv/snapshots/tuesday -o tuesday.vmsnap --key-file tenant.key   # a diff: pulled as the diff file',
      ]) + STORE_HELP,
    )
    .action(async (reference: string, options: PullCommandOptions) => {
      const destination = options.output === '-' ? standardOutput('pull -o -') : options.output;
      if (typeof destination === 'string') resolveOutput(destination, { force: options.force, streamable: true });
      const { store, name } = await openStoreReference(reference, options);
      const progress = createProgress(options);
      try {
        progress.phase('pulling');
        const summary = await pullSnapshot(store, name, options.output === '-' ? (destination as never) : options.output, {
          force: options.force,
          threads: options.threads,
          parallel: options.parallel,
          onProgress: (p) => progress.update(p.guestBytesDone, p.guestBytesTotal),
        });
        progress.done();
        const report = options.output === '-' ? process.stderr : process.stdout;
        if (options.json) report.write(`${toJson(summary)}\n`);
        else if (!options.quiet) report.write(`${describePull(summary)}\n`);
      } finally {
        progress.done();
        store.close();
      }
    });
}
