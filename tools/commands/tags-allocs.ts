/**
 * `vmsnap tags allocs FILE` and `vmsnap tags search FILE`: allocations (runs
 * of equal tags), granules with a given tag, and a byte pattern, as text, CSV
 * or JSON, streamed.
 */
import type { Command } from 'commander';
import { type IpaRange, parseAddress, parseIpaRange } from '../../src/forensics/addresses.js';
import { ForensicsArgumentError } from '../../src/forensics/errors.js';
import { parseHexBytes, searchBytes, tagRuns } from '../../src/forensics/tag-search.js';
import type { VirtualAddressSpace } from '../../src/forensics/virtual-addresses.js';
import { virtualSearchBytes, virtualTagRuns } from '../../src/forensics/virtual-search.js';
import { JSON_SCHEMA_VERSION, toJsonValue } from '../../src/json.js';
import { hex } from '../units.js';
import {
  addressSpaceOf,
  commandGroup,
  EXIT_CODES_HELP,
  examples,
  parseCount,
  printLine,
  VCPU_OPTION_HELP,
  type VirtualAddressOptions,
  withSnapshot,
} from './forensics-support.js';

type Format = 'text' | 'csv' | 'json';

/** Writes rows as text lines, CSV or a streamed JSON array under `key`; returns how many. */
async function emit<T extends object>(
  rows: AsyncIterable<T>,
  format: Format,
  key: string,
  csvHeader: string,
  line: (row: T) => { text: string; csv: string },
  limit: number,
): Promise<number> {
  let n = 0;
  if (format === 'csv') printLine(csvHeader);
  if (format === 'json') process.stdout.write(`{\n  "schemaVersion": ${JSON_SCHEMA_VERSION},\n  "${key}": [`);
  for await (const row of rows) {
    if (n >= limit) {
      n++;
      continue;
    }
    if (format === 'json') process.stdout.write(`${n ? ',' : ''}\n    ${JSON.stringify(toJsonValue(row))}`);
    else printLine(format === 'csv' ? line(row).csv : line(row).text);
    n++;
  }
  if (format === 'json') process.stdout.write(`\n  ],\n  "count": ${n},\n  "listed": ${Math.min(n, limit)}\n}\n`);
  return n;
}

function formatOf(options: { json?: boolean; csv?: boolean }): Format {
  if (options.json && options.csv) throw new ForensicsArgumentError('give at most one of --json and --csv');
  return options.json ? 'json' : options.csv ? 'csv' : 'text';
}

const VA_HELP =
  'only a guest virtual range, START-END or START+LENGTH, through the saved page tables (tag bits ignored; ' +
  'unmapped parts skipped): addresses listed are virtual, with their IPA';

/** With --va, the virtual range (untagged) and the address space that translates it; refuses --va with --ipa-range. */
async function virtualRange(
  reader: Parameters<typeof addressSpaceOf>[0],
  options: { va?: string; ipaRange?: string } & VirtualAddressOptions,
): Promise<{ space: VirtualAddressSpace; range: IpaRange } | null> {
  if (options.va === undefined) return null;
  if (options.ipaRange !== undefined) throw new ForensicsArgumentError('give at most one of --ipa-range and --va');
  const space = await addressSpaceOf(reader, options);
  const given = parseIpaRange(options.va);
  const start = space.untagged(given.start);
  return { space, range: { start, end: start + (given.end - given.start) } };
}

/** " (IPA 0x...)" after a virtual address; nothing for an IPA listing. */
function ipaNote(ipa: bigint | undefined): string {
  return ipa === undefined ? '' : ` (IPA ${hex(ipa)})`;
}

function parseTag(text: string): number {
  const tag = Number(text.startsWith('0x') ? Number.parseInt(text.slice(2), 16) : text);
  if (!Number.isInteger(tag) || tag < 0 || tag > 15) throw new ForensicsArgumentError(`--tag ${text}: a tag is 0..15 (0x0..0xf)`);
  return tag;
}

interface AllocsCliOptions extends VirtualAddressOptions {
  va?: string;
  region?: string;
  ipaRange?: string;
  tag?: string;
  zero?: boolean;
  minSize?: string;
  json?: boolean;
  csv?: boolean;
  limit?: string;
}

