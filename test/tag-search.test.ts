/**
 * Allocations (runs of equal tags) and searches (a tag, a byte pattern) on
 * snapshots whose allocations and bytes the tests set by hand.
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHexBytes, searchBytes, tagRuns } from '../src/forensics/tag-search.js';
import { virtualAddressSpace } from '../src/forensics/virtual-addresses.js';
import { virtualSearchBytes, virtualTagRuns } from '../src/forensics/virtual-search.js';
import type { SnapshotReader } from '../src/format/model.js';
import { openSnapshot } from '../src/reader/open.js';
import { saveSnapshot } from '../src/writer/save.js';
import { PageTableBuilder } from '../testkit/page-tables.js';
import { buildGuest, SCENARIO_A, saveGuest, temporaryDirectory } from './forensics-fixtures.js';
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

describe('tags allocs and tags search over guest virtual addresses (--va)', () => {
  const ram = 0x4000_0000n;
  const kernel = 0xffff_0000_0010_0000n;
  let path: string;
  let virtualReader: SnapshotReader;

  beforeAll(async () => {
    // VA page 0 -> RAM+0x11000, page 1 -> RAM+0x10000 (so VA order is not IPA order), page 2 unmapped, page 3 -> RAM+0x13000.
    const vm = buildGuest({
      regions: [{ slot: 0, name: 'ram', guestAddress: ram, size: 0x40_0000n }],
      allocations: [
        { address: ram + 0x1_1f00n, bytes: 0x100, tag: 5 },
        { address: ram + 0x1_0000n, bytes: 0x80, tag: 5 },
        { address: ram + 0x1_3000n, bytes: 0x40, tag: 0xc },
      ],
      writes: [
        { address: ram + 0x1_1ffcn, bytes: new TextEncoder().encode('VIRT') },
        { address: ram + 0x1_0000n, bytes: new TextEncoder().encode('UAL!') },
        { address: ram + 0x1_3010n, bytes: new TextEncoder().encode('VIRTUAL!') },
      ],
    });
    const tables = new PageTableBuilder({ granule: 4096, vaBits: 48, tableArea: ram });
    tables.map(kernel, ram + 0x1_1000n, 0x1000n);
    tables.map(kernel + 0x1000n, ram + 0x1_0000n, 0x1000n);
    tables.map(kernel + 0x3000n, ram + 0x1_3000n, 0x1000n);
    tables.writeTo(vm);
    tables.setRegisters(vm.vcpus()[0]);
    path = join(dir.path, 'virtual.vmsnap');
    await saveSnapshot(vm, path, { threads: 0 });
    vm.close();
    virtualReader = await openSnapshot(path);
  });
  afterAll(async () => {
    await virtualReader?.close();
  });

  it('joins an allocation that continues on the next virtual page, skips the unmapped page, and gives both addresses', async () => {
    const space = await virtualAddressSpace(virtualReader);
    const range = { start: kernel - 0x1000n, end: kernel + 0x5000n };
    expect(await collect(virtualTagRuns(virtualReader, space, range))).toEqual([
      { region: 'ram', start: kernel + 0xf00n, ipa: ram + 0x1_1f00n, size: 0x180n, tag: 5 },
      { region: 'ram', start: kernel + 0x3000n, ipa: ram + 0x1_3000n, size: 0x40n, tag: 0xc },
    ]);
    // By IPA the same granules are two runs, in the other order.
    expect(await collect(tagRuns(virtualReader, { range: { start: ram + 0x1_0000n, end: ram + 0x1_2000n } }))).toEqual([
      { region: 'ram', start: ram + 0x1_0000n, size: 0x80n, tag: 5 },
      { region: 'ram', start: ram + 0x1_1f00n, size: 0x100n, tag: 5 },
    ]);
  });

  it('finds a pattern that straddles two virtual pages mapped apart', async () => {
    const space = await virtualAddressSpace(virtualReader);
    const pattern = new TextEncoder().encode('VIRTUAL!');
    const range = { start: kernel, end: kernel + 0x4000n };
    expect(await collect(virtualSearchBytes(virtualReader, space, pattern, range))).toEqual([
      { region: 'ram', address: kernel + 0xffcn, ipa: ram + 0x1_1ffcn, tag: 5 },
      { region: 'ram', address: kernel + 0x3010n, ipa: ram + 0x1_3010n, tag: 0xc },
    ]);
    // By IPA only the unsplit copy is there.
    expect((await collect(searchBytes(virtualReader, pattern))).map((m) => m.address)).toEqual([ram + 0x1_3010n]);
  });

  it('vmsnap tags allocs/search --va: a tagged start is untagged, CSV has the IPA, --ipa-range with --va is refused', async () => {
    const allocs = await vmsnap('tags', 'allocs', path, '--va', '0xf5ff000000100000+16K', '--csv');
    expect(allocs.code).toBe(0);
    expect(allocs.out).toBe(
      'region,start,ipa,size,tag\nram,0xffff000000100f00,0x40011f00,384,5\nram,0xffff000000103000,0x40013000,64,12\n',
    );
    const search = await vmsnap('tags', 'search', path, '--string', 'VIRTUAL!', '--va', '0xffff000000100000-0xffff000000104000');
    expect(search.out).toContain('ram 0xffff000000100ffc (IPA 0x40011ffc) tag 0x5');
    expect(search.out).toContain('2 matches');
    const both = await vmsnap('tags', 'allocs', path, '--va', '0xffff000000100000+4K', '--ipa-range', '0x40000000+4K');
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/at most one of --ipa-range and --va/);
  });
});
