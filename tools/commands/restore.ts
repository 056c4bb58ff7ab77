import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { RawFilesVm } from '../../src/backends/raw-files/raw-files-vm.js';
import type { SnapshotMetadata } from '../../src/format/model.js';
import type { SnapshotEventSource } from '../../src/reader/events.js';
import { type RestoreSummary, restoreSnapshot } from '../../src/reader/restore.js';
import { isStoreReference } from '../../src/store/chunk-store.js';
import { StoredChain } from '../../src/store/stored-chain.js';
import { compareVms, type VmComparison } from '../../src/validate/compare.js';
import { ComparingTarget } from '../../src/validate/comparing-target.js';
import { TagCopyError } from '../../src/vm/tag-copy.js';
import type { Vm, VmFactory, VmTarget } from '../../src/vm/vm.js';
import { workloadFromAnnotations } from '../../src/workload/annotations.js';
import { GeneratedGuest } from '../../src/workload/generated-guest.js';
import { isDiffFile, parentsOf, resolveChain } from '../chain-options.js';
import { CliError, EXIT, snapshotInput, toJson } from '../cli-support.js';
import { helpAfter, printLine } from '../help.js';
import { createProgress, type Progress } from '../progress.js';
import { type RawTargetOptions, rawTargetFiles } from '../raw-files-options.js';
import { ScratchSimulatedVmFactory } from '../scratch-vm.js';
import { parseSimGuest, type SimGuestSpec } from '../sim-guest.js';
import { openStoreReference, type StoreCommandOptions, storeOptions } from '../store-options.js';
import { formatBytes, formatRate, hex, integerOption } from '../units.js';

export interface RestoreCommandOptions extends RawTargetOptions, StoreCommandOptions {
  chain?: string;
  compareSim?: boolean;
  seed?: string;
  size?: string;
  threads?: number;
  json?: boolean;
  quiet?: boolean;
}

/** Restores in a "restoring" phase of `progress`; shared with `demo`. */
export async function runRestore<T extends VmTarget>(
  source: string | Readable | NodeJS.ReadableStream | SnapshotEventSource,
  factory: VmFactory<T>,
  options: { threads?: number; parents?: readonly string[] },
  progress: Progress,
) {
  progress.phase('restoring');
  try {
    return await restoreSnapshot(source, factory, {
      threads: options.threads,
      parents: options.parents,
      onProgress: (p) => progress.update(p.guestBytesDone, p.guestBytesTotal),
    });
  } finally {
    progress.done();
  }
}

/** A restore's summary as the command reports it: `vcpusSkipped` vCPUs of the snapshot were not restored (raw files keep no registers). */
export type RestoreReport = RestoreSummary & { readonly vcpusSkipped?: number };

export function describeRestore(summary: RestoreReport, target: string): string {
  const skipped = summary.vcpusSkipped ? ` (${summary.vcpusSkipped} not restored: raw files keep no registers)` : '';
  return [
    `restored ${formatBytes(summary.guestBytes)} of guest memory into ${target}: ${summary.ramPagesWritten} pages written, ` +
      `${formatBytes(summary.taggedBytes)} tagged in ${summary.tagCalls} tag copies, ${summary.vcpus} vCPUs${skipped}`,
    `  ${(summary.durationMs / 1000).toFixed(2)} s, ${formatRate(summary.guestBytes, summary.durationMs)}`,
  ].join('\n');
}

/**
 * Raw files keep no vCPU registers (restore created the vCPUs, the files dropped what was set on them): the summary
 * says so, `vcpus: 0` and `vcpusSkipped: N`. The layout written on close records which regions keep tags exactly as
 * the snapshot says, including a tagged region whose tags are all zero (it got no tag write).
 */
