/**
 * `vmsnap store ls|stats|gc|verify STORE`: what a chunk store holds, how
 * much deduplication saves, removing chunks no snapshot references, and
 * checking every snapshot's chunks are present and authentic.
 */
import type { Command } from 'commander';
import { collectGarbage } from '../../src/store/gc.js';
import { type StoreStats, storeStats, takeInventory } from '../../src/store/inventory.js';
import { verifyStore } from '../../src/store/verify.js';
import { EXIT, toJson } from '../cli-support.js';
import { helpAfter, printLine } from '../help.js';
import { createProgress } from '../progress.js';
import { openStore, STORE_HELP, type StoreCommandOptions, storeOptions } from '../store-options.js';
import { formatBytes, integerOption } from '../units.js';

interface AdminOptions extends StoreCommandOptions {
  json?: boolean;
  quiet?: boolean;
  dryRun?: boolean;
  threads?: number;
}

function describeStats(stats: StoreStats): string {
  return [
    `${stats.store}: ${stats.snapshots} snapshots (${stats.diffSnapshots} diffs), ${formatBytes(stats.guestBytes)} of guest memory`,
    `  logical ${formatBytes(stats.logicalBytes)} (the snapshot files as pushed), stored ${formatBytes(stats.storedBytes)} ` +
      `(${stats.chunkObjects} chunk objects, ${formatBytes(stats.manifestBytes)} of manifests): dedup ratio ${stats.dedupRatio.toFixed(2)}`,
    `  ${stats.chunkReferences} chunk references; ${stats.unreferencedChunks} chunks (${formatBytes(stats.unreferencedBytes)}) ` +
      'referenced by no snapshot (store gc removes them)',
    ...(stats.unreadableManifests.length ? [`  manifests that do not open with this key: ${stats.unreadableManifests.join(', ')}`] : []),
  ].join('\n');
}

function adminCommand(parent: Command, name: string, description: string, examples: string[]): Command {
  return storeOptions(parent.command(name).description(description).argument('<store>', 'a directory or s3://bucket/prefix'))
    .option('--json', 'machine-readable output')
    .option('-q, --quiet', 'no progress bar; only errors')
    .addHelpText('after', helpAfter(examples) + STORE_HELP);
}

export function registerStore(program: Command): void {
  const store = program.command('store').description('Look after a chunk store: ls, stats, gc, verify');

  adminCommand(store, 'ls', 'List the snapshots in a store', [
    'vmsnap store ls /srv/snapshots --key-file tenant.key',
    'vmsnap store ls s3://fleet/snaps --key-file tenant.key --json',
  ]).action(async (location: string, options: AdminOptions) => {
    const opened = await openStore(location, options);
    try {
      const inventory = await takeInventory(opened);
      const snapshots = inventory.snapshots.map(({ name, manifest, manifestBytes }) => ({
        name,
        snapshotId: manifest.metadata.snapshotId,
        parent: manifest.diff?.parentName ?? null,
        parentId: manifest.diff ? manifest.metadata.parentId : null,
        createdMs: manifest.metadata.createdMs,
        guestBytes: manifest.metadata.regions.reduce((sum, region) => sum + region.size, 0n),
        fileBytes: manifest.fileBytes,
        regions: manifest.metadata.regions.length,
        chunks: manifest.chunkNames.length,
        manifestBytes,
      }));
      const unreadable = inventory.unreadable.map((u) => ({ name: u.name, code: u.error.code, message: u.error.message }));
      if (options.json) printLine(toJson({ store: opened.description, snapshots, unreadable }));
      else if (!options.quiet) {
        for (const s of snapshots)
          printLine(
            `${s.name}  ${new Date(Number(s.createdMs)).toISOString()}  ${formatBytes(s.guestBytes)} guest  ` +
              `${formatBytes(s.fileBytes)} file  ${s.chunks} chunks${s.parent ? `  diff of ${s.parent}` : ''}`,
          );
        for (const u of unreadable) printLine(`${u.name}  UNREADABLE: ${u.message}`);
      }
      if (unreadable.length) process.exitCode = EXIT.invalid;
    } finally {
      opened.close();
    }
  });

  adminCommand(store, 'stats', 'Logical bytes, stored bytes and the dedup ratio of a store', [
    'vmsnap store stats /srv/snapshots --key-file tenant.key',
    'vmsnap store stats s3://fleet/snaps --key-file tenant.key --json | jq .dedupRatio',
  ]).action(async (location: string, options: AdminOptions) => {
    const opened = await openStore(location, options);
    try {
      const stats = storeStats(opened, await takeInventory(opened));
      if (options.json) printLine(toJson(stats));
      else if (!options.quiet) printLine(describeStats(stats));
    } finally {
      opened.close();
    }
  });

  adminCommand(store, 'gc', 'Remove the chunks no snapshot references (refuses while a push runs; spec/STORE.md)', [
    'vmsnap store gc /srv/snapshots --key-file tenant.key --dry-run',
    'vmsnap store gc s3://fleet/snaps --key-file tenant.key',
  ])
    .option('--dry-run', 'report what would be removed, remove nothing')
    .action(async (location: string, options: AdminOptions) => {
      const opened = await openStore(location, options);
      try {
        const summary = await collectGarbage(opened, { dryRun: options.dryRun });
        if (options.json) printLine(toJson(summary));
        else if (!options.quiet)
          printLine(
            `${summary.store}: ${summary.dryRun ? 'would remove' : 'removed'} ${summary.chunksRemoved} chunks ` +
              `(${formatBytes(summary.bytesRemoved)}), kept ${summary.chunksKept} referenced by ${summary.snapshots} snapshots`,
          );
      } finally {
        opened.close();
      }
    });

  adminCommand(store, 'verify', 'Check every snapshot of a store: manifests open, chunks present, authentic and valid', [
    'vmsnap store verify /srv/snapshots --key-file tenant.key',
    'vmsnap store verify s3://fleet/snaps --key-file tenant.key --json | jq .problems',
  ])
    .option(
      '--threads <n>',
      'decoding threads (default: one per core, one more with the system libzstd)',
      integerOption('--threads', 0, 256),
    )
    .action(async (location: string, options: AdminOptions) => {
      const opened = await openStore(location, options);
      const progress = createProgress(options);
      try {
        progress.phase('verifying');
        const report = await verifyStore(opened, {
          parallel: options.parallel,
          threads: options.threads,
          onProgress: (done, total) => progress.update(done, total),
        });
        progress.done();
        if (options.json) printLine(toJson(report));
        else {
          printLine(
            `${report.store}: ${report.ok ? 'OK' : 'INVALID'}, ${report.snapshots} snapshots, ${report.chunksChecked} chunks ` +
              `(${formatBytes(report.bytesChecked)}) checked, ${report.problems.length} problems`,
          );
          for (const p of report.problems) printLine(`  ${p.snapshot}: error ${p.code}: ${p.message}`);
        }
        if (!report.ok) process.exitCode = EXIT.invalid;
      } finally {
        progress.done();
        opened.close();
      }
    });
}
