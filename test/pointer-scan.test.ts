/**
 * The whole-snapshot stale-pointer scan against the seeded workload, which
 * plants known stale pointers (src/workload/stale-pointers.ts): the scan must
 * find exactly those, and no others, in IPA mode; through page tables it finds
 * stale virtual pointers; the allocation run it reports is the one the
 * pointer lands in.
 */

import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GuestMemory } from '../src/forensics/guest-memory.js';
import { allocationRunAt, type StalePointer, scanPointers } from '../src/forensics/pointer-scan.js';
import { virtualAddressSpace } from '../src/forensics/virtual-addresses.js';
import { openSnapshot } from '../src/reader/open.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { plantedStalePointers } from '../src/workload/stale-pointers.js';
import { saveSnapshot } from '../src/writer/save.js';
import { PageTableBuilder } from '../testkit/page-tables.js';
import { buildGuest, temporaryDirectory } from './forensics-fixtures.js';
import { vmsnap } from './support/run-cli.js';

const dir = temporaryDirectory();
afterAll(() => dir.remove());

describe('scan pointers on the seeded workload', () => {
  it.each([1, 42])('finds exactly the planted stale pointers (seed %i, 32 MiB)', async (seed) => {
    const guest = createSimulatedGuest({ sizeMiB: 32, seed });
    const path = join(dir.path, `w${seed}.vmsnap`);
    await saveSnapshot(guest.vm, path, { threads: 0 });
    guest.vm.close();
    const planted = plantedStalePointers(guest.workload);
    expect(planted.length).toBeGreaterThan(5);
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      const found: StalePointer[] = [];
      const report = await scanPointers(reader, { onMismatch: (m) => found.push(m), batchSize: 7 });
      expect(found.map((m) => [m.foundAt, m.pointer, m.target, m.memoryTag])).toEqual(
        planted.map((p) => [p.foundAt, p.pointer, p.target, p.memoryTag]),
      );
      expect(report.mismatches).toBe(planted.length);
      // One batch (the default size) and batches of 7 reuse the same columns differently: the findings are the same.
      const whole: StalePointer[] = [];
      await scanPointers(reader, { onMismatch: (m) => whole.push(m) });
      expect(whole).toEqual(found);
      expect(report.words).toBe((32 + 4) * 1024 * 128);
      const ram = report.regions.find((r) => r.region === 'ram')!;
      expect(ram.mismatches).toBe(planted.length);
      // With --untagged, tag-0 values that land in RAM join in: every extra finding is such a value (a false positive).
      const loose: StalePointer[] = [];
      const looseReport = await scanPointers(reader, { untagged: true, onMismatch: (m) => loose.push(m) });
      const plantedAt = new Set(planted.map((p) => p.foundAt));
      const extra = loose.filter((m) => !plantedAt.has(m.foundAt));
      expect(loose.length - extra.length).toBe(planted.length);
      expect(extra.length).toBeGreaterThan(0);
      expect(extra.every((m) => m.pointerTag === 0 && m.pointer >> 32n === 0n)).toBe(true);
      expect(looseReport.candidates).toBeGreaterThan(report.candidates);
      // Every finding's run holds its target and has its memory tag.
      for (const m of found) {
        expect(m.run.start <= m.target && m.target < m.run.start + m.run.size).toBe(true);
        expect(m.run.tag).toBe(m.memoryTag);
      }
    } finally {
      await reader.close();
    }
  });
});

describe('vmsnap scan pointers', () => {
  it('lists the stale pointers as CSV and JSON, with the report', async () => {
    const guest = createSimulatedGuest({ sizeMiB: 8, seed: 3 });
    const path = join(dir.path, 'cli.vmsnap');
    await saveSnapshot(guest.vm, path, { threads: 0 });
    guest.vm.close();
    const planted = plantedStalePointers(guest.workload);
    const csv = await vmsnap('scan', 'pointers', path, '--csv', '-q');
    expect(csv.code).toBe(0);
    const lines = csv.out.trim().split('\n');
    expect(lines[0]).toBe('pointer,found_at,found_in,target,target_region,pointer_tag,memory_tag,run_start,run_size,run_tag');
    expect(lines.slice(1).map((l) => l.split(',').slice(0, 2))).toEqual(
      planted.map((p) => [`0x${p.pointer.toString(16)}`, `0x${p.foundAt.toString(16)}`]),
    );
    const json = JSON.parse((await vmsnap('scan', 'pointers', path, '--json', '-q')).out);
    expect(json.schemaVersion).toBe(1);
    expect(json.mismatches).toHaveLength(planted.length);
    expect(json.report).toMatchObject({ mode: 'ipa', mismatches: planted.length });
    const text = await vmsnap('scan', 'pointers', path, '--limit', '1', '-q');
    expect(text.out).toContain(`${planted.length} stale of ${planted.length} pointers checked`);
    expect(text.out).toContain(`(${planted.length - 1} more not listed`);
  });
});