function finishRawFiles(vm: RawFilesVm, restored: { metadata: SnapshotMetadata; summary: RestoreSummary }, tagsOut: string | undefined) {
  const tagged = restored.metadata.regions.filter((region) => region.mte);
  if (tagged.length && !tagsOut) {
    throw new CliError(
      `the snapshot keeps the MTE tags of region ${tagged.map((r) => r.name).join(', ')}; give --tags-out FILE to restore them`,
      'usage',
    );
  }
  vm.markTaggedRegions(restored.metadata.regions);
  return restoreReport(restored.summary, 0, vm.vcpusNotKept);
}

/** The summary with `vcpusSkipped` beside `vcpus`. */
function restoreReport(summary: RestoreSummary, vcpus: number, vcpusSkipped: number): RestoreReport {
  const { durationMs, ...rest } = summary;
  return { ...rest, vcpus, vcpusSkipped, durationMs };
}

export function describeComparison(comparison: VmComparison): string {
  const head =
    `compare: ${comparison.pagesCompared} pages and ${comparison.granulesCompared} tag granules, ` +
    `${comparison.equal ? 'identical' : 'DIFFERENT'}`;
  const lines = comparison.differences.map(
    (d) => `  ${d.kind}${d.guestAddress === undefined ? '' : ` at IPA ${hex(d.guestAddress)}`}: ${d.message}`,
  );
  return [head, ...lines].join('\n');
}

/** The guest to compare with: the one the snapshot's annotations describe, with any option given overriding it. */
function comparisonSpec(options: RestoreCommandOptions, annotations: Readonly<Record<string, string>>, pageSize: number): SimGuestSpec {
  const recorded = workloadFromAnnotations(annotations);
  if (!recorded && (options.seed === undefined || options.size === undefined)) {
    throw new CliError('--compare-sim: the snapshot does not record a simulated guest; give --seed and --size', 'usage');
  }
  return parseSimGuest({
    size: options.size ?? `${recorded!.sizeMiB}MiB`,
    seed: options.seed ?? String(recorded!.seed),
    pageSize: String(recorded?.pageSize ?? pageSize),
  });
}

function checkTargetOptions(options: RestoreCommandOptions): void {
  if (options.ramOut) return;
  const stray = options.tagsOut
    ? '--tags-out'
    : options.layoutOut
      ? '--layout-out'
      : options.tagLayout
        ? '--tag-layout'
        : options.force
          ? '--force'
          : undefined;
  if (stray) throw new CliError(`${stray} needs --ram-out FILE`, 'usage');
}

/**
 * Compares raw files restored with the guest regenerated on demand, in a phase of `progress`, chunk by chunk.
 * Raw files keep no vCPU registers: memory and tags only.
 */
function compareRawFiles(vm: Vm, spec: SimGuestSpec, progress: Progress): VmComparison {
  try {
    progress.phase('comparing');
    return compareVms(new GeneratedGuest({ ...spec, vcpus: 0 }), vm, { onProgress: (done, total) => progress.update(done, total) });
  } finally {
    progress.done();
  }
}

/**
 * The restore target of --compare-sim without --ram-out: it keeps nothing and compares every write with the guest
 * the snapshot's annotations describe (or --seed/--size), generated on demand; memory stays bounded by the chunk.
 */
function comparingSimFactory(options: RestoreCommandOptions): VmFactory<ComparingTarget> {
  return {
    backend: 'comparison',
    createVm: (snapshot) => {
      const spec = comparisonSpec(options, snapshot?.metadata?.annotations ?? {}, snapshot?.pageSize ?? 4096);
      return new ComparingTarget(new GeneratedGuest(spec));
    },
  };
}

/** Checks the pages restore left alone, once it is done, in a phase of `progress`. */
function finishComparison(target: ComparingTarget, progress: Progress): VmComparison {
  try {
    progress.phase('checking unwritten pages');
    return target.finish((done, total) => progress.update(done, total));
  } finally {
    progress.done();
  }
}

/**
 * The snapshot to restore: a file, standard input, or STORE/NAME in a chunk store, whose chunks are fetched in
 * parallel and written as they arrive, in the restore order KVM needs (src/store/stored-chain.ts; a diff with its chain).
 */
