/**
 * Diff snapshots and chains (issue 8, item 2), through the library: a guest
 * saved full, changed in every way a page can change (data only, tags only,
 * both, data zeroed, tags zeroed, untouched), saved as diffs computed
 * against the chain or from a given set of changed pages, then restored from
 * the chain (the last link from a file and from a pipe) and flattened; the
 * result must be the guest, exactly, and the flattened file must be byte for
 * byte a direct full save of it.
 */
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimulatedVm, SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { findChain, openChain } from '../src/reader/chain.js';
import { openSnapshot } from '../src/reader/open.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { readSnapshotStream } from '../src/reader/stream.js';
import { compareVms } from '../src/validate/compare.js';
import { verifySnapshot } from '../src/validate/verify.js';
import { readGuestTags, writeGuestTags } from '../src/vm/tag-copy.js';
import { flattenChain } from '../src/writer/flatten.js';
import { type SaveOptions, saveSnapshot } from '../src/writer/save.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-diff-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PAGE = 4096;
const RAM = 0x4000_0000n;
const FLASH = 0x1000_0000n;
const RAM_PAGES = 40;

function page(address: bigint, n: number): bigint {
  return address + BigInt(n * PAGE);
}

function fill(byte: number, seed = 0): Uint8Array {
  const data = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i += 64) data[i] = (byte + i + seed) & 0xff || 1;
  return data;
}

function tagsOf(tag: number): Uint8Array {
  return new Uint8Array(PAGE / 16).fill(tag);
}

/** An MTE guest: 40 tagged RAM pages (data and tags on most) and 3 read-only flash pages. */
function baseGuest(): SimulatedVm {
  const vm = new SimulatedVm({ pageSize: PAGE });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'flash', guestAddress: FLASH, size: BigInt(3 * PAGE), readOnly: true });
  vm.addMemorySlot({ slot: 1, name: 'ram', guestAddress: RAM, size: BigInt(RAM_PAGES * PAGE) });
  vm.writeMemory(FLASH, fill(7));
  for (let n = 0; n < RAM_PAGES; n++) {
    if (n % 7 === 6) continue; // some zero pages
    vm.writeMemory(page(RAM, n), fill(n));
    if (n % 3 !== 2) writeGuestTags(vm, page(RAM, n), tagsOf((n % 15) + 1));
  }
  const vcpu = vm.createVcpu(0);
  const id = vcpu.registerIds()[0];
  vcpu.setRegister(id, new Uint8Array(vcpu.getRegister(id).length).fill(1));
  return vm;
}

/** Every kind of change: returns the RAM pages it touched (for a given-changed-pages diff). */
function mutate(vm: SimulatedVm, round: number): number[] {
  const touched: number[] = [];
  const at = (n: number) => {
    touched.push(n);
    return page(RAM, n);
  };
  vm.writeMemory(at(1 + round), fill(200, round)); // data changed, tags not
  vm.writeMemory(at(3 + round), new Uint8Array(PAGE)); // data became zero
  writeGuestTags(vm, at(4 + round), tagsOf(0)); // tags became zero, data not
  writeGuestTags(vm, at(7 + round), tagsOf(9 + round)); // tags changed, data not
  vm.writeMemory(at(10 + round), fill(99, round)); // both changed
  writeGuestTags(vm, page(RAM, 10 + round), tagsOf(3));
  vm.writeMemory(at(RAM_PAGES - 1), fill(50, round)); // the last page of the region (the last, short chunk)
  const vcpu = vm.vcpus()[0];
  const id = vcpu.registerIds()[0];
  vcpu.setRegister(id, new Uint8Array(vcpu.getRegister(id).length).fill(2 + round));
  return touched;
}

const fixed = (id: number): Pick<SaveOptions, 'snapshotId' | 'createdMs' | 'threads' | 'pagesPerChunk'> => ({
  snapshotId: new Uint8Array(16).fill(id),
  createdMs: 1_700_000_000_000n + BigInt(id),
  threads: 0,
  pagesPerChunk: 3, // chunks that do not start on a byte of the bitmap
});

async function restoreChain(paths: string[], pipe = false): Promise<SimulatedVm> {
  const last = paths[paths.length - 1];
  const source = pipe ? createReadStream(last) : last;
  const restored = await restoreSnapshot(source, new SimulatedVmFactory(), { parents: paths.slice(0, -1), threads: 0 });
  return restored.vm;
}

function expectSame(expected: SimulatedVm, actual: SimulatedVm): void {
  const comparison = compareVms(expected, actual);
  expect(comparison.differences).toEqual([]);
  expect(comparison.equal).toBe(true);
}

