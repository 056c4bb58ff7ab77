/**
 * `vmsnap show FILE`: the complete decode of a snapshot (metadata, regions,
 * every vCPU's registers by name, blobs, the chain), like CRIU's `crit show`.
 */
import type { Command } from 'commander';
import { type SnapshotShow, showSnapshot } from '../../src/forensics/snapshot-show.js';
import { formatBytes, hex } from '../units.js';
import { EXIT_CODES_HELP, examples, printJson, printLine, withSnapshot } from './forensics-support.js';
import { printProcessCore } from './process-core-text.js';

function printShow(s: SnapshotShow, vcpu: number | undefined): void {
  const f = s.format;
  printLine(
    `${s.file}: vmsnap format ${f.version}, ${s.fileBytes} bytes; pages ${f.pageSize}, ${f.pagesPerChunk} per chunk; codec ${f.codec}`,
  );
  printLine(`snapshot ${s.snapshotId}, created ${s.created ?? `${s.createdMs} ms`} by ${s.tool}`);
  printLine(`chain: ${s.chain.map((c) => c.snapshotId + (c.file ? '' : ' (parent, not found beside it)')).join(' <- ')}`);
  printLine(`regions (${s.regions.length}):`);
  for (const r of s.regions) {
    printLine(
      `  ${r.index} ${r.name} slot ${r.slot}: ${hex(r.guestAddress)}-${hex(r.guestEnd)} ${formatBytes(r.size)}` +
        `${r.mte ? ', mte' : ''}${r.readOnly ? ', read-only' : ''}; ${r.ramChunks} RAM chunks, ${r.tagChunks} tag chunks`,
    );
  }
  for (const v of s.vcpuRegisters) {
    if (vcpu !== undefined && v.id !== vcpu) continue;
    printLine(`vCPU ${v.id} (${v.registers.length} registers):`);
    // Registers of up to 64 bits three to a line; the 128-bit vector registers one to a line.
    let row: string[] = [];
    const flush = () => {
      if (row.length) printLine(`  ${row.join('  ')}`);
      row = [];
    };
    for (const r of v.registers) {
      if (r.bits > 64) {
        flush();
        printLine(`  ${r.name.padEnd(22)} ${r.hex}`);
        continue;
      }
      row.push(`${r.name.padEnd(22)} ${r.hex}`);
      if (row.length === 3) flush();
    }
    flush();
  }
  if (s.processCore) printProcessCore(s.processCore);
  printLine(`blobs (${s.blobs.length}): ${s.blobs.map((b) => `${b.name} (${b.bytes} bytes)`).join(', ') || 'none'}`);
  const annotations = Object.entries(s.annotations);
  printLine(`annotations (${annotations.length}):`);
  for (const [key, value] of annotations) printLine(`  ${key}=${value}`);
}

export function registerShow(program: Command): void {
  program
    .command('show')
    .description(
      "Everything a snapshot says, decoded: metadata, regions, every vCPU's registers by name, blobs, the chain; " +
        'for a snapshot imported from a Linux process core, its signal, process, threads, mappings and auxv',
    )
    .argument('<file>', 'snapshot file')
    .option('--vcpu <id>', 'registers of this vCPU only (text output)')
    .option('--json', 'JSON: info plus vcpuRegisters [{id, registers: [{name, id, bits, value, hex}]}], chain and processCore')
    .addHelpText(
      'after',
      examples([
        'vmsnap show guest.vmsnap',
        'vmsnap show guest.vmsnap --vcpu 1',
        'vmsnap show guest.vmsnap --json | jq .vcpuRegisters[0]',
      ]) + EXIT_CODES_HELP,
    )
    .action(async (file: string, options: { vcpu?: string; json?: boolean }) => {
      const shown = await withSnapshot(file, (reader) => showSnapshot(reader));
      if (options.json) printJson(shown);
      else printShow(shown, options.vcpu === undefined ? undefined : Number(options.vcpu));
    });
}
