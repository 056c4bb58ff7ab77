/** GridTable: a snapshot's chunk index in columns, seen as arrays whose elements are made when read. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { changedPagesList, chunkList, GridTable } from '../src/format/grid-table.js';
import type { ChunkLocation } from '../src/format/model.js';
import { openSnapshot } from '../src/reader/open.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { saveSnapshot } from '../src/writer/save.js';

const rows: ChunkLocation[] = [
  { kind: 'ram', region: 0, firstPage: 0, pageCount: 4, offset: 100n, length: 40n },
  { kind: 'tags', region: 0, firstPage: 0, pageCount: 4, offset: 140n, length: 36n },
  { kind: 'ram', region: 0, firstPage: 4, pageCount: 2, offset: 176n, length: 2n ** 40n + 3n },
  { kind: 'ram', region: 2, firstPage: 8, pageCount: 4, offset: 2n ** 52n + 1n, length: 64n },
];

function tableOf(locations: readonly ChunkLocation[], capacity?: number): GridTable {
  const table = new GridTable(4, capacity);
  for (const c of locations) table.push(c.kind, c.region, c.firstPage, c.pageCount, c.offset, c.length);
  table.trim();
  return table;
}

describe('GridTable', () => {
  it('gives back every row as pushed, past its first capacity, offsets beyond 2^32 exact', () => {
    const many = Array.from({ length: 200 }, (_, i) => ({ ...rows[i % rows.length], offset: BigInt(i) * 2n ** 33n + 7n }));
    const table = tableOf(many, 1);
    expect(table.length).toBe(200);
    for (const [i, c] of many.entries()) expect(table.chunkAt(i)).toEqual(c);
  });

  it('finds a row by kind, region and first page, and nothing at a page no row starts at', () => {
    const table = tableOf(rows);
    expect(table.positionOf('ram', 0, 4)).toBe(2);
    expect(table.positionOf('tags', 0, 0)).toBe(1);
    expect(table.positionOf('ram', 2, 8)).toBe(3);
    expect(table.positionOf('tags', 0, 4)).toBe(-1);
    expect(table.positionOf('ram', 1, 0)).toBe(-1);
    expect(table.positionOf('ram', 0, 2)).toBe(-1); // inside a chunk, not a start
    expect(table.positionOf('ram', 2, 1000)).toBe(-1);
  });

  it('reads as a read-only array of ChunkLocation', () => {
    const list = chunkList(tableOf(rows));
    expect(Array.isArray(list)).toBe(true);
    expect(list.length).toBe(4);
    expect(list[2]).toEqual(rows[2]);
    expect(list[4]).toBeUndefined();
    expect(list.at(-1)).toEqual(rows[3]);
    expect([...list]).toEqual(rows);
    expect([...list.entries()].map(([i, c]) => [i, c.firstPage])).toEqual(rows.map((c, i) => [i, c.firstPage]));
    expect(list.filter((c) => c.kind === 'ram').map((c) => c.offset)).toEqual([100n, 176n, 2n ** 52n + 1n]);
    expect(list.findIndex((c) => c.region === 2)).toBe(3);
    expect(Object.keys(list)).toEqual(['0', '1', '2', '3']);
    expect(2 in list && !(4 in list)).toBe(true);
    expect(list.kindOf(1)).toBe('tags');
    expect([list.regionOf(3), list.firstPageOf(3), list.pageCountOf(2)]).toEqual([2, 8, 2]);
    expect(list.positionOf('ram', 0, 4)).toBe(2);
    expect(() => {
      (list as unknown as ChunkLocation[])[0] = rows[1];
    }).toThrow(TypeError);
    expect(() => (list as unknown as ChunkLocation[]).push(rows[0])).toThrow(TypeError);
  });

  it('reads changed-page map rows with their changed counts', () => {
    const table = new GridTable(4);
    table.push('changed', 1, 4, 4, 10n, 20n, 3);
    const maps = changedPagesList(table);
    expect([...maps]).toEqual([{ region: 1, firstPage: 4, pageCount: 4, changedCount: 3, offset: 10n, length: 20n }]);
    expect(maps.positionOf(1, 4)).toBe(0);
    expect(maps.positionOf(1, 0)).toBe(-1);
  });
});

describe("a file reader's chunks", () => {
  it('are the sections the index lists, each read back by its location', async () => {
    const { vm } = createSimulatedGuest({ sizeMiB: 4, seed: 3, pageSize: 4096 });
    const path = join(mkdtempSync(join(tmpdir(), 'grid-table-')), 'g.vmsnap');
    await saveSnapshot(vm, path, { pagesPerChunk: 64, threads: 0 });
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      let offset = reader.chunks[0].offset;
      for (const [i, location] of reader.chunks.entries()) {
        expect(location.offset).toBe(offset); // chunks tile the file between META and the vCPUs
        offset += location.length;
        expect(reader.chunks.positionOf(location.kind, location.region, location.firstPage)).toBe(i);
        const chunk = await (location.kind === 'ram' ? reader.readRamChunk(location) : reader.readTagChunk(location));
        expect([chunk.kind, chunk.region, chunk.firstPage, chunk.pageCount]).toEqual([
          location.kind,
          location.region,
          location.firstPage,
          location.pageCount,
        ]);
        if (location.kind === 'ram') {
          const expected = new Uint8Array(location.pageCount * 4096);
          vm.readMemory(reader.regions[location.region].guestAddress + BigInt(location.firstPage * 4096), expected);
          expect(Buffer.compare((chunk as { data: Uint8Array }).data, expected)).toBe(0);
        }
      }
    } finally {
      await reader.close();
      rmSync(path, { force: true });
    }
  });
});
