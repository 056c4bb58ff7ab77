/** `vmsnap tags stats FILE`: how a guest's memory is coloured, per region and overall. */
import type { Command } from 'commander';
import { parseIpaRange } from '../../src/forensics/addresses.js';
import { TAG_VALUES, type TagStats, type TagStatsReport, tagStatistics } from '../../src/forensics/tag-stats.js';
import { formatBytes } from '../../src/units.js';
import { commandGroup, EXIT_CODES_HELP, examples, printJson, printLine, withSnapshot } from './forensics-support.js';

function percent(part: number, whole: number): string {
  return whole ? `${((100 * part) / whole).toFixed(1)}%` : '-';
}

function printStats(title: string, s: TagStats): void {
  printLine(title);
  const mtePages = s.pages - s.untaggedRegionPages;
  printLine(
    `  pages ${s.pages}: ${s.taggedPages} tagged (${percent(s.taggedPages, mtePages)} of MTE pages), ` +
      `${s.zeroTagPages} all-zero tags, ${s.untaggedRegionPages} in regions without tags`,
  );
  if (!s.granules) return;
  const histogram = s.tagHistogram.map((n, tag) => `${tag.toString(16)}:${n}`).join(' ');
  printLine(`  granules ${s.granules}, by tag: ${histogram}`);
  const distinct = s.distinctTagsPerPage
    .map((n, k) => (n ? `${k}:${n}` : ''))
    .filter(Boolean)
    .join(' ');
  printLine(`  distinct tags per page (count:pages): ${distinct}`);
  printLine(
    `  runs of equal nonzero tags (allocations): ${s.runs.count}, ` +
      `${formatBytes(s.runs.granules * 16)} in all, largest ${formatBytes(s.runs.largestBytes)}`,
  );
  for (const b of s.runs.buckets) printLine(`    ${String(b.minBytes).padStart(10)} .. ${String(b.maxBytes).padEnd(10)} bytes: ${b.count}`);
}

function printReport(report: TagStatsReport): void {
  for (const r of report.regions) {
    printStats(`region ${r.region} [0x${r.start.toString(16)}, 0x${r.end.toString(16)})${r.mte ? '' : ' (no tags saved)'}`, r);
  }
  printStats(`overall (${report.regions.length} regions, ${TAG_VALUES} tag values)`, report.overall);
}

export function registerTagsStats(program: Command): void {
  commandGroup(program, 'tags', 'Offline forensics on MTE tag state')
    .command('stats')
    .description(
      'Tag statistics per region and overall: tagged and all-zero pages, tag histogram, distinct tags per page, ' +
        'allocation sizes (runs of equal tags)',
    )
    .argument('<file>', 'snapshot file')
    .option('--region <name>', 'only this region')
    .option('--ipa-range <range>', 'only pages overlapping START-END (end exclusive) or START+LENGTH, e.g. 0x40000000-0x50000000')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      examples([
        'vmsnap tags stats guest.vmsnap',
        'vmsnap tags stats guest.vmsnap --region ram --json',
        'vmsnap tags stats guest.vmsnap --ipa-range 0x40000000+16M',
      ]) + EXIT_CODES_HELP,
    )
    .action(async (file: string, options: { region?: string; ipaRange?: string; json?: boolean }) => {
      const range = options.ipaRange ? parseIpaRange(options.ipaRange) : undefined;
      const report = await withSnapshot(file, (reader) => tagStatistics(reader, { region: options.region, range }));
      if (options.json) printJson(report);
      else printReport(report);
    });
}
