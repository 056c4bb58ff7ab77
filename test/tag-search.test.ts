/**
 * Allocations (runs of equal tags) and searches (a tag, a byte pattern) on
 * snapshots whose allocations and bytes the tests set by hand.
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHexBytes, searchBytes, tagRuns } from '../src/forensics/tag-search.js';
import type { SnapshotReader } from '../src/format/model.js';
import { openSnapshot } from '../src/reader/open.js';
import { SCENARIO_A, saveGuest, temporaryDirectory } from './forensics-fixtures.js';
import { vmsnap } from './support/run-cli.js';

const dir = temporaryDirectory();
let a: string;
let reader: SnapshotReader;

beforeAll(async () => {
  a = await saveGuest(SCENARIO_A, join(dir.path, 'a.vmsnap'));
  reader = await openSnapshot(a);
});
afterAll(async () => {
  await reader?.close();
  dir.remove();
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe('tags allocs', () => {
  it('lists exactly the allocations the guest made, region by region', async () => {
    expect(await collect(tagRuns(reader))).toEqual([
      { region: 'ram', start: 0x4000_0000n, size: 64n, tag: 3 },
      { region: 'ram', start: 0x4000_0040n, size: 32n, tag: 5 },
      { region: 'ram', start: 0x4000_1000n, size: 4096n, tag: 7 },
      { region: 'ram', start: 0x4000_2000n, size: 8192n, tag: 0xa },
      { region: 'ram2', start: 0x1_0000_0100n, size: 16n, tag: 0xf },
    ]);
  });

  it('selects one tag, includes free runs when asked, and respects a range', async () => {
    expect(await collect(tagRuns(reader, { tag: 7 }))).toEqual([{ region: 'ram', start: 0x4000_1000n, size: 4096n, tag: 7 }]);
    const withZero = await collect(tagRuns(reader, { region: 'ram', includeZero: true }));
    expect(withZero[2]).toEqual({ region: 'ram', start: 0x4000_0060n, size: 0x1000n - 0x60n, tag: 0 });
    expect(withZero.reduce((s, r) => s + r.size, 0n)).toBe(0x10_0000n);
    expect(await collect(tagRuns(reader, { range: { start: 0x4000_2000n, end: 0x4000_3000n } }))).toEqual([
      { region: 'ram', start: 0x4000_2000n, size: 4096n, tag: 0xa },
    ]);
  });

  it('vmsnap tags allocs: text, CSV, JSON with exact counts under --limit', async () => {
    const csv = await vmsnap('tags', 'allocs', a, '--csv', '--min-size', '4K');
    expect(csv.out).toBe('region,start,size,tag\nram,0x40001000,4096,7\nram,0x40002000,8192,10\n');
    const json = JSON.parse((await vmsnap('tags', 'allocs', a, '--json', '--limit', '2')).out);
    expect(json).toMatchObject({ schemaVersion: 1, count: 5, listed: 2 });
    expect(json.allocations[1]).toEqual({ region: 'ram', start: String(0x4000_0040), size: '32', tag: 5 });
    expect((await vmsnap('tags', 'allocs', a, '--tag', '16')).code).toBe(2);
  });
});

describe('tags search', () => {
  it('finds text and bytes with the tag of the granule they start in', async () => {
    expect(await collect(searchBytes(reader, new TextEncoder().encode('dump test')))).toEqual([
      { region: 'ram', address: 0x4000_0000n + 12n, tag: 3 },
    ]);
    expect(await collect(searchBytes(reader, parseHexBytes('de ad be ef')))).toEqual([{ region: 'flash', address: 0x1000n, tag: null }]);
    expect(await collect(searchBytes(reader, parseHexBytes('0xdeadbeef'), { alignment: 8 }))).toEqual([
      { region: 'flash', address: 0x1000n, tag: null },
    ]);
  });

  it('finds a pattern that straddles two chunk windows, and every occurrence', async () => {
    const pattern = new TextEncoder().encode('straddling-pattern');
    const path = await saveGuest(
      {
        regions: [{ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: 0x4_0000n }],
        allocations: [
          { address: 0x4000_1ff0n, bytes: 16, tag: 6 },
          { address: 0x4000_2000n, bytes: 16, tag: 8 },
        ],
        writes: [
          { address: 0x4000_1ff8n, bytes: pattern },
          { address: 0x4000_3000n, bytes: pattern },
        ],
      },
      join(dir.path, 'straddle.vmsnap'),
      { pagesPerChunk: 2 },
    );
    const small = await openSnapshot(path);
    try {
      expect(await collect(searchBytes(small, pattern))).toEqual([
        { region: 'ram', address: 0x4000_1ff8n, tag: 6 },
        { region: 'ram', address: 0x4000_3000n, tag: 0 },
      ]);
    } finally {
      await small.close();
    }
    const cli = await vmsnap('tags', 'search', path, '--string', 'straddling-pattern', '--csv');
    expect(cli.out).toBe('region,address,tag\nram,0x40001ff8,6\nram,0x40003000,0\n');
    const u64 = JSON.parse((await vmsnap('tags', 'search', path, '--u64', '0x676e696c64646172', '--json')).out);
    expect(u64).toMatchObject({ count: 0 });
    expect((await vmsnap('tags', 'search', path)).code).toBe(2);
  });
});
