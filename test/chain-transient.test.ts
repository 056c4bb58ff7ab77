/**
 * A chain read with the readers' reused memory (issue 10: peak memory of
 * restore, diff save and flatten of a chain): each link's chunk is read
 * transient and its pages copied out (from the packed present pages when the
 * reader kept them so) before the memory is released, so a merged chunk never
 * keeps a view of memory a later read fills. Checked with the chunk executor
 * a command uses (native memory with the system libzstd, reused from chunk to
 * chunk), against the guest the chain was saved from.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { GRANULE_SIZE } from '../src/format/constants.js';
import type { RamChunk, SnapshotRegion, TagChunk } from '../src/format/model.js';
import { mergeOntoParents, openChain } from '../src/reader/chain.js';
import { openSnapshot } from '../src/reader/open.js';
import { readGuestTags, writeGuestTags } from '../src/vm/tag-copy.js';
import { saveSnapshot } from '../src/writer/save.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-chain-transient-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PAGE = 4096;
const RAM = 0x4000_0000n;
const PAGES = 96;
const PAGES_PER_CHUNK = 5; // chunks that do not start on a byte of the bitmap
const THREADS = 2; // the native executor where libzstd is there: its memory is reused

/** A page that compresses (so the reader keeps it packed) and says which page and round it is. */
function pageBytes(n: number, round: number): Uint8Array {
  const bytes = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i += 32) bytes[i] = (n * 7 + round * 13 + i) % 251 || 1;
  return bytes;
}

function at(n: number): bigint {
  return RAM + BigInt(n * PAGE);
}

function guest(): SimulatedVm {
  const vm = new SimulatedVm({ pageSize: PAGE });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: RAM, size: BigInt(PAGES * PAGE) });
  for (let n = 0; n < PAGES; n++) {
    if (n % 4 === 3) continue; // absent pages between present ones
    vm.writeMemory(at(n), pageBytes(n, 0));
    if (n % 3 === 0) writeGuestTags(vm, at(n), new Uint8Array(PAGE / GRANULE_SIZE).fill((n % 15) + 1));
  }
  return vm;
}

/** Pages changed, zeroed, made present and retagged: every way a diff's page can differ from its parent's. */
function mutate(vm: SimulatedVm, round: number): void {
  for (let n = round; n < PAGES; n += 5) vm.writeMemory(at(n), pageBytes(n, round + 1));
  for (let n = round + 2; n < PAGES; n += 11) vm.writeMemory(at(n), new Uint8Array(PAGE));
  for (let n = round + 1; n < PAGES; n += 7) writeGuestTags(vm, at(n), new Uint8Array(PAGE / GRANULE_SIZE).fill(round + 5));
}

/** The guest's bytes (RAM) or tags of one grid chunk. */
function expected(
  vm: SimulatedVm,
  region: SnapshotRegion,
  chunk: RamChunk | TagChunk | { kind: string; firstPage: number; pageCount: number },
) {
  const address = region.guestAddress + BigInt(chunk.firstPage * PAGE);
  if (chunk.kind === 'ram') {
    const bytes = new Uint8Array(chunk.pageCount * PAGE);
    vm.readMemory(address, bytes);
    return bytes;
  }
  const tags = new Uint8Array((chunk.pageCount * PAGE) / GRANULE_SIZE);
  readGuestTags(vm, address, tags);
  return tags;
}

describe('a chain merged from transient reads', () => {
  const vm = guest();
  const files = ['a', 'b', 'c'].map((name) => join(dir, `${name}.vmsnap`));

  it('saves a full snapshot and two computed diffs', async () => {
    await saveSnapshot(vm, files[0], { pagesPerChunk: PAGES_PER_CHUNK, threads: THREADS });
    for (const [i, file] of files.slice(1).entries()) {
      mutate(vm, i);
      const parent = await openChain(files.slice(0, i + 1), { threads: THREADS });
      try {
        const saved = await saveSnapshot(vm, file, { threads: THREADS, diff: { parent } });
        expect(saved.changedPages).toBeGreaterThan(0n);
      } finally {
        await parent.close();
      }
    }
  });

  it('readMerged gives the final guest, into a fresh buffer or a reused one holding stale bytes', async () => {
    const chain = await openChain(files, { threads: THREADS });
    try {
      // Every chunk read concurrently: transient memory is taken and released while other merges are under way.
      const merged = await Promise.all(chain.chunks.map((c) => chain.readMerged(c.kind, c.region, c.firstPage)));
      for (const [i, c] of chain.chunks.entries()) {
        expect(Buffer.from(merged[i].bytes).equals(expected(vm, chain.regions[c.region], c)), `${c.kind} page ${c.firstPage}`).toBe(true);
        const stale = new Uint8Array(merged[i].bytes.length).fill(0xee);
        const again = await chain.readMerged(c.kind, c.region, c.firstPage, stale);
        expect(Buffer.from(again.bytes).equals(merged[i].bytes)).toBe(true);
        expect(Buffer.from(again.present).equals(merged[i].present)).toBe(true);
      }
    } finally {
      await chain.close();
    }
  });

  it('mergeOntoParents over a transient last link: no merged chunk keeps a view of released memory', async () => {
    for (const releaseEach of [false, true]) {
      const parents = await openChain(files.slice(0, 2), { threads: THREADS });
      const last = await openSnapshot(files[2], { threads: THREADS });
      try {
        const held: Array<{ chunk: RamChunk | TagChunk; copy: Uint8Array }> = [];
        let released = 0;
        for await (const event of mergeOntoParents(parents, last.events(undefined, { transient: true }), files[2])) {
          if (event.type !== 'chunk') continue;
          const bytes = 'tags' in event.chunk ? event.chunk.tags : event.chunk.data;
          held.push({ chunk: event.chunk, copy: bytes.slice() });
          expect(event.release).toBeTypeOf('function');
          if (releaseEach) {
            event.release!();
            event.release!(); // twice is once: the buffer is not handed out to two later chunks
            released++;
          }
        }
        expect(held.length).toBe(last.chunks.length);
        for (const { chunk, copy } of held) {
          // As it was when it came: the final guest.
          expect(Buffer.from(copy).equals(expected(vm, parents.regions[chunk.region], chunk)), `${chunk.kind} ${chunk.firstPage}`).toBe(
            true,
          );
          // Held unreleased to the end, it still is: later reads did not write into it.
          if (!releaseEach) expect(Buffer.from('tags' in chunk ? chunk.tags : chunk.data).equals(copy)).toBe(true);
        }
        if (releaseEach) expect(released).toBe(held.length);
      } finally {
        await last.close();
        await parents.close();
      }
    }
  });
});
