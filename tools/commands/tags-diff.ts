/** `vmsnap tags diff A B`: pages and granules whose tags or data changed between two snapshots of one guest. */
import type { Command } from 'commander';
import { type ChangedPage, diffSnapshots, type RegionDiff } from '../../src/forensics/snapshot-diff.js';
import { EXIT } from '../cli-support.js';
import { commandGroup, examples, parseCount, printJson, printLine, withSnapshot } from './forensics-support.js';

const DEFAULT_LIST_LIMIT = 10_000;

interface DiffCliOptions {
  list?: boolean;
  limit: string;
  failOnDiff?: boolean;
  tagsOnly?: boolean;
  json?: boolean;
}

function pageText(page: ChangedPage): string {
  const runs = page.tagChanges.map((r) => `0x${r.address.toString(16)}+${r.granules * 16} ${r.from.toString(16)}->${r.to.toString(16)}`);
  const tags = runs.length ? `  tags: ${runs.slice(0, 8).join(', ')}${runs.length > 8 ? `, ... (${runs.length} runs)` : ''}` : '';
  const where = page.dataChanges.map((r) => `0x${r.address.toString(16)}+${r.granules * 16}`);
  const more = where.length > 8 ? `, ... (${where.length} runs)` : '';
  const data = page.dataGranulesChanged ? `  data: ${page.dataGranulesChanged} granules at ${where.slice(0, 8).join(', ')}${more}` : '';
  return `${page.region} 0x${page.address.toString(16)}${data}${tags}`;
}

function regionText(r: RegionDiff): string {
  const tags = r.tagsCompared
    ? `tags ${r.pagesTagsChanged} pages ` +
      `(granules: ${r.granulesTagged} tagged, ${r.granulesCleared} cleared, ${r.granulesRetagged} retagged)`
    : 'tags not compared (not MTE in both)';
  return (
    `${r.region.padEnd(12)} ${r.pages} pages, ${r.pagesChanged} changed: ` +
    `data ${r.pagesDataChanged} pages (${r.granulesDataChanged} granules), ${tags}`
  );
}

export function registerTagsDiff(program: Command): void {
  commandGroup(program, 'tags', 'Offline forensics on MTE tag state')
    .command('diff')
    .description(
      'Pages and granules whose tags or data changed between two snapshots of the same guest, per region. ' +
        'Tag changes are split into tagged (0->n), cleared (n->0) and retagged (n->m: what a free and a reallocation look like)',
    )
    .argument('<a>', 'the earlier snapshot')
    .argument('<b>', 'the later snapshot')
    .option('--list', 'list every changed page with its changed granules (runs of equal change)')
    .option('--limit <pages>', 'list at most this many pages', String(DEFAULT_LIST_LIMIT))
    .option('--tags-only', 'compare tags only, not data (faster)')
    .option('--fail-on-diff', 'exit with code 4 when anything changed')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      examples([
        'vmsnap tags diff before.vmsnap after.vmsnap',
        'vmsnap tags diff before.vmsnap after.vmsnap --list --limit 100',
        'vmsnap tags diff a.vmsnap b.vmsnap --tags-only --fail-on-diff --json',
      ]) +
        '\nExit codes: 0 ok (or no change with --fail-on-diff), 1 invalid or incomparable snapshots, 2 usage, 3 I/O error, ' +
        '4 changes found with --fail-on-diff',
    )
    .action(async (a: string, b: string, options: DiffCliOptions) => {
      const limit = parseCount(options.limit, '--limit');
      // JSON lists the pages in one document, so it keeps them (up to --limit); text prints each as found and keeps none
      // (keeping 10,000 pages with their runs took 30-40 MiB: issue 10, peak RSS).
      const listed: ChangedPage[] = [];
      let listedCount = 0;
      let unlisted = 0;
      const onChangedPage = (page: ChangedPage): void => {
        if (listedCount >= limit) unlisted++;
        else {
          listedCount++;
          if (options.json) listed.push(page);
          else printLine(pageText(page));
        }
      };
      const diff = await withSnapshot(a, (ra) =>
        withSnapshot(b, (rb) =>
          diffSnapshots(ra, rb, { data: !options.tagsOnly, onChangedPage: options.list ? onChangedPage : undefined }),
        ),
      );
      if (options.json) printJson({ ...diff, ...(options.list ? { pages: listed, unlistedPages: unlisted } : {}) });
      else {
        if (unlisted) printLine(`... ${unlisted} more changed pages not listed (--limit ${limit})`);
        for (const r of diff.regions) printLine(regionText(r));
        if (diff.onlyInA.length) printLine(`only in ${a}: ${diff.onlyInA.join(', ')}`);
        if (diff.onlyInB.length) printLine(`only in ${b}: ${diff.onlyInB.join(', ')}`);
        printLine(diff.changed ? 'snapshots differ' : 'no change');
      }
      if (options.failOnDiff && diff.changed) process.exitCode = EXIT.differs;
    });
}
