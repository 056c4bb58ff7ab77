/** `vmsnap export core FILE -o guest.core`: an AArch64 ELF core that GDB reads, tags included. */
import type { Command } from 'commander';
import { exportCore } from '../../src/forensics/core-export.js';
import { formatBytes } from '../../src/units.js';
import { commandGroup, EXIT_CODES_HELP, examples, printJson, printLine, withSnapshot } from './forensics-support.js';

export function registerExportCore(program: Command): void {
  commandGroup(program, 'export', 'Write a snapshot in another format')
    .command('core')
    .description(
      'An AArch64 ELF core: a PT_LOAD per region at its guest physical address, a PT_AARCH64_MEMTAG_MTE segment per MTE region, ' +
        'NT_PRSTATUS per vCPU, NT_AUXV with HWCAP2_MTE, and a VMSNAP note for import. ' +
        'Zero pages are left as holes (a sparse file), so the file takes disk only for used pages',
    )
    .argument('<file>', 'snapshot file')
    .requiredOption('-o, --output <guest.core>', 'core file to write (a seekable file: holes need seeking)')
    .option('--json', 'machine-readable summary')
    .addHelpText(
      'after',
      examples([
        'vmsnap export core guest.vmsnap -o guest.core',
        "gdb-multiarch -nx -batch -ex 'core-file guest.core' -ex 'memory-tag print-allocation-tag 0x40001000' -ex 'x/4xgm 0x40001000'",
      ]) + EXIT_CODES_HELP,
    )
    .action(async (file: string, options: { output: string; json?: boolean }) => {
      const summary = await withSnapshot(file, (reader) => exportCore(reader, options.output));
      if (options.json) printJson(summary);
      else {
        printLine(`wrote ${summary.path}: ${summary.loads} PT_LOAD, ${summary.memtagSegments} memtag segments, ${summary.vcpus} vCPUs`);
        printLine(
          `  file length ${formatBytes(summary.fileSize)}, on disk ${formatBytes(summary.diskBytes)} ` +
            `(${formatBytes(summary.zeroBytesSkipped)} of zero pages and tags left as holes)`,
        );
      }
    });
}