async function restoreInput(
  name: string,
  options: RestoreCommandOptions,
): Promise<{ source: string | NodeJS.ReadableStream | SnapshotEventSource; inputs: string[]; parents: string[]; close(): void }> {
  if (!isStoreReference(name)) {
    const input = snapshotInput(name, 'restore');
    // A diff restores with its parents: named, or found beside it by snapshot id (only their first sections are read).
    const parents =
      name === '-'
        ? (options.chain?.split(',').filter(Boolean) ?? [])
        : options.chain !== undefined || isDiffFile(name)
          ? parentsOf(resolveChain(name, options.chain))
          : [];
    return { source: input.source, inputs: [...(name === '-' ? [] : [name]), ...parents], parents, close: () => {} };
  }
  if (options.chain)
    throw new CliError('--chain: a diff in a chunk store finds its chain in the store (its manifest names its parent)', 'usage');
  const { store, name: stored } = await openStoreReference(name, options);
  try {
    // A diff restores with its chain, resolved from the store alone.
    const snapshot = await StoredChain.open(store, stored, { parallel: options.parallel, threads: options.threads });
    return { source: snapshot, inputs: [], parents: [], close: () => store.close() };
  } catch (error) {
    store.close();
    throw error;
  }
}

export function registerRestore(program: Command): void {
  const command = program
    .command('restore')
    .description(
      'Restore a snapshot into a fresh simulated VM or into raw RAM and tag files, optionally comparing it with the regenerated original',
    )
    .argument('<source>', 'snapshot file, - for standard input, or STORE/NAME: a snapshot in a chunk store (with --key-file)')
    .option(
      '--ram-out <file>',
      'restore into raw files: the RAM image to create (default: a simulated VM); raw files keep no vCPU registers ' +
        "and take any slot number and guest address the format allows, where the simulated VM keeps KVM's limits " +
        '(memslot ids 0..32766, a 52-bit IPA space)',
    )
    .option('--tags-out <file>', 'with --ram-out: the tag file to create')
    .option('--tag-layout <layout>', 'with --tags-out: byte (one tag per byte) or packed (two per byte); default byte')
    .option('--layout-out <file>', 'with --ram-out: write the layout JSON (for `save --ram ... --layout`; docs/raw-layout.md)')
    .option('--force', 'with --ram-out: replace existing files')
    .option(
      '--chain <files>',
      "a diff snapshot's chain, oldest first, comma-separated (default: its parents are found by snapshot id among the " +
        '*.vmsnap files beside it); with -, the parents of the diff read from standard input',
    )
    .option(
      '--compare-sim',
      'compare the restored VM with the simulated guest regenerated from its seed (recorded in the snapshot, or --seed/--size)',
    )
    .option('--seed <n>', 'with --compare-sim: the workload seed (default: the one the snapshot records)')
    .option('--size <bytes>', 'with --compare-sim: the guest RAM size (default: the one the snapshot records)')
    .option(
      '--threads <n>',
      'zstd calls at once (default: one per core, one more with the system libzstd; 0 decodes on the main thread)',
      integerOption('--threads', 0, 256),
    )
    .option('--json', 'print the summary (and comparison) as JSON')
    .option('-q, --quiet', 'no progress bar and no summary')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap restore guest.vmsnap --compare-sim',
        'vmsnap save --sim --seed 7 -o - | vmsnap restore - --compare-sim',
        'vmsnap restore guest.vmsnap --ram-out guest.ram --tags-out guest.tags --layout-out guest.layout.json',
        'vmsnap restore /srv/snapshots/guest --key-file tenant.key --compare-sim',
        'vmsnap restore s3://fleet/snaps/web-1 --key-file tenant.key --ram-out web-1.ram --tags-out web-1.tags',
        'vmsnap restore tuesday.vmsnap --compare-sim     # a diff: its parents are found beside it',
        'vmsnap restore c.vmsnap --chain a.vmsnap,b.vmsnap,c.vmsnap',
        'ssh host cat c.vmsnap | vmsnap restore - --chain a.vmsnap,b.vmsnap',
      ]),
    );
  storeOptions(command).action(async (name: string, options: RestoreCommandOptions) => {
    checkTargetOptions(options);
    const input = await restoreInput(name, options);
    // Into the simulated VM, the guest goes to scratch files, freed once the VM is closed.
    const scratch = options.ramOut || options.compareSim ? undefined : new ScratchSimulatedVmFactory();
    try {
      await restoreAction(name, input.source, input.inputs, { ...options, parents: input.parents }, scratch);
    } finally {
      input.close();
      scratch?.close();
    }
  });
}