export function registerTagsAllocs(program: Command): void {
  const tags = commandGroup(program, 'tags', 'Offline forensics on MTE tag state');
  tags
    .command('allocs')
    .description('Runs of equal allocation tags, read as allocations: start, size, tag (tag 0, free memory, left out unless asked)')
    .argument('<file>', 'snapshot file')
    .option('--region <name>', 'only this region')
    .option('--ipa-range <range>', 'only pages overlapping START-END or START+LENGTH')
    .option('--va <range>', VA_HELP)
    .option('--vcpu <id>', VCPU_OPTION_HELP)
    .option('--tag <n>', 'only runs of this tag: the granules that carry it (0..15)')
    .option('--zero', 'include runs of tag 0')
    .option('--min-size <bytes>', 'only runs of at least this many bytes', '0')
    .option('--limit <n>', 'list at most this many (the count stays exact)')
    .option('--csv', 'CSV: region,start,size,tag (with --va: region,start,ipa,size,tag)')
    .option('--json', 'JSON: {schemaVersion, allocations: [{region, start, size, tag}] (with --va also ipa), count, listed}')
    .addHelpText(
      'after',
      examples([
        'vmsnap tags allocs guest.vmsnap --region ram --limit 20',
        'vmsnap tags allocs guest.vmsnap --tag 0xa --csv > tag-a.csv',
        'vmsnap tags allocs guest.vmsnap --min-size 64K --json',
        'vmsnap tags allocs kernel.vmsnap --va 0xffff000000100000+64K',
      ]) + EXIT_CODES_HELP,
    )
    .action(async (file: string, options: AllocsCliOptions) => {
      const format = formatOf(options);
      const range = options.ipaRange ? parseIpaRange(options.ipaRange) : undefined;
      const tag = options.tag === undefined ? undefined : parseTag(options.tag);
      const minSize = parseAddress(options.minSize ?? '0', '--min-size');
      const limit = options.limit === undefined ? Number.POSITIVE_INFINITY : parseCount(options.limit, '--limit');
      await withSnapshot(file, async (reader) => {
        const virtual = await virtualRange(reader, options);
        const selection = { region: options.region, tag, includeZero: options.zero };
        const runs = async function* () {
          const all = virtual ? virtualTagRuns(reader, virtual.space, virtual.range, selection) : tagRuns(reader, { ...selection, range });
          for await (const run of all) {
            if (run.size >= minSize) yield run as { region: string; start: bigint; size: bigint; tag: number; ipa?: bigint };
          }
        };
        const n = await emit(
          runs(),
          format,
          'allocations',
          virtual ? 'region,start,ipa,size,tag' : 'region,start,size,tag',
          (r) => ({
            text: `${r.region} ${hex(r.start)}+${hex(r.size)}${ipaNote(r.ipa)} tag ${hex(r.tag)}`,
            csv: `${r.region},${hex(r.start)},${r.ipa === undefined ? '' : `${hex(r.ipa)},`}${r.size},${r.tag}`,
          }),
          limit,
        );
        if (format === 'text') printLine(`${n} allocations${n > limit ? ` (${limit} listed)` : ''}`);
      });
    });

  tags
    .command('search')
    .description('Where a byte pattern occurs in guest memory, with the allocation tag of the granule it starts in')
    .argument('<file>', 'snapshot file')
    .option('--hex <bytes>', 'the pattern as hex bytes, e.g. "de ad be ef" or 0xdeadbeef')
    .option('--string <text>', 'the pattern as UTF-8 text')
    .option('--u64 <value>', 'a little-endian 64-bit value (e.g. a pointer), found at 8-byte-aligned addresses')
    .option('--region <name>', 'only this region')
    .option('--ipa-range <range>', 'only matches inside START-END or START+LENGTH')
    .option('--va <range>', VA_HELP)
    .option('--vcpu <id>', VCPU_OPTION_HELP)
    .option('--limit <n>', 'list at most this many (the count stays exact)', '1000')
    .option('--csv', 'CSV: region,address,tag (with --va: region,address,ipa,tag)')
    .option('--json', 'JSON: {schemaVersion, matches: [{region, address, tag}] (with --va also ipa), count, listed}')
    .addHelpText(
      'after',
      examples([
        'vmsnap tags search guest.vmsnap --string "kernel panic"',
        'vmsnap tags search guest.vmsnap --u64 0x0a00000040001230 --json',
        'vmsnap tags search guest.vmsnap --hex "de ad be ef" --region ram --csv',
        'vmsnap tags search kernel.vmsnap --string "first virtual page" --va 0xffff000000100000+8K',
      ]) + EXIT_CODES_HELP,
    )
    .action(
      async (
        file: string,
        options: {
          hex?: string;
          string?: string;
          u64?: string;
          region?: string;
          ipaRange?: string;
          va?: string;
          vcpu?: string;
          limit: string;
          json?: boolean;
          csv?: boolean;
        },
      ) => {
        const format = formatOf(options);
        const given = [options.hex, options.string, options.u64].filter((p) => p !== undefined).length;
        if (given !== 1) throw new ForensicsArgumentError('give exactly one of --hex, --string and --u64');
        let pattern: Uint8Array;
        let alignment = 1;
        if (options.hex !== undefined) pattern = parseHexBytes(options.hex);
        else if (options.string !== undefined) pattern = new TextEncoder().encode(options.string);
        else {
          const value = BigInt(options.u64!);
          if (value < 0n || value >= 1n << 64n) throw new ForensicsArgumentError(`--u64 ${options.u64} is not a 64-bit value`);
          pattern = new Uint8Array(8);
          new DataView(pattern.buffer).setBigUint64(0, value, true);
          alignment = 8;
        }
        const range = options.ipaRange ? parseIpaRange(options.ipaRange) : undefined;
        const limit = parseCount(options.limit, '--limit');
        await withSnapshot(file, async (reader) => {
          const virtual = await virtualRange(reader, options);
          const matches: AsyncIterable<{ region: string; address: bigint; tag: number | null; ipa?: bigint }> = virtual
            ? virtualSearchBytes(reader, virtual.space, pattern, virtual.range, { region: options.region, alignment })
            : searchBytes(reader, pattern, { region: options.region, range, alignment });
          const n = await emit(
            matches,
            format,
            'matches',
            virtual ? 'region,address,ipa,tag' : 'region,address,tag',
            (m) => ({
              text: `${m.region} ${hex(m.address)}${ipaNote(m.ipa)}${m.tag === null ? '' : ` tag ${hex(m.tag)}`}`,
              csv: `${m.region},${hex(m.address)},${m.ipa === undefined ? '' : `${hex(m.ipa)},`}${m.tag ?? ''}`,
            }),
            limit,
          );
          if (format === 'text') printLine(`${n} matches${n > limit ? ` (${limit} listed)` : ''}`);
        });
      },
    );
}
