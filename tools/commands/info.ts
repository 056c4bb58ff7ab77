/**
 * `vmsnap info FILE`: what a snapshot holds, from its header, metadata and
 * index alone (no chunk is decompressed, so it is instant on any size):
 * regions and their IPA ranges, chunk counts, the compression ratio, tag
 * bytes as a share of RAM, vCPUs, blobs and annotations.
 */
import type { Command } from 'commander';
import { openSnapshot } from '../../src/reader/open.js';
import { describeSnapshot, type SnapshotInfo } from '../../src/reader/snapshot-info.js';
import { CliError } from '../cli-support.js';
import { helpAfter, printJson, printLine } from '../help.js';
import { formatBytes, hex, percent } from '../units.js';

function printInfo(info: SnapshotInfo): void {
  const f = info.format;
  printLine(`${info.file}: vmsnap format ${f.version}, ${formatBytes(info.fileBytes)} (${info.fileBytes} bytes)`);
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
    .addHelpText('after', helpAfter(['vmsnap info guest.vmsnap', 'vmsnap info guest.vmsnap --json | jq .totals']))
    .action(async (file: string, options: { json?: boolean }) => {
      // The summary needs the index, which a pipe delivers last; `vmsnap verify -` reads a pipe.
      if (file === '-') throw new CliError('info needs a file it can seek in; for a pipe use `vmsnap verify -`', 'usage');
      const reader = await openSnapshot(file, { threads: 0 });
      try {
        const info = await describeSnapshot(reader);
        if (options.json) printJson(info);
        else printInfo(info);
      } finally {
        await reader.close();
      }
    });
}
