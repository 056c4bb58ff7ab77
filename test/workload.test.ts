/** The workload generator: reproducible, random access, shaped like a real MTE guest, fast. */
import { describe, expect, it } from 'vitest';
import { compress } from 'zstd-napi';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { isAllZero } from '../src/format/bytes.js';
import { namedSysRegisterId } from '../src/vm/arm64-registers.js';
import { guestTags } from '../src/vm/tag-copy.js';
import { addWorkloadSlots, fillVm } from '../src/workload/fill.js';
import { generatePages, generateRegionChunks } from '../src/workload/generate.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { frameKind, planWorkload, type Workload } from '../src/workload/workload-layout.js';

const MiB = 1024 * 1024;

function wholeRegion(workload: Workload, name: string) {
  const region = workload.regions.find((r) => r.name === name)!;
  return generatePages(workload, region, 0, region.pageCount);
}

describe('layout', () => {
  it('has tagged RAM at 1 GiB and untagged read-only flash at 0', () => {
    const workload = planWorkload({ sizeMiB: 64, seed: 1 });
    expect(workload.regions.map((r) => [r.name, r.guestAddress, r.size, r.mte, r.readOnly])).toEqual([
      ['ram', 0x4000_0000n, BigInt(64 * MiB), true, false],
      ['flash0', 0n, BigInt(4 * MiB), false, true],
    ]);
    expect(planWorkload({ sizeMiB: 8, seed: 1, flashMiB: 0 }).regions).toHaveLength(1);
    expect(() => planWorkload({ sizeMiB: 0, seed: 1 })).toThrow(/ram/);
    expect(() => planWorkload({ sizeMiB: 8, seed: 1, pageSize: 8192 })).toThrow(/page size/);
  });
});

describe('generation', () => {
  const workload = planWorkload({ sizeMiB: 32, seed: 42 });
  const whole = wholeRegion(workload, 'ram');

  it('is reproducible and depends on the seed', () => {
    expect(
      Buffer.compare(Buffer.from(generatePages(workload, 'ram', 100, 50).data), Buffer.from(whole.data.subarray(100 * 4096, 150 * 4096))),
    ).toBe(0);
    const other = generatePages(planWorkload({ sizeMiB: 32, seed: 43 }), 'ram', 0, 2048);
    expect(Buffer.compare(Buffer.from(other.data), Buffer.from(whole.data.subarray(0, 2048 * 4096)))).not.toBe(0);
  });

  it('gives any page range on its own the same bytes and tags as the whole region', () => {
    let page = 0;
    for (const chunk of generateRegionChunks(workload, 'ram', 300)) {
      expect(chunk.firstPage).toBe(page);
      expect(Buffer.from(chunk.data).equals(Buffer.from(whole.data.subarray(page * 4096, (page + chunk.pageCount) * 4096)))).toBe(true);
      expect(Buffer.from(chunk.tags).equals(Buffer.from(whole.tags.subarray(page * 256, (page + chunk.pageCount) * 256)))).toBe(true);
      page += chunk.pageCount;
    }
    expect(page).toBe(8192);
    expect(() => generatePages(workload, 'ram', 8190, 3)).toThrow(RangeError);
  });

  it('is the same guest on 4 KiB and 64 KiB hosts', () => {
    const large = planWorkload({ sizeMiB: 32, seed: 42, pageSize: 65536 });
    const pages = generatePages(large, 'ram', 10, 4);
    expect(Buffer.from(pages.data).equals(Buffer.from(whole.data.subarray(10 * 65536, 14 * 65536)))).toBe(true);
    expect(Buffer.from(pages.tags).equals(Buffer.from(whole.tags.subarray(10 * 4096, 14 * 4096)))).toBe(true);
  });

  it('looks like a guest: kernel text first, about half zero pages, tags only on heap pages', () => {
    const ram = workload.regions[0];
    const counts: Record<string, number> = {};
    let zeroData = 0;
    for (let frame = 0; frame < ram.pageCount; frame++) {
      const kind = frameKind(workload, ram, frame);
      counts[kind] = (counts[kind] ?? 0) + 1;
      const data = whole.data.subarray(frame * 4096, (frame + 1) * 4096);
      const tags = whole.tags.subarray(frame * 256, (frame + 1) * 256);
      if (isAllZero(data)) zeroData++;
      if (kind !== 'heap') expect(isAllZero(tags), `frame ${frame} (${kind}) has tags`).toBe(true);
      if (kind === 'zero') expect(isAllZero(data)).toBe(true);
    }
    expect(frameKind(workload, ram, 0)).toBe('kernel-text');
    expect(zeroData / ram.pageCount).toBeGreaterThan(0.35);
    expect(zeroData / ram.pageCount).toBeLessThan(0.7);
    expect(counts.heap / ram.pageCount).toBeGreaterThan(0.1);
    expect(counts['page-cache'] / ram.pageCount).toBeGreaterThan(0.1);
    expect(isAllZero(wholeRegion(workload, 'flash0').tags)).toBe(true);
  });

  it('tags heap allocations in runs, neighbours differing, from 16 bytes to several KiB', () => {
    const ram = workload.regions[0];
    const runLengths: number[] = [];
    for (let frame = 0; frame < ram.pageCount; frame++) {
      if (frameKind(workload, ram, frame) !== 'heap') continue;
      const tags = whole.tags.subarray(frame * 256, (frame + 1) * 256);
      let start = 0;
      for (let g = 1; g <= 256; g++) {
        if (g === 256 || tags[g] !== tags[start]) {
          if (tags[start] !== 0) runLengths.push(g - start);
          start = g;
        }
      }
    }
    // Runs are allocations only if neighbours differ; merged neighbours would push the median up.
    runLengths.sort((a, b) => a - b);
    expect(runLengths[Math.floor(runLengths.length / 2)]).toBeLessThanOrEqual(8);
    expect(runLengths.filter((n) => n >= 33).length / runLengths.length).toBeGreaterThan(0.05);
    expect(Math.min(...runLengths)).toBe(1);
    expect(Math.max(...runLengths)).toBe(256);
    const distinct = new Set(whole.tags);
    expect(distinct.size).toBe(16);
  });

  it('compresses like real memory: tags far under 1% of RAM, data neither random nor empty', () => {
    const ram = BigInt(whole.data.length);
    const tagsCompressed = compress(Buffer.from(whole.tags)).length;
    console.log(`workload: tags zstd ${tagsCompressed} bytes = ${((100 * tagsCompressed) / Number(ram)).toFixed(3)}% of RAM`);
    expect(tagsCompressed / Number(ram)).toBeLessThan(0.005);
    const nonzero: Buffer[] = [];
    for (let page = 0; page < 8192; page++) {
      const data = whole.data.subarray(page * 4096, (page + 1) * 4096);
      if (!isAllZero(data)) nonzero.push(Buffer.from(data));
    }
    const dataPages = Buffer.concat(nonzero);
    const ratio = dataPages.length / compress(dataPages).length;
    console.log(`workload: nonzero pages compress ${ratio.toFixed(2)}x with zstd`);
    expect(ratio).toBeGreaterThan(1.5);
    expect(ratio).toBeLessThan(8);
  });
});

