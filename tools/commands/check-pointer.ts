/** `vmsnap check-pointer FILE PTR`: a tagged pointer's logical tag against the allocation tag at its address. */
import type { Command } from 'commander';
import { parseAddress } from '../../src/forensics/addresses.js';
import { checkPointer } from '../../src/forensics/pointer-check.js';
import { EXIT } from '../cli-support.js';
import { examples, printJson, printLine, withSnapshot } from './forensics-support.js';

function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

export function registerCheckPointer(program: Command): void {
  program
    .command('check-pointer')
    .description(
      "Compares a tagged pointer's logical tag (bits 59:56) with the allocation tag of the granule(s) it points at, " +
        "as GDB's `memory-tag check` does",
    )
    .argument('<file>', 'snapshot file')
    .argument('<pointer>', 'the 64-bit pointer, e.g. 0x0a00000040001234 (top byte: tag and ignored bits)')
    .option('--length <bytes>', 'check every granule an access of this many bytes touches', '1')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      examples([
        'vmsnap check-pointer guest.vmsnap 0x0700000040001000',
        'vmsnap check-pointer guest.vmsnap 0x0a00000040002000 --length 8192 --json',
      ]) + '\nExit codes: 0 tags match, 4 mismatch, 1 invalid snapshot, 2 usage (address outside the MTE regions), 3 I/O error',
    )
    .action(async (file: string, pointerText: string, options: { length: string; json?: boolean }) => {
      const pointer = parseAddress(pointerText, 'pointer');
      const length = parseAddress(options.length, '--length');
      const result = await withSnapshot(file, (reader) => checkPointer(reader, pointer, length));
      if (options.json) printJson(result);
      else if (result.match) {
        printLine(
          `Memory tags for address ${hex(result.pointer)} match (${hex(result.logicalTag)}) in region ${result.region}` +
            `${result.granulesChecked > 1 ? ` over ${result.granulesChecked} granules` : ''}.`,
        );
      } else {
        printLine(
          `Logical tag (${hex(result.logicalTag)}) does not match the allocation tag (${hex(result.allocationTag)}) ` +
            `for address ${hex(result.pointer)} in region ${result.region}: ` +
            `${result.granulesMismatched} of ${result.granulesChecked} granules differ.`,
        );
        for (const m of result.mismatches) printLine(`  granule ${hex(m.address)}: allocation tag ${hex(m.allocationTag)}`);
      }
      if (!result.match) process.exitCode = EXIT.differs;
    });
}
