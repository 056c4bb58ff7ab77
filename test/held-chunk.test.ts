/**
 * The forensics readers hold each chunk in memory the file reader reuses
 * (src/forensics/held-chunk.ts): what they return must be copies, never views
 * of that memory, and every chunk they take must go back. Checked on a guest
 * of many small chunks with absent pages, tags and data in every chunk (random
 * pages: RAM chunks stored raw, tag chunks compressed), by
 * reading each chunk's memory again (so released memory is overwritten) and
 * comparing with what the plain (non-reusing) reads give.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { GuestMemory } from '../src/forensics/guest-memory.js';
import { copyFromChunk, type HeldChunk } from '../src/forensics/held-chunk.js';
import { pageWindows } from '../src/forensics/region-cursor.js';
import { ramChunkFromContent, tagChunkFromPacked } from '../src/format/chunk-objects.js';
import { GRANULE_SIZE } from '../src/format/constants.js';
import type { ChunkLocation, SnapshotReader } from '../src/format/model.js';
import { type FileSnapshot, openSnapshot } from '../src/reader/open.js';
import { writeGuestTags } from '../src/vm/tag-copy.js';
import { saveSnapshot } from '../src/writer/save.js';
import { temporaryDirectory } from './forensics-fixtures.js';

const PAGE = 4096;
const PAGES = 64;
const RAM = 0x4000_0000n;
const dir = temporaryDirectory();
let file: FileSnapshot;

/** Page p holds bytes from a seed unless p % 5 === 2 (left zero: absent); tags on pages p % 3 !== 0. */
function pageBytes(p: number): Uint8Array {
  const bytes = new Uint8Array(PAGE);
  let x = (p + 1) * 2654435761;
  for (let i = 0; i < PAGE; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

beforeAll(async () => {
  const vm = new SimulatedVm({ pageSize: PAGE });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: RAM, size: BigInt(PAGES * PAGE) });
  for (let p = 0; p < PAGES; p++) {
    if (p % 5 !== 2) vm.writeMemory(RAM + BigInt(p * PAGE), pageBytes(p));
    if (p % 3 !== 0) writeGuestTags(vm, RAM + BigInt(p * PAGE), new Uint8Array(PAGE / GRANULE_SIZE).fill((p % 15) + 1));
  }
  const path = join(dir.path, 'small-chunks.vmsnap');
  await saveSnapshot(vm, path, { threads: 0, pagesPerChunk: 4 });
  vm.close();
  file = await openSnapshot(path);
});
afterAll(async () => {
  await file?.close();
  dir.remove();
});

/** The file reader, counting the reused chunks taken and not yet given back. */
function counting(reader: FileSnapshot): { reader: SnapshotReader; outstanding: () => number; taken: () => number } {
  let outstanding = 0;
  let taken = 0;
  const wrapped = Object.create(reader) as FileSnapshot;
  Object.defineProperty(wrapped, 'readTransientChunk', {
    value: async (location: ChunkLocation): Promise<HeldChunk> => {
      const held = await reader.readTransientChunk(location);
      outstanding++;
      taken++;
      let released = false;
      return {
        chunk: held.chunk,
        release: () => {
          if (!released) outstanding--;
          released = true;
          held.release();
        },
      };
    },
  });
  return { reader: wrapped, outstanding: () => outstanding, taken: () => taken };
}

describe('pageWindows on reused chunk memory', () => {
  it('gives every page and tag as the plain reads do, in windows not aligned to chunks, and gives every chunk back', async () => {
    const { reader, outstanding, taken } = counting(file);
    const region = reader.regions[0];
    const data: Uint8Array[] = [];
    const tags: Uint8Array[] = [];
    for await (const window of pageWindows(reader, region, 1, PAGES - 1, { data: true, tags: true, windowPages: 3 })) {
      expect(outstanding()).toBeLessThanOrEqual(2); // one RAM chunk and one tag chunk at a time
      data.push(window.data!.slice());
      tags.push(window.tags!.slice());
    }
    expect(taken()).toBeGreaterThan(0);
    expect(outstanding()).toBe(0);
    const length = (PAGES - 2) * PAGE;
    expect(Buffer.concat(data).equals(Buffer.from(await file.readMemory(RAM + BigInt(PAGE), length)))).toBe(true);
    expect(Buffer.concat(tags).equals(Buffer.from(await file.readTags(RAM + BigInt(PAGE), length)))).toBe(true);
  });

  it('gives its chunks back when the walk stops early', async () => {
    const { reader, outstanding } = counting(file);
    for await (const window of pageWindows(reader, reader.regions[0], 0, PAGES, { data: true, tags: true })) {
      if (window.firstPage >= 8) break;
    }
    expect(outstanding()).toBe(0);
  });
});

