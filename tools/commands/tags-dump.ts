/** `vmsnap tags dump FILE --ipa ADDR --length N [--data]`: the tag of every granule of a range, like GDB's x/…m. */
import type { Command } from 'commander';
import { parseAddress } from '../../src/forensics/addresses.js';
import { ForensicsArgumentError } from '../../src/forensics/errors.js';
import { dumpGranules, formatDataLine, formatTagLines } from '../../src/forensics/granule-dump.js';
import { JSON_SCHEMA_VERSION, toJsonValue } from '../../src/json.js';
import { addressSpaceOf, commandGroup, EXIT_CODES_HELP, examples, printLine, VCPU_OPTION_HELP, withSnapshot } from './forensics-support.js';

interface DumpCliOptions {
  ipa?: string;
  va?: string;
  vcpu?: string;
  length: string;
  data?: boolean;
  json?: boolean;
}

export function registerTagsDump(program: Command): void {
  commandGroup(program, 'tags', 'Offline forensics on MTE tag state')
    .command('dump')
    .description(
      'The allocation tag of every 16-byte granule of a guest range, ' +
        'with the data next to it when asked (one line per granule), else 16 tags per line',
    )
    .argument('<file>', 'snapshot file')
    .option('--ipa <address>', 'guest physical address of the first byte (widened down to its granule)')
    .option('--va <address>', 'or a guest virtual address, translated page by page through the saved page tables (tag bits ignored)')
    .option('--vcpu <id>', VCPU_OPTION_HELP)
    .requiredOption('--length <bytes>', 'bytes to dump (widened up to whole granules; K/M suffixes allowed)')
    .option('--data', 'show the 16 data bytes of each granule, in hex and ASCII')
    .option('--json', 'JSON: {schemaVersion, granules: [{address, tag, data}]}')
    .addHelpText(
      'after',
      examples([
        'vmsnap tags dump guest.vmsnap --ipa 0x40001000 --length 4096',
        'vmsnap tags dump guest.vmsnap --ipa 0x40001000 --length 256 --data',
        'vmsnap tags dump guest.vmsnap --ipa 0x40000000 --length 1K --json',
        'vmsnap tags dump guest.vmsnap --va 0xffff000000200000 --length 64 --data',
      ]) + EXIT_CODES_HELP,
    )
    .action(async (file: string, options: DumpCliOptions) => {
      if ((options.ipa === undefined) === (options.va === undefined))
        throw new ForensicsArgumentError('give exactly one of --ipa and --va');
      const length = parseAddress(options.length, '--length');
      await withSnapshot(file, async (reader) => {
        const space = options.va !== undefined ? await addressSpaceOf(reader, options) : undefined;
        const address = space ? space.untagged(parseAddress(options.va!, '--va')) : parseAddress(options.ipa!, '--ipa');
        const lines = dumpGranules(reader, address, length, { data: options.data, space });
        if (options.json) {
          // Streamed granule by granule so a long dump never sits in memory whole; same rule as every --json.
          let first = true;
          process.stdout.write(`{\n  "schemaVersion": ${JSON_SCHEMA_VERSION},\n  "granules": [`);
          for await (const line of lines) {
            const { address, ipa, tag, data } = line;
            const where = space ? { address, ipa } : { address };
            process.stdout.write(
              `${first ? '\n' : ',\n'}    ${JSON.stringify(toJsonValue(data ? { ...where, tag, data } : { ...where, tag }))}`,
            );
            first = false;
          }
          process.stdout.write('\n  ]\n}\n');
        } else if (options.data) {
          for await (const line of lines) printLine(formatDataLine(line));
        } else {
          for await (const text of formatTagLines(lines)) printLine(text);
        }
      });
    });
}
