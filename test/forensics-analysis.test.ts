/**
 * Tag statistics, granule dumps, diffs, tag maps and pointer checks on
 * snapshots whose tags the tests know by hand (forensics-fixtures.ts).
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAddress, parseIpaRange } from '../src/forensics/addresses.js';
import { dumpGranules, formatDataLine, formatTagLines } from '../src/forensics/granule-dump.js';
import { PageState } from '../src/forensics/page-states.js';
import { checkPointer } from '../src/forensics/pointer-check.js';
import { type ChangedPage, diffSnapshots } from '../src/forensics/snapshot-diff.js';
import { buildTagMap, chooseScale, MAX_CELLS } from '../src/forensics/tag-map.js';
import { renderTagMapSvg } from '../src/forensics/tag-map-svg.js';
import { tagStatistics } from '../src/forensics/tag-stats.js';
import type { SnapshotReader } from '../src/format/model.js';
import { openSnapshot } from '../src/reader/open.js';
import { SCENARIO_A, SCENARIO_B, saveGuest, temporaryDirectory } from './forensics-fixtures.js';

const dir = temporaryDirectory();
let a: SnapshotReader;
let b: SnapshotReader;

beforeAll(async () => {
  a = await openSnapshot(await saveGuest(SCENARIO_A, join(dir.path, 'a.vmsnap')));
  b = await openSnapshot(await saveGuest(SCENARIO_B, join(dir.path, 'b.vmsnap')));
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  dir.remove();
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe('tag statistics', () => {
  it('counts pages, tags, distinct tags per page and allocation runs of the ram region', async () => {
    const report = await tagStatistics(a);
    const ram = report.regions.find((r) => r.region === 'ram')!;
    expect(ram.pages).toBe(256);
    // page 0 (tags 3, 5 and 0), page 1 (7), pages 2-3 (0xa)
    expect(ram.taggedPages).toBe(4);
    expect(ram.zeroTagPages).toBe(252);
    const expected = new Array(16).fill(0);
    expected[3] = 4;
    expected[5] = 2;
    expected[7] = 256;
    expected[0xa] = 512;
    expected[0] = 65536 - 774;
    expect(ram.tagHistogram).toEqual(expected);
    expect(ram.distinctTagsPerPage[1]).toBe(255);
    expect(ram.distinctTagsPerPage[3]).toBe(1);
    expect(ram.runs.count).toBe(4);
    expect(ram.runs.largestBytes).toBe(8192);
    expect(ram.runs.buckets).toEqual([
      { minBytes: 32, maxBytes: 48, count: 1 },
      { minBytes: 64, maxBytes: 112, count: 1 },
      { minBytes: 4096, maxBytes: 8176, count: 1 },
      { minBytes: 8192, maxBytes: 16368, count: 1 },
    ]);
  });

  it('reports the read-only region as holding no tags and sums regions into overall', async () => {
    const report = await tagStatistics(a);
    const flash = report.regions.find((r) => r.region === 'flash')!;
    expect(flash.mte).toBe(false);
    expect(flash.untaggedRegionPages).toBe(16);
    expect(flash.granules).toBe(0);
    expect(report.overall.pages).toBe(16 + 256 + 64);
    expect(report.overall.taggedPages).toBe(5);
    expect(report.overall.tagHistogram[0xf]).toBe(1);
    expect(report.overall.runs.count).toBe(5);
  });

  it('filters by region and by IPA range (pages overlapping it)', async () => {
    const byName = await tagStatistics(a, { region: 'ram2' });
    expect(byName.regions.map((r) => r.region)).toEqual(['ram2']);
    const range = await tagStatistics(a, { range: parseIpaRange('0x40001800-0x40003000') });
    expect(range.regions.map((r) => r.region)).toEqual(['ram']);
    expect(range.overall.pages).toBe(2);
    expect(range.overall.tagHistogram[7]).toBe(256);
    expect(range.overall.tagHistogram[0xa]).toBe(256);
    // The 0xa run is cut at the filter's edge: one page of it is counted.
    expect(range.overall.runs.buckets.find((x) => x.minBytes === 4096)?.count).toBe(2);
    await expect(tagStatistics(a, { region: 'nope' })).rejects.toThrow(/no region named "nope"/);
  });
});

describe('granule dumps', () => {
  it('gives the tag of every granule, widened to granule bounds', async () => {
    const lines = await collect(dumpGranules(a, 0x4000_0038n, 0x20n));
    expect(lines.map((l) => [l.address, l.tag])).toEqual([
      [0x4000_0030n, 3],
      [0x4000_0040n, 5],
      [0x4000_0050n, 5],
    ]);
  });

  it('shows data next to tags like x/…m, and 16 tags per line without data', async () => {
    const [first] = await collect(dumpGranules(a, 0x4000_0000n, 16n, { data: true }));
    expect(formatDataLine(first)).toBe('0x0000000040000000  tag 3  4d 54 45 20 67 72 61 6e 75 6c 65 20 64 75 6d 70  |MTE granule dump|');
    const text = await collect(formatTagLines(dumpGranules(a, 0x4000_0000n, 512n)));
    expect(text).toEqual(['0x0000000040000000:  3 3 3 3 5 5 0 0 0 0 0 0 0 0 0 0', '0x0000000040000100:  0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0']);
  });

  it('marks granules of a region without tags and refuses ranges outside one region', async () => {
    const [line] = await collect(dumpGranules(a, 0x1000n, 4n, { data: true }));
    expect(line.tag).toBeNull();
    expect(Array.from(line.data!.subarray(0, 4))).toEqual([0xde, 0xad, 0xbe, 0xef]);
    await expect(collect(dumpGranules(a, 0x2000_0000n, 16n))).rejects.toThrow(/0x20000000: no region/);
    await expect(collect(dumpGranules(a, 0x400f_fff0n, 32n))).rejects.toThrow(/runs past the end of region "ram"/);
  });
});

describe('snapshot diff', () => {
  it('counts tagged, cleared and retagged granules and changed data per region', async () => {
    const pages: ChangedPage[] = [];
    const diff = await diffSnapshots(a, b, { onChangedPage: (p) => pages.push(p) });
    const ram = diff.regions.find((r) => r.region === 'ram')!;
    expect(ram).toMatchObject({
      pagesChanged: 4,
      pagesTagsChanged: 3,
      pagesDataChanged: 1,
      granulesTagged: 3,
      granulesCleared: 4,
      granulesRetagged: 256,
      granulesDataChanged: 2,
    });
    expect(diff.regions.find((r) => r.region === 'ram2')!.pagesChanged).toBe(0);
    expect(diff.changed).toBe(true);
    expect(pages.map((p) => p.address)).toEqual([0x4000_0000n, 0x4000_1000n, 0x4001_0000n, 0x4002_0000n]);
    expect(pages[0].tagChanges).toEqual([{ address: 0x4000_0000n, granules: 4, from: 3, to: 0 }]);
    expect(pages[1].tagChanges).toEqual([{ address: 0x4000_1000n, granules: 256, from: 7, to: 9 }]);
    expect(pages[3]).toMatchObject({ dataGranulesChanged: 2, dataChanges: [{ address: 0x4002_0000n, granules: 2 }], tagChanges: [] });
  });

  it('finds nothing between a snapshot and itself, and ignores data with data: false', async () => {
    expect((await diffSnapshots(a, a)).changed).toBe(false);
    const tagsOnly = await diffSnapshots(a, b, { data: false });
    expect(tagsOnly.regions.find((r) => r.region === 'ram')!.pagesDataChanged).toBe(0);
  });
});

describe('tag maps', () => {
  it('colours one cell per page by tag state for a small guest', async () => {
    const map = await buildTagMap(a);
    expect(map.scale.pagesPerCell).toBe(1);
    const ram = map.regions.find((r) => r.name === 'ram')!;
    expect(Array.from(ram.cells.subarray(0, 5))).toEqual([
      PageState.ManyTags,
      PageState.OneTag,
      PageState.OneTag,
      PageState.OneTag,
      PageState.ZeroTags,
    ]);
    expect(map.regions.find((r) => r.name === 'flash')!.cells.every((c) => c === PageState.UntaggedRegion)).toBe(true);
    expect(ram.pagesInState[PageState.ZeroTags]).toBe(252);
  });

  it('marks pages changed since a second snapshot', async () => {
    const map = await buildTagMap(b, { against: a });
    const ram = map.regions.find((r) => r.name === 'ram')!;
    expect(ram.cells[0]).toBe(PageState.TagsChanged);
    expect(ram.cells[1]).toBe(PageState.TagsChanged);
    expect(ram.cells[2]).toBe(PageState.OneTag);
    expect(ram.cells[0x10]).toBe(PageState.TagsChanged);
    expect(ram.cells[0x20]).toBe(PageState.DataChanged);
    const svg = renderTagMapSvg(map);
    expect(svg).toContain('tags changed');
    expect(svg).toContain('data changed');
  });

  it('writes an SVG with a legend, region labels and row addresses', async () => {
    const svg = renderTagMapSvg(await buildTagMap(a));
    expect(svg.startsWith('<?xml')).toBe(true);
    for (const text of ['all tags zero', 'one tag', 'many tags', 'untagged region', 'ram2', '[0x0040000000, 0x0040100000)', '0x0100000000'])
      expect(svg).toContain(text);
    expect(svg).not.toContain('tags changed');
  });

  it('aggregates pages into cells for a 4 GiB guest and keeps the cell count bounded', () => {
    const scale = chooseScale([1 << 20, 16384]);
    expect(scale.pagesPerCell).toBeGreaterThan(1);
    const cells = Math.ceil((1 << 20) / scale.pagesPerCell) + Math.ceil(16384 / scale.pagesPerCell);
    expect(cells).toBeLessThanOrEqual(MAX_CELLS);
    expect(chooseScale([256]).cellPx).toBe(16);
  });

  it('stays a few MB for the worst case of alternating cells', () => {
    const cells = new Uint8Array(MAX_CELLS).map((_, i) => (i % 2 ? PageState.OneTag : PageState.ManyTags));
    const svg = renderTagMapSvg({
      pageSize: 4096,
      scale: chooseScale([1 << 20]),
      source: 'worst.vmsnap',
      against: null,
      regions: [
        {
          name: 'ram',
          guestAddress: 0x4000_0000n,
          size: 1n << 32n,
          mte: true,
          compared: false,
          pages: 1 << 20,
          cells,
          pagesInState: [0, 0, 1 << 19, 1 << 19, 0, 0],
        },
      ],
    });
    expect(svg.length).toBeLessThan(8 * 1024 * 1024);
  });
});

describe('pointer check', () => {
  it('matches a pointer whose logical tag is the allocation tag', async () => {
    const result = await checkPointer(a, 0x0700_0000_4000_1234n);
    expect(result).toMatchObject({ match: true, logicalTag: 7, allocationTag: 7, address: 0x4000_1234n, region: 'ram' });
  });

  it('reports a mismatch, and every mismatching granule of an access', async () => {
    const result = await checkPointer(a, 0x0300_0000_4000_0000n, 0x60n);
    expect(result.match).toBe(false);
    expect(result.granulesChecked).toBe(6);
    expect(result.granulesMismatched).toBe(2);
    expect(result.mismatches).toEqual([
      { address: 0x4000_0040n, ipa: 0x4000_0040n, allocationTag: 5 },
      { address: 0x4000_0050n, ipa: 0x4000_0050n, allocationTag: 5 },
    ]);
  });

  it('an access may run from one region into an adjacent one, in check-pointer and in dumps', async () => {
    const path = await saveGuest(
      {
        regions: [
          { slot: 0, name: 'low', guestAddress: 0x4000_0000n, size: 0x1000n },
          { slot: 1, name: 'high', guestAddress: 0x4000_1000n, size: 0x1000n },
        ],
        allocations: [
          { address: 0x4000_0fe0n, bytes: 32, tag: 4 },
          { address: 0x4000_1000n, bytes: 16, tag: 4 },
          { address: 0x4000_1010n, bytes: 16, tag: 6 },
        ],
      },
      join(dir.path, 'adjacent.vmsnap'),
    );
    const reader = await openSnapshot(path);
    try {
      const result = await checkPointer(reader, 0x0400_0000_4000_0fe0n, 0x30n);
      expect(result).toMatchObject({ granulesChecked: 3, granulesMismatched: 0, match: true, region: 'low' });
      const crossing = await checkPointer(reader, 0x0400_0000_4000_0ff0n, 0x30n);
      expect(crossing.mismatches).toEqual([{ address: 0x4000_1010n, ipa: 0x4000_1010n, allocationTag: 6 }]);
      const lines = await collect(dumpGranules(reader, 0x4000_0ff0n, 0x20n));
      expect(lines.map((l) => [l.address, l.tag])).toEqual([
        [0x4000_0ff0n, 4],
        [0x4000_1000n, 4],
      ]);
      // A hole after the last region is still refused.
      await expect(checkPointer(reader, 0x0400_0000_4000_1ff0n, 0x20n)).rejects.toThrow(/runs past the end of region "high"/);
    } finally {
      await reader.close();
    }
  });

  it('ignores the bits above the tag (top-byte-ignore) and refuses untagged or unmapped addresses', async () => {
    expect((await checkPointer(a, 0xf500_0000_4000_0040n)).match).toBe(true);
    await expect(checkPointer(a, 0x0000_0000_0000_1000n)).rejects.toThrow(/region "flash", which is not an MTE region/);
    await expect(checkPointer(a, 0x0300_0000_2000_0000n)).rejects.toThrow(/0x20000000/);
  });
});

describe('address parsing', () => {
  it('takes hex, decimal and size suffixes, and START-END or START+LENGTH ranges', () => {
    expect(parseAddress('0x4000_1000')).toBe(0x4000_1000n);
    expect(parseAddress('4K')).toBe(4096n);
    expect(parseIpaRange('0x1000+2M')).toEqual({ start: 0x1000n, end: 0x1000n + (2n << 20n) });
    expect(() => parseIpaRange('0x2000-0x1000')).toThrow(/empty/);
    expect(() => parseAddress('zz')).toThrow(/not a number/);
  });
});
