/** `vmsnap tags map FILE -o map.svg [--against B]`: a picture of every region, one cell per page (or group of pages). */
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { PAGE_STATE_NAMES, type PageState } from '../../src/forensics/page-states.js';
import { buildTagMap } from '../../src/forensics/tag-map.js';
import { renderTagMapSvg } from '../../src/forensics/tag-map-svg.js';
import { resolveOutput, writeOutputFile } from '../../src/io/output-file.js';
import { standardOutput, toJson } from '../cli-support.js';
import { commandGroup, EXIT_CODES_HELP, examples, printLine, withSnapshot } from './forensics-support.js';

interface MapCliOptions {
  output: string;
  force?: boolean;
  against?: string;
  tagsOnly?: boolean;
  json?: boolean;
}

export function registerTagsMap(program: Command): void {
  commandGroup(program, 'tags', 'Offline forensics on MTE tag state')
    .command('map')
    .description(
      'An SVG picture of each region, one cell per page coloured by tag state ' +
        '(untagged region, all-zero, one tag, many tags; with --against also tags changed / data changed). ' +
        'Large guests get cells of 2^k pages so the picture stays about 1200x1200 px',
    )
    .argument('<file>', 'snapshot file')
    .requiredOption('-o, --output <map.svg>', 'SVG file to write, or - for standard output (to PNG: rsvg-convert map.svg -o map.png)')
    .option('--force', 'replace an existing file (never a snapshot read)')
    .option('--against <snapshot>', 'an earlier snapshot of the same guest: mark pages that changed since it')
    .option('--tags-only', 'with --against, compare tags only (faster)')
    .option('--json', 'print the map summary (scale, pages per state per region) as JSON')
    .addHelpText(
      'after',
      examples(['vmsnap tags map guest.vmsnap -o map.svg', 'vmsnap tags map after.vmsnap --against before.vmsnap -o changes.svg']) +
        EXIT_CODES_HELP,
    )
    .action(async (file: string, options: MapCliOptions) => {
      const inputs = [file, options.against ?? file];
      // Refused outputs are refused before the map is computed.
      if (options.output !== '-') resolveOutput(options.output, { force: options.force, inputs, streamable: true });
      const map = await withSnapshot(file, (reader) =>
        options.against
          ? withSnapshot(options.against, (against) => buildTagMap(reader, { against, compareData: !options.tagsOnly }))
          : buildTagMap(reader),
      );
      const svg = renderTagMapSvg(map);
      const bytes = Buffer.from(svg);
      if (options.output === '-') await pipeline([bytes], standardOutput('tags map -o -'), { end: false });
      else await writeOutputFile(options.output, bytes, { force: options.force, inputs });
      const regions = map.regions.map((r) => ({
        name: r.name,
        guestAddress: r.guestAddress,
        size: r.size,
        pages: r.pages,
        cells: r.cells.length,
        pagesInState: Object.fromEntries(r.pagesInState.map((n, s) => [PAGE_STATE_NAMES[s as PageState], n])),
      }));
      // The map itself may be on standard output.
      const report = options.output === '-' ? (line: string) => process.stderr.write(`${line}\n`) : printLine;
      if (options.json) report(toJson({ output: options.output, svgBytes: Buffer.byteLength(svg), scale: map.scale, regions }));
      else report(`wrote ${options.output} (${Buffer.byteLength(svg)} bytes, ${map.scale.pagesPerCell} page(s) per cell)`);
    });
}
