/**
 * `vmsnap save`: a guest (simulated, or raw RAM and tag files) to a snapshot
 * file or to standard output. A file is written under a temporary name and
 * renamed when complete, so an interrupted save leaves the target untouched.
 */
import { PassThrough, type Writable } from 'node:stream';
import type { Command } from 'commander';
import { resolveOutput } from '../../src/io/output-file.js';
import { openChain, snapshotIdHex } from '../../src/reader/chain.js';
import { isStoreReference } from '../../src/store/chunk-store.js';
import type { PushSummary } from '../../src/store/push.js';
import { readKeyFile } from '../../src/store/tenant-keys.js';
import type { VmSource } from '../../src/vm/vm.js';
import { type SaveOptions, type SaveSummary, saveSnapshot } from '../../src/writer/save.js';
import { parseCreatedMs, parseSnapshotId, resolveChain } from '../chain-options.js';
import { CliError, toJson } from '../cli-support.js';
import { helpAfter } from '../help.js';
import { createProgress, type Progress } from '../progress.js';
import { collect, type WriterFlags, writerOptions } from '../save-options.js';
import { planSaveSource, type SourceOptions } from '../sources.js';
import { openStoreReference, type StoreCommandOptions, storeOptions } from '../store-options.js';
import { formatBytes, formatRate, integerOption, percent, sizeOption } from '../units.js';

