/**
 * `vmsnap info FILE`: what a snapshot holds, from its header, metadata and
 * index alone (no chunk is decompressed, so it is instant on any size):
 * regions and their IPA ranges, chunk counts, the compression ratio, tag
 * bytes as a share of RAM, vCPUs, blobs and annotations; for a snapshot
 * imported from a Linux process core, the process and its signal (read from
 * the blob of its notes, and one tag chunk for the tag at the fault). For a diff
 * snapshot, also its parent and the pages it gives, and its chain as found
 * beside it (or named with --chain; only the links' first sections are read).
 * For an encrypted file (spec/STORE.md section 8), its container too; without
 * its key, only that (version, segments, length) can be read: info prints it
 * and exits 2, as every command that reads the file without its key does.
 */
import type { Command } from 'commander';
import { type ProcessCore, readProcessCore } from '../../src/forensics/process-core.js';
import { VmsnapError } from '../../src/format/errors.js';
import { readSealedFacts, SealedFileError, type SealedFileFacts } from '../../src/io/sealed-file.js';
import { openSnapshot } from '../../src/reader/open.js';
import { describeSnapshot, type SnapshotInfo } from '../../src/reader/snapshot-info.js';
import { resolveChain } from '../chain-options.js';
import { CliError } from '../cli-support.js';
import { helpAfter, printJson, printLine } from '../help.js';
import { formatBytes, hex, percent } from '../units.js';
import { printProcessSummary } from './process-core-text.js';

/** A diff's chain, oldest first, or why it could not be found (a missing parent does not stop `info`). */
interface ChainInfo {
  files: string[] | null;
  problem: string | null;
}

function chainInfo(file: string, chainOption: string | undefined): ChainInfo {
  try {
    return { files: resolveChain(file, chainOption), problem: null };
  } catch (error) {
    if (!(error instanceof VmsnapError)) throw error;
    return { files: null, problem: error.message };
  }
}

function describeContainer(file: string, facts: SealedFileFacts): string {
  return (
    `${file}: encrypted vmsnap file, container version ${facts.containerVersion}, ${formatBytes(facts.fileBytes)} ` +
    `(${facts.fileBytes} bytes): ${facts.aead}, ${facts.segments} segments of ${formatBytes(BigInt(facts.segmentSize))}, ` +
    `a snapshot of ${facts.snapshotBytes} bytes inside`
  );
}

function printInfo(info: SnapshotInfo, chain: ChainInfo | null, processCore: ProcessCore | null, sealed: SealedFileFacts | null): void {
  const f = info.format;
  if (sealed) printLine(describeContainer(info.file, sealed));
  printLine(`${info.file}: vmsnap format ${f.version}, ${formatBytes(info.fileBytes)} (${info.fileBytes} bytes)`);
  if (info.diff) {
    printLine(
      `  a DIFF snapshot of parent ${info.parentId}: ${info.diff.changedPages} of ${info.diff.guestPages} pages changed ` +
        `(${percent(info.diff.changedPages, info.diff.guestPages)}), given whole; the rest is the parent's`,
    );
    if (chain?.files) printLine(`  chain (oldest first): ${chain.files.join(' <- ')}`);
    if (chain?.problem) printLine(`  chain: ${chain.problem}`);
  }
  printLine(
    `  pages ${f.pageSize} bytes, ${f.pagesPerChunk} per chunk; ` +
      `MTE granule ${f.granuleSize} bytes, ${f.tagBits}-bit tags; codec ${f.codec}`,
  );
  printLine(
    `  snapshot ${info.snapshotId}${info.parentId ? `, parent ${info.parentId}` : ''}, ` +
      `created ${info.created ?? `at ${info.createdMs} ms (past the calendar)`} by ${info.tool}`,
  );
  printLine(`regions (${info.regions.length}):`);
  for (const r of info.regions) {
    const flags = [r.mte ? 'mte' : 'no tags', r.readOnly ? 'read-only' : ''].filter(Boolean).join(', ');
    printLine(`  ${r.index} ${r.name} (slot ${r.slot}): IPA ${hex(r.guestAddress)}-${hex(r.guestEnd)} ${formatBytes(r.size)}, ${flags}`);
    printLine(`      ${r.ramChunks} RAM chunks ${formatBytes(r.ramBytes)}, ${r.tagChunks} tag chunks ${formatBytes(r.tagBytes)}`);
  }
  const t = info.totals;
  printLine(
    `totals: ${formatBytes(t.guestBytes)} of guest memory in ${t.ramChunks + t.tagChunks} chunks (${t.ramChunks} RAM, ${t.tagChunks} tag)`,
  );
  printLine(
    `  compression ${t.compressionRatio.toFixed(2)}:1; RAM sections ${formatBytes(t.ramBytes)}, ` +
      `tag sections ${formatBytes(t.tagBytes)} = ${percent(t.tagBytes, t.guestBytes)} of RAM`,
  );
  printLine(`vCPUs (${info.vcpus.length}): ${info.vcpus.map((v) => `${v.id} (${v.registers} registers)`).join(', ') || 'none'}`);
  printLine(`blobs (${info.blobs.length}): ${info.blobs.map((b) => `${b.name} (${formatBytes(b.bytes)})`).join(', ') || 'none'}`);
  if (processCore) printProcessSummary(processCore);
  const annotations = Object.entries(info.annotations);
  printLine(`annotations (${annotations.length}):`);
  for (const [key, value] of annotations) printLine(`  ${key}=${value}`);
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('Show what a snapshot holds: format, regions with IPA ranges, chunks, compression, tag share, vCPUs, blobs, annotations')
    .argument('<file>', 'snapshot file (random access: not "-")')
    .option('--json', 'machine-readable output on standard output')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap info guest.vmsnap',
        'vmsnap info guest.vmsnap --json | jq .totals',
        'vmsnap info tuesday.vmsnap   # a diff: its parent and chain',
        'vmsnap info sealed.vmsnap    # encrypted, no key: its container version and length only, exit code 2',
        'vmsnap info sealed.vmsnap --key-file guest.key',
      ]),
    )
    .option('--chain <files>', "a diff's chain, oldest first, comma-separated (default: its parents found beside it)")
    .action(async (file: string, options: { json?: boolean; chain?: string }) => {
      // The summary needs the index, which a pipe delivers last; `vmsnap verify -` reads a pipe.
      if (file === '-') throw new CliError('info needs a file it can seek in; for a pipe use `vmsnap verify -`', 'usage');
      let reader: Awaited<ReturnType<typeof openSnapshot>>;
      try {
        reader = await openSnapshot(file, { threads: 0 });
      } catch (error) {
        if (!(error instanceof SealedFileError && error.code === 'snapshot-encrypted')) throw error;
        // No key: what the container shows (nothing of the snapshot), then the usual refusal (exit 2).
        const facts = readSealedFacts(file)!;
        if (options.json) printJson({ file, encrypted: facts, keyNeeded: true });
        else
          printLine(`${describeContainer(file, facts)}\n  the snapshot (format version, regions, everything) needs its key: --key-file K`);
        throw error;
      }
      // Opened, so a file that can be read again from the start.
      const sealed = readSealedFacts(file);
      try {
        const info = await describeSnapshot(reader);
        const chain = reader.diff ? chainInfo(file, options.chain) : null;
        const processCore = await readProcessCore(reader);
        if (options.json) printJson({ ...info, chain, processCore, encrypted: sealed });
        else printInfo(info, chain, processCore, sealed);
      } finally {
        await reader.close();
      }
    });
}