describe('diff snapshots', () => {
  const vm = baseGuest();
  const a = join(dir, 'a.vmsnap');
  const b = join(dir, 'b.vmsnap');
  const c = join(dir, 'c.vmsnap');
  let afterB: SimulatedVm;

  it('a chain of computed diffs restores to each state, from files and from a pipe', async () => {
    await saveSnapshot(vm, a, fixed(1));
    mutate(vm, 0);
    const parentA = await openChain([a], { threads: 0 });
    const savedB = await saveSnapshot(vm, b, { ...fixed(2), diff: { parent: parentA } });
    await parentA.close();
    // 6 RAM pages were touched, each in a way that changes data or tags.
    expect(savedB.changedPages).toBe(6n);
    afterB = await restoreChain([a, b]);
    expectSame(vm, afterB);

    mutate(vm, 1);
    const parentB = await openChain([a, b], { threads: 0 });
    const savedC = await saveSnapshot(vm, c, { ...fixed(3), diff: { parent: parentB } });
    await parentB.close();
    // Page 5 had no tags: zeroing them changed nothing, and a computed diff leaves it out.
    expect(savedC.changedPages).toBe(5n);
    expectSame(vm, await restoreChain([a, b, c]));
    expectSame(vm, await restoreChain([a, b, c], true));
    expect(readFileSync(c).readUInt16LE(10)).toBe(1); // a diff is format 1.1
    expect(readFileSync(a).readUInt16LE(10)).toBe(0); // a full snapshot stays 1.0
  });

  it('a chain read merged (forensics) shows the final guest', async () => {
    const chain = await openChain([a, b, c], { threads: 0 });
    try {
      for (let n = 0; n < RAM_PAGES; n++) {
        const memory = new Uint8Array(PAGE);
        vm.readMemory(page(RAM, n), memory);
        expect(Buffer.from(await chain.readMemory(page(RAM, n), PAGE)).equals(memory)).toBe(true);
        const tags = new Uint8Array(PAGE / 16);
        readGuestTags(vm, page(RAM, n), tags);
        expect(Buffer.from(await chain.readTags(page(RAM, n), PAGE)).equals(tags)).toBe(true);
      }
    } finally {
      await chain.close();
    }
  });

  it('flatten is byte for byte the direct full save of the final state', async () => {
    const direct = join(dir, 'direct.vmsnap');
    const flat = join(dir, 'flat.vmsnap');
    await saveSnapshot(vm, direct, fixed(3));
    const chain = await openChain([a, b, c], { threads: 0 });
    await flattenChain(chain, flat, { threads: 0 });
    await chain.close();
    expect(Buffer.compare(readFileSync(flat), readFileSync(direct))).toBe(0);
  });

  it('a diff from given changed pages (a dirty log) restores the same, even with pages that did not change', async () => {
    const start = baseGuest();
    const p0 = join(dir, 'g0.vmsnap');
    const p1 = join(dir, 'g1.vmsnap');
    const summary = await saveSnapshot(start, p0, fixed(10));
    const touched = mutate(start, 2);
    const bitmap = new Uint8Array(Math.ceil(RAM_PAGES / 8));
    for (const n of [...touched, 20, 21]) bitmap[n >>> 3] |= 1 << (n & 7); // 20, 21: marked, unchanged
    const saved = await saveSnapshot(start, p1, {
      ...fixed(11),
      diff: { parent: summary, changedPages: new Map([[1, bitmap]]) },
    });
    // The read-only flash (slot 0) is not in the map: all its 3 pages are given.
    expect(saved.changedPages).toBe(BigInt(touched.length + 2 + 3));
    expectSame(start, await restoreChain([p0, p1]));
  });

  it('a diff alone is refused by restore, naming its parent, and verify reads it as a diff', async () => {
    await expect(restoreSnapshot(b, new SimulatedVmFactory(), { threads: 0 })).rejects.toMatchObject({ code: 'missing-parent' });
    const opened = await openSnapshot(b, { threads: 0 });
    expect(opened.diff?.parentId).toEqual(new Uint8Array(16).fill(1));
    expect(opened.diff?.changedPages).toBe(6n);
    await opened.close();
    const report = await verifySnapshot(b, { threads: 0 });
    expect(report.problems).toEqual([]);
    const events = [];
    for await (const event of readSnapshotStream(createReadStream(b), { threads: 0 })) events.push(event.type);
    expect(events.slice(0, 4)).toEqual(['start', 'diff', 'changed', 'chunk']);
  });

  it('mismatched and missing parents are one-line typed errors', async () => {
    await expect(openChain([a, c], { threads: 0 })).rejects.toMatchObject({ code: 'parent-mismatch' });
    await expect(openChain([b, c], { threads: 0 })).rejects.toMatchObject({ code: 'missing-parent' });
    await expect(openChain([a, a], { threads: 0 })).rejects.toMatchObject({ code: 'parent-mismatch' });
    await expect(restoreChain([a, c])).rejects.toMatchObject({ code: 'parent-mismatch' });
    const other = baseGuest();
    other.addMemorySlot({ slot: 2, name: 'more', guestAddress: 0x8000_0000n, size: BigInt(PAGE) });
    const chain = await openChain([a], { threads: 0 });
    await expect(saveSnapshot(other, join(dir, 'x.vmsnap'), { diff: { parent: chain } })).rejects.toMatchObject({
      code: 'chain-layout-mismatch',
    });
    await chain.close();
    for (const code of ['parent-mismatch', 'missing-parent']) expect(code).not.toContain('\n');
  });

  it('findChain finds the parents beside the last file by snapshot id', () => {
    writeFileSync(join(dir, 'junk.vmsnap'), 'not a snapshot');
    expect(findChain(c)).toEqual([a, b, c]);
    expect(findChain(a)).toEqual([a]);
    const lonely = mkdtempSync(join(tmpdir(), 'vmsnap-diff-alone-'));
    try {
      writeFileSync(join(lonely, 'c.vmsnap'), readFileSync(c));
      expect(() => findChain(join(lonely, 'c.vmsnap'))).toThrow(expect.objectContaining({ code: 'missing-parent' }));
    } finally {
      rmSync(lonely, { recursive: true, force: true });
    }
  });
});
