/**
 * `vmsnap scan pointers FILE`: every aligned 8-byte word of the guest that is
 * a tagged pointer into tagged memory, checked against the allocation tag it
 * points to; lists the mismatches (stale pointers) with where they were found
 * and the allocation they point into, counts per region, and the throughput.
 */
import type { Command } from 'commander';
import { type StalePointer, scanPointers } from '../../src/forensics/pointer-scan.js';
import { JSON_SCHEMA_VERSION, toJsonValue } from '../../src/json.js';
import { createProgress } from '../progress.js';
import { formatBytes, hex } from '../units.js';
import {
  addressSpaceOf,
  commandGroup,
  EXIT_CODES_HELP,
  examples,
  parseCount,
  printLine,
  VCPU_OPTION_HELP,
  withSnapshot,
} from './forensics-support.js';

interface ScanCliOptions {
  va?: boolean;
  vcpu?: string;
  untagged?: boolean;
  region?: string;
  json?: boolean;
  csv?: boolean;
  limit: string;
  quiet?: boolean;
}

const CSV_HEADER = 'pointer,found_at,found_in,target,target_region,pointer_tag,memory_tag,run_start,run_size,run_tag';

function csvLine(m: StalePointer): string {
  return [
    hex(m.pointer),
    hex(m.foundAt),
    m.foundIn,
    hex(m.target),
    m.targetRegion,
    m.pointerTag,
    m.memoryTag,
    hex(m.run.start),
    m.run.size,
    m.run.tag,
  ].join(',');
}

function textLine(m: StalePointer): string {
  return (
    `${hex(m.foundAt)} (${m.foundIn}): ${hex(m.pointer)} -> ${hex(m.target)} tag ${hex(m.pointerTag)}, memory ${hex(m.memoryTag)}; ` +
    `run ${hex(m.run.start)}+${hex(m.run.size)} tag ${hex(m.run.tag)}`
  );
}

export function registerScanPointers(program: Command): void {
  commandGroup(program, 'scan', 'Whole-snapshot scans of guest memory')
    .command('pointers')
    .description(
      'Finds stale pointers: every aligned 8-byte word that is a tagged pointer into tagged memory (bits 55:0 an IPA, or with --va ' +
        'a virtual address through the saved page tables) is checked against the allocation tag it points to; mismatches are listed',
    )
    .argument('<file>', 'snapshot file')
    .option('--va', 'words are guest virtual addresses, translated through the saved page tables (default: bits 55:0 are an IPA)')
    .option('--vcpu <id>', VCPU_OPTION_HELP)
    .option('--untagged', 'also check pointers with logical tag 0 (many small integers then look like pointers)')
    .option('--region <name>', 'scan only the words of this region (targets may be anywhere)')
    .option('--csv', `one line per mismatch: ${CSV_HEADER}`)
    .option('--json', 'JSON: {schemaVersion, mismatches: [...], report: {counts per region, throughput}}')
    .option('--limit <n>', 'mismatches listed in the text output (all of them in CSV and JSON)', '50')
    .option('-q, --quiet', 'no progress bar')
    .addHelpText(
      'after',
      examples([
        'vmsnap scan pointers guest.vmsnap',
        'vmsnap scan pointers guest.vmsnap --va --csv > stale.csv',
        'vmsnap scan pointers guest.vmsnap --region ram --json | jq .report',
      ]) + EXIT_CODES_HELP,
    )
    .action(async (file: string, options: ScanCliOptions) => {
      const limit = parseCount(options.limit, '--limit');
      await withSnapshot(file, async (reader) => {
        const space = options.va ? await addressSpaceOf(reader, options) : undefined;
        const progress = createProgress({ quiet: options.quiet });
        progress.phase(
          'scanning',
          reader.regions.reduce((s, r) => s + r.size, 0n),
        );
        let listed = 0;
        if (options.csv) printLine(CSV_HEADER);
        if (options.json) process.stdout.write(`{\n  "schemaVersion": ${JSON_SCHEMA_VERSION},\n  "mismatches": [`);
        const onMismatch = (m: StalePointer) => {
          if (options.json) process.stdout.write(`${listed ? ',' : ''}\n    ${JSON.stringify(toJsonValue(m))}`);
          else if (options.csv) printLine(csvLine(m));
          else if (listed < limit) printLine(textLine(m));
          listed++;
        };
        const report = await scanPointers(reader, {
          space,
          untagged: options.untagged,
          region: options.region,
          onMismatch,
          onProgress: (done) => progress.update(done),
        });
        progress.done();
        if (options.json) {
          process.stdout.write(`\n  ],\n  "report": ${JSON.stringify(toJsonValue(report), null, 2).replace(/\n/g, '\n  ')}\n}\n`);
          return;
        }
        const summary = [
          `scanned ${formatBytes(report.bytesScanned)} (${report.words} words) in ${report.seconds.toFixed(2)} s, ` +
            `${formatBytes(BigInt(Math.round(report.bytesPerSecond)))}/s, ${report.mode === 'va' ? 'virtual' : 'IPA'} pointers`,
          ...report.regions.map(
            (r) =>
              `  ${r.region}: ${r.candidates} tagged pointers into tagged memory, ${r.mismatches} stale` +
              (r.matchAll ? `, ${r.matchAll} match-all` : ''),
          ),
          `${report.mismatches} stale of ${report.candidates} pointers checked` +
            (report.mode === 'va' ? `; ${report.untranslatable} tagged words did not translate` : ''),
        ];
        // CSV keeps standard output to its lines; the summary goes to standard error there.
        for (const line of summary) {
          if (options.csv) {
            if (!options.quiet) process.stderr.write(`${line}\n`);
          } else printLine(line);
        }
        if (!options.csv && listed > limit) printLine(`(${listed - limit} more not listed; --csv or --json lists all)`);
      });
    });
}
