/** `vmsnap import core guest.core -o FILE`: a snapshot from an ELF core (ours, or a Linux MTE process core). */
import type { Command } from 'commander';
import { importCore } from '../../src/forensics/core-import.js';
import { commandGroup, EXIT_CODES_HELP, examples, parseCount, printJson, printLine } from './forensics-support.js';

interface ImportCliOptions {
  output: string;
  pageSize?: string;
  keepEmptyLoads?: boolean;
  json?: boolean;
}

export function registerImportCore(program: Command): void {
  commandGroup(program, 'import', 'Make a snapshot from another format')
    .command('core')
    .description(
      'A snapshot from an AArch64 ELF core. A core written by `vmsnap export core` gives back the original snapshot; ' +
        'a Linux process core gives one region per PT_LOAD ("load<N>", tags from its memtag segment) ' +
        'and registers from NT_PRSTATUS/NT_FPREGSET',
    )
    .argument('<core>', 'ELF core file')
    .requiredOption('-o, --output <file>', 'snapshot file to write')
    .option('--page-size <bytes>', 'page size for a Linux core (default: AT_PAGESZ, else 4096)')
    .option('--keep-empty-loads', 'keep PT_LOADs with no bytes in the file and no tags (guard pages, reservations)')
    .option('--json', 'machine-readable summary')
    .addHelpText(
      'after',
      examples(['vmsnap import core guest.core -o guest.vmsnap', 'vmsnap import core /var/crash/core.1234 -o process.vmsnap --json']) +
        EXIT_CODES_HELP,
    )
    .action(async (core: string, options: ImportCliOptions) => {
      const pageSize = options.pageSize ? parseCount(options.pageSize, '--page-size') : undefined;
      const summary = await importCore(core, options.output, { pageSize, keepEmptyLoads: options.keepEmptyLoads });
      if (options.json) printJson(summary);
      else {
        printLine(
          `wrote ${summary.save.destination}: ${summary.regions} regions, ${summary.vcpus} vCPUs, ${summary.save.fileBytes} bytes` +
            `${summary.fromVmsnap ? ' (the snapshot the core was exported from)' : ''}`,
        );
        if (summary.skippedLoads.length)
          printLine(`  left out ${summary.skippedLoads.length} PT_LOADs holding neither bytes nor tags (--keep-empty-loads keeps them)`);
      }
    });
}