describe('GuestMemory on reused chunk memory', () => {
  it('returns copies: a read stays right after its chunk is given back and its memory holds other chunks', async () => {
    const { reader, outstanding } = counting(file);
    const memory = new GuestMemory(reader, 1);
    // Ranges that cross chunk and page edges, including absent pages (page 2, 7, 12...).
    const ranges: [bigint, number][] = [
      [RAM + 0x10n, 3 * PAGE],
      [RAM + BigInt(6 * PAGE) + 8n, 2 * PAGE + 100],
      [RAM + BigInt(11 * PAGE), 6 * PAGE],
      [RAM + BigInt(40 * PAGE) + 4000n, 200],
    ];
    const got = [];
    for (const [ipa, length] of ranges) {
      got.push({ ipa, length, bytes: await memory.read(ipa, length), tags: await memory.readTags(ipa - (ipa % 16n), 16 * 20) });
      expect(outstanding()).toBeLessThanOrEqual(1);
    }
    // Every chunk once more, so each earlier chunk's memory is reused for another.
    for (let p = 0; p < PAGES; p += 4) await memory.readU64(RAM + BigInt(p * PAGE));
    for (const { ipa, length, bytes, tags } of got) {
      expect(Buffer.from(bytes).equals(Buffer.from(await file.readMemory(ipa, length)))).toBe(true);
      expect(Buffer.from(tags).equals(Buffer.from(await file.readTags(ipa - (ipa % 16n), 16 * 20)))).toBe(true);
    }
    memory.close();
    expect(outstanding()).toBe(0);
  });
});

describe('copyFromChunk', () => {
  it('copies any range of a packed RAM chunk as its expanded data reads, zeros for absent pages', () => {
    const pageSize = 64;
    const pageCount = 12;
    const present = new Uint8Array([0b1011_0110, 0b0000_1001]);
    const presentPages = [1, 2, 4, 5, 7, 8, 11];
    const content = new Uint8Array(presentPages.length * pageSize).map((_, i) => (i % 251) + 1);
    const chunk = ramChunkFromContent(
      { kind: 'ram' as const, region: 0, firstPage: 0, pageCount, offset: 0n, length: 0n },
      present,
      content,
      pageSize,
    );
    const data = chunk.data;
    for (const [from, to] of [
      [0, pageCount * pageSize],
      [10, 70],
      [64, 128],
      [100, 300],
      [130, 131],
      [5 * 64 + 3, 11 * 64 + 5],
      [700, 768],
    ]) {
      const out = new Uint8Array(to - from + 7).fill(0xee);
      copyFromChunk(chunk, from, to, out, 7, pageSize);
      expect(Buffer.from(out.subarray(7)).equals(Buffer.from(data.subarray(from, to))), `${from}..${to}`).toBe(true);
      expect(out.subarray(0, 7).every((b) => b === 0xee)).toBe(true);
    }
  });

  it('copies any range of a packed tag chunk as its expanded tags read, zeros for absent pages', () => {
    const pageSize = 64; // 4 granules a page
    const pageCount = 12;
    const present = new Uint8Array([0b0110_1101, 0b0000_0100]);
    const presentPages = 6; // pages 0, 2, 3, 5, 6, 10
    const packed = new Uint8Array((presentPages * 4) / 2).map((_, i) => ((i * 7) % 16) | ((((i * 5 + 3) % 15) + 1) << 4));
    const location = { kind: 'tags' as const, region: 0, firstPage: 0, pageCount, offset: 0n, length: 0n };
    const tags = tagChunkFromPacked(location, present, packed, pageSize).tags;
    for (const [from, to] of [
      [0, 48],
      [1, 2],
      [3, 9],
      [7, 30],
      [12, 16],
      [21, 43],
      [40, 44],
    ]) {
      const out = new Uint8Array(to - from + 3).fill(0xee);
      copyFromChunk(tagChunkFromPacked(location, present, packed, pageSize), from, to, out, 3, pageSize);
      expect(Array.from(out.subarray(3)), `${from}..${to}`).toEqual(Array.from(tags.subarray(from, to)));
      expect(out.subarray(0, 3).every((b) => b === 0xee)).toBe(true);
    }
  });
});
