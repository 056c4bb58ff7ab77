/** `vmsnap import core guest.core -o FILE`: a snapshot from an ELF core (ours, or a Linux MTE process core). */
import type { Command } from 'commander';
import { importCore } from '../../src/forensics/core-import.js';
import { standardOutput, toJson } from '../cli-support.js';
import { commandGroup, EXIT_CODES_HELP, examples, parseCount, printLine } from './forensics-support.js';

interface ImportCliOptions {
  output: string;
  force?: boolean;
  pageSize?: string;
  keepEmptyLoads?: boolean;
  json?: boolean;
}

export function registerImportCore(program: Command): void {
  commandGroup(program, 'import', 'Make a snapshot from another format')
    .command('core')
    .description(
      'A snapshot from an AArch64 ELF core. A core written by `vmsnap export core` gives back the original snapshot; ' +
        'a Linux process core gives one region per PT_LOAD (named after its NT_FILE mapping, e.g. "libc.so.6+0x17d000", ' +
        'else "load<N>"; tags from its memtag segment), registers from NT_PRSTATUS/NT_FPREGSET, and keeps all its notes ' +
        '(signal, siginfo, process, mappings, auxv, TLS, tagged-addr-ctrl, PAC) for `show` and `export core`',
    )
    .argument('<core>', 'ELF core file')
    .requiredOption('-o, --output <file>', 'snapshot file to write, or - for standard output')
    .option('--force', 'replace an existing snapshot file (never the core read)')
    .option('--page-size <bytes>', 'page size for a Linux core (default: AT_PAGESZ, else 4096)')
    .option(
      '--keep-empty-loads',
      'keep PT_LOADs with no bytes in the file and no tags (guard pages, reservations, MADV_DONTDUMP: kept untagged)',
    )
    .option('--json', 'machine-readable summary')
    .addHelpText(
      'after',
      examples(['vmsnap import core guest.core -o guest.vmsnap', 'vmsnap import core /var/crash/core.1234 -o process.vmsnap --json']) +
        EXIT_CODES_HELP,
    )
    .action(async (core: string, options: ImportCliOptions) => {
      const pageSize = options.pageSize ? parseCount(options.pageSize, '--page-size') : undefined;
      const destination = options.output === '-' ? standardOutput('import core -o -') : options.output;
      const summary = await importCore(core, destination, { pageSize, keepEmptyLoads: options.keepEmptyLoads, force: options.force });
      // The snapshot itself may be on standard output.
      const report = options.output === '-' ? (line: string) => process.stderr.write(`${line}\n`) : printLine;
      if (options.json) report(toJson(summary));
      else {
        report(
          `wrote ${summary.save.destination}: ${summary.regions} regions, ${summary.vcpus} vCPUs, ${summary.save.fileBytes} bytes` +
            `${summary.fromVmsnap ? ' (the snapshot the core was exported from)' : ''}`,
        );
        if (summary.skippedLoads.length)
          report(`  left out ${summary.skippedLoads.length} PT_LOADs holding neither bytes nor tags (--keep-empty-loads keeps them)`);
      }
    });
}
