/** `vmsnap check-pointer FILE PTR`: a tagged pointer's logical tag against the allocation tag at its address. */
import type { Command } from 'commander';
import { parseAddress } from '../../src/forensics/addresses.js';
import { checkPointer } from '../../src/forensics/pointer-check.js';
import { EXIT } from '../cli-support.js';
import { addressSpaceOf, examples, printJson, printLine, VCPU_OPTION_HELP, withSnapshot } from './forensics-support.js';

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
    .option('--va', 'the pointer is a guest virtual address: translate it through the saved page tables (else its bits 55:0 are an IPA)')
    .option('--vcpu <id>', VCPU_OPTION_HELP)
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `${examples([
        'vmsnap check-pointer guest.vmsnap 0x0700000040001000',
        'vmsnap check-pointer guest.vmsnap 0x0a00000040002000 --length 8192 --json',
        'vmsnap check-pointer guest.vmsnap 0xf3ff000000123450 --va --length 64',
      ])}\nExit codes: 0 tags match, 4 mismatch, 1 invalid snapshot, 2 usage (address outside the MTE regions), 3 I/O error`,
    )
    .action(async (file: string, pointerText: string, options: { length: string; json?: boolean; va?: boolean; vcpu?: string }) => {
      const pointer = parseAddress(pointerText, 'pointer');
      const length = parseAddress(options.length, '--length');
      const result = await withSnapshot(file, async (reader) =>
        checkPointer(reader, pointer, length, options.va ? await addressSpaceOf(reader, options) : undefined),
      );
      const where = result.virtual ? ` (IPA ${hex(result.ipa)})` : '';
      if (options.json) printJson(result);
      else if (result.match) {
        printLine(
          `Memory tags for address ${hex(result.pointer)}${where} match (${hex(result.logicalTag)}) in region ${result.region}` +
            `${result.granulesChecked > 1 ? ` over ${result.granulesChecked} granules` : ''}.`,
        );
      } else {
        // The headline quotes the first granule that differs, which need not be the pointer's own.
        const first = result.mismatches[0];
        printLine(
          `Logical tag (${hex(result.logicalTag)}) does not match the allocation tag (${hex(first.allocationTag)}) ` +
            `of granule ${hex(first.address)}${result.virtual ? ` (IPA ${hex(first.ipa)})` : ''} ` +
            `for address ${hex(result.pointer)}${where} in region ${result.region}: ` +
            `${result.granulesMismatched} of ${result.granulesChecked} granules differ.`,
        );
        for (const m of result.mismatches) {
          printLine(`  granule ${hex(m.address)}${result.virtual ? ` (IPA ${hex(m.ipa)})` : ''}: allocation tag ${hex(m.allocationTag)}`);
        }
      }
      if (!result.match) process.exitCode = EXIT.differs;
    });
}
