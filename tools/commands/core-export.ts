/** `vmsnap export core FILE -o guest.core`: an AArch64 ELF core that GDB reads, tags included. */
import type { Command } from 'commander';
import { exportCore } from '../../src/forensics/core-export.js';
import { formatBytes } from '../../src/units.js';
import { standardOutput, toJson } from '../cli-support.js';
import { commandGroup, EXIT_CODES_HELP, examples, printLine, withSnapshot } from './forensics-support.js';

export function registerExportCore(program: Command): void {
  commandGroup(program, 'export', 'Write a snapshot in another format')
    .command('core')
    .description(
      'An AArch64 ELF core: a PT_LOAD per region at its guest physical address, a PT_AARCH64_MEMTAG_MTE segment per MTE region, ' +
        'NT_PRSTATUS per vCPU, NT_AUXV with HWCAP2_MTE, and a VMSNAP note for import. ' +
        'Zero pages are left as holes (a sparse file), so the file takes disk only for used pages',
    )
    .argument('<file>', 'snapshot file')
    .requiredOption('-o, --output <guest.core>', 'core file to write, or - for standard output (a file keeps the holes)')
    .option('--force', 'replace an existing file (never the snapshot read)')
    .option('--keep-host-paths', 'keep host file paths in the annotations the VMSNAP note copies (default: file names only)')
    .option('--json', 'machine-readable summary')
    .addHelpText(
      'after',
      examples([
        'vmsnap export core guest.vmsnap -o guest.core',
        "gdb-multiarch -nx -batch -ex 'core-file guest.core' -ex 'memory-tag print-allocation-tag 0x40001000' -ex 'x/4xgm 0x40001000'",
      ]) + EXIT_CODES_HELP,
    )
    .action(async (file: string, options: { output: string; force?: boolean; json?: boolean; keepHostPaths?: boolean }) => {
      const destination = options.output === '-' ? standardOutput('export core -o -') : options.output;
      const summary = await withSnapshot(file, (reader) =>
        exportCore(reader, destination, { force: options.force, keepHostPaths: options.keepHostPaths }),
      );
      // The core itself may be on standard output.
      const report = options.output === '-' ? (line: string) => process.stderr.write(`${line}\n`) : printLine;
      if (options.json) report(toJson(summary));
      else {
        report(`wrote ${summary.path}: ${summary.loads} PT_LOAD, ${summary.memtagSegments} memtag segments, ${summary.vcpus} vCPUs`);
        report(
          `  file length ${formatBytes(summary.fileSize)}, on disk ${formatBytes(summary.diskBytes)} ` +
            `(${formatBytes(summary.zeroBytesSkipped)} of zero pages and tags left as holes)`,
        );
      }
    });
}