describe('scan pointers through page tables', () => {
  it('checks virtual pointers (tag 0xf too, TCMA1 being clear) and counts what does not translate', async () => {
    const RAM = 0x4000_0000n;
    const vm = buildGuest({
      regions: [{ slot: 0, name: 'ram', guestAddress: RAM, size: 0x40_0000n }],
      allocations: [
        { address: RAM + 0x10_0000n, bytes: 0x40, tag: 3 },
        { address: RAM + 0x10_0040n, bytes: 0x40, tag: 4 },
      ],
    });
    const kernel = 0xffff_0000_0000_0000n;
    const tables = new PageTableBuilder({ granule: 4096, vaBits: 48, tableArea: RAM, tbi1: true });
    tables.map(kernel, RAM, 0x40_0000n, 2); // a linear map of RAM in 2 MiB blocks
    tables.writeTo(vm);
    const vcpu = vm.vcpus()[0];
    tables.setRegisters(vcpu);
    const words = new BigUint64Array([
      0xf3ff_0000_0010_0000n, // tag 3 -> granule tagged 3: fine
      0xf3ff_0000_0010_0040n, // tag 3 -> tag 4: stale
      0xffff_0000_0010_0000n, // tag 0xf: match-all only with TCMA1 (not set here), so checked: stale
      0xf5ff_0000_0080_0000n, // does not translate (beyond the linear map)
      0x0300_0000_4010_0000n, // a TTBR0 address: TTBR0 maps nothing
    ]);
    vm.writeMemory(RAM + 0x20_0000n, new Uint8Array(words.buffer));
    const path = join(dir.path, 'va-scan.vmsnap');
    await saveSnapshot(vm, path, { threads: 0 });
    vm.close();
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      const space = await virtualAddressSpace(reader);
      const found: StalePointer[] = [];
      const report = await scanPointers(reader, { space, onMismatch: (m) => found.push(m) });
      expect(found.map((m) => [m.pointer, m.target, m.pointerTag, m.memoryTag])).toEqual([
        [0xf3ff_0000_0010_0040n, RAM + 0x10_0040n, 3, 4],
        [0xffff_0000_0010_0000n, RAM + 0x10_0000n, 15, 3],
      ]);
      expect(found[0].run).toEqual({ start: RAM + 0x10_0040n, size: 0x40n, tag: 4 });
      expect(report).toMatchObject({ mode: 'va', candidates: 3, mismatches: 2, untranslatable: 2 });
      // In IPA mode the same words are a different story: only the TTBR0-looking word is an IPA into RAM.
      const ipa: StalePointer[] = [];
      await scanPointers(reader, { onMismatch: (m) => ipa.push(m) });
      expect(ipa).toEqual([]);
    } finally {
      await reader.close();
    }
  });

  it('the allocation run of a target stops where the tag changes', async () => {
    const RAM = 0x4000_0000n;
    const vm = buildGuest({
      regions: [{ slot: 0, name: 'ram', guestAddress: RAM, size: 0x20_0000n }],
      allocations: [{ address: RAM + 0x1ff0n, bytes: 0x6020, tag: 9 }],
    });
    const path = join(dir.path, 'run.vmsnap');
    await saveSnapshot(vm, path, { threads: 0 });
    vm.close();
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      const memory = new GuestMemory(reader);
      expect(await allocationRunAt(memory, RAM + 0x5000n)).toEqual({ start: RAM + 0x1ff0n, size: 0x6020n, tag: 9 });
      expect(await allocationRunAt(memory, RAM)).toEqual({ start: RAM, size: 0x1ff0n, tag: 0 });
    } finally {
      await reader.close();
    }
  });
});