export interface SaveCommandOptions extends SourceOptions, WriterFlags, StoreCommandOptions {
  encrypt?: boolean;
  output: string;
  parent?: string;
  parentChain?: string;
  snapshotId?: string;
  createdMs?: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** Saves in a "saving" phase of `progress`; shared with `demo`. */
export async function runSave(vm: VmSource, output: string | Writable, options: SaveOptions, progress: Progress): Promise<SaveSummary> {
  progress.phase('saving');
  try {
    return await saveSnapshot(vm, output, { ...options, onProgress: (p) => progress.update(p.guestBytesDone, p.guestBytesTotal) });
  } finally {
    progress.done();
  }
}

export function describeSave(summary: SaveSummary): string {
  const ratio = Number(summary.guestBytes) / Number(summary.fileBytes);
  const diff = summary.parentId
    ? [`  a diff of snapshot ${snapshotIdHex(summary.parentId)}: ${summary.changedPages} pages changed, given whole`]
    : [];
  return [
    `saved ${formatBytes(summary.guestBytes)} of guest memory ` +
      `(${summary.regions.length} regions, ${summary.vcpus} vCPUs) to ${summary.destination}`,
    ...diff,
    `  ${formatBytes(summary.fileBytes)} in ${summary.chunks} chunks, ${ratio.toFixed(2)}:1, ` +
      `tags ${formatBytes(summary.tagBytes)} = ${percent(summary.tagBytes, summary.guestBytes)} of RAM`,
    `  ${(summary.durationMs / 1000).toFixed(2)} s, ${formatRate(summary.guestBytes, summary.durationMs)}`,
  ].join('\n');
}

/**
 * Saves straight into a chunk store (-o STORE/NAME): the snapshot stream goes through a pipe into push, which
 * reads it as a pipe reader would (every check) and stores its chunks; no file is written.
 */
async function saveToStore(vm: VmSource, reference: string, options: SaveCommandOptions, saveOptions: SaveOptions, progress: Progress) {
  // Loaded here, not with the command: a save to a file does not pay for the push path's modules at start.
  const [{ pushSnapshot }, { readSnapshotStream }] = await Promise.all([
    import('../../src/store/push.js'),
    import('../../src/reader/stream.js'),
  ]);
  const { store, name } = await openStoreReference(reference, options, true);
  try {
    const pipe = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
    let fileBytes = 0n;
    const pushing = pushSnapshot(readSnapshotStream(pipe, { threads: options.threads }), store, name, {
      force: options.force,
      threads: options.threads,
      parallel: options.parallel,
      fileBytes: () => fileBytes,
    });
    // A push that fails (a name taken, the store gone) stops the save at its next write.
    pushing.catch((error: unknown) => pipe.destroy(error as Error));
    let summary: SaveSummary;
    try {
      summary = await runSave(vm, pipe, { ...saveOptions, force: undefined }, progress);
      fileBytes = summary.fileBytes;
      pipe.end();
    } catch (error) {
      pipe.destroy(error as Error);
      await pushing.catch(() => {});
      throw error;
    }
    const pushed: PushSummary = await pushing;
    return { summary: { ...summary, destination: `${store.description}/${name}` }, pushed };
  } finally {
    store.close();
  }
}

export function registerSave(program: Command): void {
  const command = program
    .command('save')
    .description('Save a guest with its MTE tags to a snapshot file or standard output')
    .option('--sim', 'source: a generated simulated guest (see --size, --seed, --page-size)')
    .option('--size <bytes>', 'simulated guest RAM size (default 256MiB)')
    .option('--seed <n>', 'simulated guest workload seed (default 1)')
    .option('--page-size <bytes>', 'host page size: 4096, 16384 or 65536 (default 4096; a --layout file gives its own)')
    .option('--ram <file>', 'source: a raw RAM image (regions from --layout or --region)')
    .option('--tags <file>', 'with --ram: the tag file (enables MTE)')
    .option(
      '--tag-layout <layout>',
      'with --tags: byte (one tag per byte, as KVM copies them) or packed (two per byte, as ELF cores); default byte',
    )
    .option('--layout <file>', 'with --ram: layout JSON (pageSize, tagLayout, regions; see docs)')
    .option(
      '--region <name:ipa:size[:mte][:ro]>',
      'with --ram: a region, in RAM file order (repeatable), e.g. ram:0x40000000:512MiB:mte',
      collect,
      [],
    )
    .requiredOption('-o, --output <file>', 'snapshot file to write, - for standard output, or STORE/NAME: a snapshot in a chunk store')
    .option('--level <n>', 'zstd level 1..9, 0 to store uncompressed (default 1)', integerOption('--level', 0, 99))
    .option(
      '--chunk-size <bytes>',
      'guest bytes per chunk, a multiple of the page size, at most 4MiB (default 1MiB)',
      sizeOption('--chunk-size'),
    )
    .option(
      '--threads <n>',
      'zstd calls at once (default: one per core, one more with the system libzstd; 0 compresses on the main thread)',
      integerOption('--threads', 0, 256),
    )
    .option('--annotate <key=value>', 'record an annotation in the snapshot (repeatable)', collect, [])
    .option(
      '--parent <file>',
      'save a diff snapshot: only the pages whose data or tags differ from this snapshot (a chain: its parents are found ' +
        "beside it, or named with --parent-chain); the chunk size is the parent's",
    )
    .option('--parent-chain <files>', "with --parent: the parent's chain, oldest first, comma-separated")
    .option(
      '--snapshot-id <hex>',
      'the snapshot id to record (32 hex digits; default random): with --created-ms, a save that matches a flattened chain',
    )
    .option('--created-ms <ms>', 'the creation time to record, in milliseconds since 1970 (default now)')
    .option('--force', 'replace an existing snapshot file (never one of the inputs), or a snapshot of the same name in a store')
    .option(
      '--encrypt',
      'encrypt the file with --key-file K (spec/STORE.md section 8); every command that reads it then takes --key-file K',
    )
    .option('--json', 'print the summary as JSON (to standard error when the snapshot goes to standard output)')
    .option('-q, --quiet', 'no progress bar and no summary')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap save --sim --size 512MiB --seed 7 -o guest.vmsnap',
        'vmsnap save --sim --page-size 65536 --level 3 --annotate host=lab1 -o guest.vmsnap',
        'vmsnap save --ram guest.ram --tags guest.tags --region flash0:0:4MiB:ro --region ram:0x40000000:512MiB:mte -o guest.vmsnap',
        'vmsnap save --ram guest.ram --tags guest.tags --layout guest.layout.json -o guest.vmsnap',
        'vmsnap save --sim -o - | ssh backup "cat > guest.vmsnap"',
        'vmsnap save --sim --seed 7 -o /srv/snapshots/guest-7 --key-file tenant.key',
        'vmsnap save --ram guest.ram --tags guest.tags --layout guest.layout.json --parent monday.vmsnap -o tuesday.vmsnap',
        'vmsnap save --sim --seed 8 --parent a.vmsnap --parent-chain a.vmsnap -o b.vmsnap',
        'head -c 32 /dev/urandom > guest.key && vmsnap save --sim --encrypt --key-file guest.key -o guest.vmsnap',
      ]),
    );
  storeOptions(command).action(async (options: SaveCommandOptions) => {
    if (options.output === '-' && process.stdout.isTTY)
      throw new CliError('-o -: standard output is a terminal; redirect it to a file or a pipe', 'usage');
    // A reader that goes away surfaces as a rejected write (EPIPE, exit 3), not as an unhandled 'error' event.
    if (options.output === '-') process.stdout.on('error', () => {});
    const planned = planSaveSource(options);
    if (options.parentChain && !options.parent) throw new CliError('--parent-chain needs --parent', 'usage');
    // Every option is checked before the source is built: a typo must not cost a guest generation.
    const parentChain = options.parent ? resolveChain(options.parent, options.parentChain) : [];
    const saveOptions: SaveOptions = {
      ...writerOptions(options, planned.pageSize, {}),
      force: options.force,
      inputs: [...planned.inputs, ...parentChain],
      snapshotId: options.snapshotId === undefined ? undefined : parseSnapshotId(options.snapshotId),
      createdMs: options.createdMs === undefined ? undefined : parseCreatedMs(options.createdMs),
    };
    const toStore = isStoreReference(options.output);
    if (options.encrypt && (!options.keyFile || toStore))
      throw new CliError(
        toStore ? '--encrypt is for files: a store encrypts everything it holds' : '--encrypt needs --key-file K',
        'usage',
      );
    const encryptionKey = options.encrypt ? readKeyFile(options.keyFile!) : undefined;
    if (options.output !== '-' && !toStore) resolveOutput(options.output, { ...saveOptions, streamable: true });
    const progress = createProgress(options);
    // Standard output may be carrying the snapshot itself.
    const report = options.output === '-' ? process.stderr : process.stdout;
    const people = !options.quiet && !options.json;
    // The source is named before any bar, so that the person watching knows what is being saved.
    if (people) report.write(`${planned.description}\n`);
    // The parent chain is opened and checked before the guest is built.
    const parent = parentChain.length ? await openChain(parentChain, { threads: options.threads }) : undefined;
    const source = planned.open();
    try {
      const writeOptions: SaveOptions = {
        ...saveOptions,
        encryptionKey,
        annotations: { ...source.annotations, ...saveOptions.annotations },
        diff: parent && { parent },
      };
      if (toStore) {
        const { summary, pushed } = await saveToStore(source.vm, options.output, options, writeOptions, progress);
        const { describePush } = await import('./store-push.js');
        if (people) report.write(`${describeSave(summary)}\n${describePush(pushed)}\n`);
        else if (options.json && !options.quiet) report.write(`${toJson({ source: planned.details, ...summary, pushed })}\n`);
        return;
      }
      const summary = await runSave(source.vm, options.output, writeOptions, progress);
      if (people) report.write(`${describeSave(summary)}\n`);
      else if (options.json && !options.quiet) report.write(`${toJson({ source: planned.details, ...summary })}\n`);
    } finally {
      source.close();
      await parent?.close();
    }
  });
}