async function restoreAction(
  name: string,
  source: string | NodeJS.ReadableStream | SnapshotEventSource,
  inputs: string[],
  options: RestoreCommandOptions & { parents: string[] },
  scratch: ScratchSimulatedVmFactory | undefined,
): Promise<void> {
  // Raw outputs are checked and made under temporary names before the snapshot is read.
  const rawFiles = options.ramOut ? rawTargetFiles({ ...options, ramOut: options.ramOut }, inputs) : undefined;
  const factory: VmFactory<VmTarget> = rawFiles?.factory ?? (options.compareSim ? comparingSimFactory(options) : scratch!);
  const target = options.ramOut ? `raw files ${[options.ramOut, options.tagsOut].filter(Boolean).join(' + ')}` : 'a simulated VM';
  const targetDetails = options.ramOut
    ? {
        kind: 'raw-files',
        ram: options.ramOut,
        tags: options.tagsOut ?? null,
        tagLayout: options.tagLayout ?? 'byte',
        layout: options.layoutOut ?? null,
      }
    : { kind: options.compareSim ? 'comparison' : 'simulated' };
  const progress = createProgress(options);
  const restored = await runRestore(source, factory, options, progress).catch((error: unknown) => {
    // restoreSnapshot closed the half-written target: its temporary files go, the targets stay as they were.
    rawFiles?.abort();
    if (error instanceof TagCopyError && options.ramOut && !options.tagsOut) {
      throw new CliError(
        `the snapshot holds MTE tags (the first at IPA ${hex(error.guestAddress)}); give --tags-out FILE to restore them`,
        'usage',
      );
    }
    throw error;
  });
  let comparison: VmComparison | undefined;
  let summary = restoreReport(restored.summary, restored.summary.vcpus, 0);
  try {
    if (restored.vm instanceof RawFilesVm) {
      summary = finishRawFiles(restored.vm, restored, options.tagsOut);
      if (options.compareSim) {
        const spec = comparisonSpec(options, restored.metadata.annotations, restored.vm.pageSize);
        comparison = compareRawFiles(restored.vm, spec, progress);
      }
    } else if (restored.vm instanceof ComparingTarget) comparison = finishComparison(restored.vm, progress);
    // Raw files are flushed, their layout written, and only then put in place of the targets.
    restored.vm.close();
    rawFiles?.commit();
  } catch (error) {
    restored.vm.close();
    rawFiles?.abort();
    throw error;
  }
  const chain = options.parents.length ? { chain: [...options.parents, name] } : {};
  if (options.json) printLine(toJson({ source: name, ...chain, target: targetDetails, summary, comparison }));
  else if (!options.quiet) {
    printLine(describeRestore(summary, target));
    if (comparison) printLine(describeComparison(comparison));
    if (comparison && summary.vcpusSkipped) printLine('  (raw files keep no vCPU registers: registers were not compared)');
    else if (comparison && summary.vcpus === 0)
      printLine('  (the snapshot holds no vCPU state, as from raw files: registers were not compared)');
  }
  if (comparison && !comparison.equal) process.exitCode = EXIT.differs;
}