describe('filling VMs', () => {
  it('fillVm loads memory and tags that read back as generated', () => {
    const workload = planWorkload({ sizeMiB: 16, seed: 9, pageSize: 16384, flashMiB: 2 });
    const vm = new SimulatedVm({ pageSize: 16384 });
    addWorkloadSlots(vm, workload);
    const stats = fillVm(vm, workload, 100);
    expect(stats.pages).toBe(1024 + 128);
    expect(stats.taggedPages).toBeGreaterThan(0);
    for (const region of workload.regions) {
      const expected = wholeRegion(workload, region.name);
      const data = new Uint8Array(Number(region.size));
      vm.readMemory(region.guestAddress, data);
      expect(Buffer.from(data).equals(Buffer.from(expected.data)), region.name).toBe(true);
      const tags = guestTags(vm, region.guestAddress, Number(region.size));
      expect(Buffer.from(tags).equals(Buffer.from(expected.tags)), region.name).toBe(true);
    }
  });

  it('createSimulatedGuest gives vCPUs with MTE system registers set', () => {
    const guest = createSimulatedGuest({ sizeMiB: 8, seed: 3, vcpus: 3, kernelVersion: [6, 12] });
    expect(guest.vm.mteEnabled).toBe(true);
    expect(guest.vm.kernelVersion).toEqual([6, 12]);
    expect(guest.vm.vcpus()).toHaveLength(3);
    const gcr = guest.vm.vcpus()[1].getRegister(namedSysRegisterId('GCR_EL1'));
    expect(gcr).toEqual(Uint8Array.of(1, 0, 1, 0, 0, 0, 0, 0));
    const rgsr0 = guest.vm.vcpus()[0].getRegister(namedSysRegisterId('RGSR_EL1'));
    const again = createSimulatedGuest({ sizeMiB: 8, seed: 3, vcpus: 1 }).vm.vcpus()[0].getRegister(namedSysRegisterId('RGSR_EL1'));
    expect(again).toEqual(rgsr0);
  });
});
