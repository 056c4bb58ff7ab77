/**
 * Stage-1 translation on generated page tables: every granule (4, 16, 64
 * KiB), virtual address widths from 39 to 52 bits, both halves, pages and
 * blocks, 52-bit output addresses, tagged pointers, and faults at each level.
 * The tables are written into a simulated guest by testkit/page-tables.ts (an
 * encoder written from the architecture, not from the walker), saved by the
 * real writer, and walked from the snapshot file.
 */

import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { GuestMemory } from '../src/forensics/guest-memory.js';
import { stage1Regime, stage1RegimeOf } from '../src/forensics/stage1-config.js';
import { NoPageTablesError, TranslationFaultError } from '../src/forensics/translation-errors.js';
import { virtualAddressSpace } from '../src/forensics/virtual-addresses.js';
import { openSnapshot } from '../src/reader/open.js';
import { saveSnapshot } from '../src/writer/save.js';
import { PageTableBuilder, type PageTableOptions, type TestGranule } from '../testkit/page-tables.js';
import { saveVirtualGuest, temporaryDirectory, VIRTUAL } from './forensics-fixtures.js';
import { vmsnap } from './support/run-cli.js';

const dir = temporaryDirectory();
afterAll(() => dir.remove());

const RAM = 0x4000_0000n;
const RAM_SIZE = 16n << 20n;
/** A second region above 2^48, for 52-bit output addresses. */
const HIGH = 0x000a_0000_0000_0000n;
const HIGH_SIZE = 4n << 20n;

interface Case {
  granule: TestGranule;
  vaBits: number;
  outputBits52?: boolean;
}

const CASES: Case[] = [
  { granule: 4096, vaBits: 39 },
  { granule: 4096, vaBits: 42 },
  { granule: 4096, vaBits: 48 },
  { granule: 4096, vaBits: 52, outputBits52: true },
  { granule: 16384, vaBits: 39 },
  { granule: 16384, vaBits: 47 },
  { granule: 16384, vaBits: 48 },
  { granule: 16384, vaBits: 52, outputBits52: true },
  { granule: 65536, vaBits: 39 },
  { granule: 65536, vaBits: 42 },
  { granule: 65536, vaBits: 48 },
  { granule: 65536, vaBits: 52, outputBits52: true },
];

function pattern(seed: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed * 31 + i * 7) & 0xff);
}

/** Addresses near the top of each half's range and in the middle of a table, so every index bit is exercised. */
function addresses(t: PageTableBuilder, c: Case) {
  const g = BigInt(c.granule);
  const top0 = 1n << BigInt(c.vaBits);
  const low = (top0 / 2n + 5n * g) & ~(g - 1n); // bit vaBits-1 set: the top-level index is not 0
  const high = ((1n << 64n) - top0 + 3n * g) & ((1n << 64n) - 1n); // TTBR1: sign-extended
  const blockLevel = 2;
  const blockSize = t.entrySize(blockLevel);
  const block = (top0 / 4n) & ~(blockSize - 1n);
  return { low, high, block, blockLevel, blockSize };
}

async function buildCase(c: Case, path: string) {
  const vm = new SimulatedVm({ pageSize: 4096, ipaBits: c.outputBits52 ? 52 : 40 });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: RAM, size: RAM_SIZE });
  if (c.outputBits52) vm.addMemorySlot({ slot: 1, name: 'high', guestAddress: HIGH, size: HIGH_SIZE });
  const options: PageTableOptions = {
    granule: c.granule,
    vaBits: c.vaBits,
    tableArea: c.outputBits52 ? HIGH : RAM,
    outputBits52: c.outputBits52,
  };
  const t = new PageTableBuilder(options);
  const a = addresses(t, c);
  const g = BigInt(c.granule);
  const dataLow = RAM + 2n * 1024n * 1024n;
  const dataHigh = c.outputBits52 ? HIGH + 2n * 1024n * 1024n : RAM + 4n * 1024n * 1024n;
  // Two pages each, mapped in reverse so consecutive virtual pages are not consecutive in memory.
  t.map(a.low, dataLow + g, g);
  t.map(a.low + g, dataLow, g);
  t.map(a.high, dataHigh, 2n * g);
  // A block whose output is RAM's base (1 GiB aligned, so any block size fits).
  t.map(a.block, RAM, a.blockSize, a.blockLevel);
  t.writeTo(vm);
  vm.writeMemory(dataLow, pattern(1, Number(2n * g)));
  vm.writeMemory(dataHigh, pattern(2, Number(2n * g)));
  t.setRegisters(vm.createVcpu(0));
  await saveSnapshot(vm, path, { threads: 0 });
  vm.close();
  return { t, a, dataLow, dataHigh };
}

const name = (c: Case) => `${c.granule / 1024} KiB granule, ${c.vaBits}-bit VA${c.outputBits52 ? ', 52-bit OA' : ''}`;

describe.each(CASES)('stage-1 walk: $granule-byte granule, $vaBits-bit VA', (c) => {
  it(`translates pages and blocks of both halves, with tags ignored (${name(c)})`, async () => {
    const path = join(dir.path, `t-${c.granule}-${c.vaBits}.vmsnap`);
    const { t, a, dataLow, dataHigh } = await buildCase(c, path);
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      const space = await virtualAddressSpace(reader, 0);
      const g = BigInt(c.granule);
      const first = t.firstLevel(0);

      const page = await space.translate(a.low + 0x123n);
      expect(page.ipa).toBe(dataLow + g + 0x123n);
      expect(page.half).toBe(0);
      expect(page.steps.map((s) => s.level)).toEqual(Array.from({ length: 4 - first }, (_, i) => first + i));
      expect(page.steps.at(-1)!.kind).toBe('page');
      expect(page.steps[0].tableAddress).toBe(t.roots[0]);
      expect(page.mappingSize).toBe(g);
      expect((await space.translate(a.low + g + 8n)).ipa).toBe(dataLow + 8n);

      // Tagged pointer: TBI0 set, the top byte is a tag and bits 59:56 are the logical tag.
      const tagged = await space.translate(a.low | (0x5an << 56n));
      expect(tagged.ipa).toBe(dataLow + g);
      expect(tagged.logicalTag).toBe(0xa);

      const high = await space.translate(a.high + g + 0x10n);
      expect(high.half).toBe(1);
      expect(high.ipa).toBe(dataHigh + g + 0x10n);
      expect(high.steps[0].tableAddress).toBe(t.roots[1]);
      const highTagged = await space.translate((a.high & ((1n << 56n) - 1n)) | (0xf3n << 56n));
      expect(highTagged.ipa).toBe(dataHigh);

      const block = await space.translate(a.block + 0x4567n);
      expect(block.ipa).toBe(RAM + 0x4567n);
      expect(block.steps.at(-1)).toMatchObject({ kind: 'block', level: a.blockLevel });
      expect(block.mappingSize).toBe(a.blockSize);

      // Bytes read through the virtual range, which crosses from one mapping into the other.
      const pieces = await space.pieces(a.low + g - 16n, 32n);
      expect(pieces).toEqual([
        { virtualAddress: a.low + g - 16n, ipa: dataLow + 2n * g - 16n, length: 16n },
        { virtualAddress: a.low + g, ipa: dataLow, length: 16n },
      ]);
      const memory = new GuestMemory(reader);
      const expected = pattern(1, Number(2n * g));
      expect(await memory.read(pieces[1].ipa, 16)).toEqual(expected.subarray(0, 16));
    } finally {
      await reader.close();
    }
  });

  it(`faults name the level, the address and the descriptor (${name(c)})`, async () => {
    const path = join(dir.path, `f-${c.granule}-${c.vaBits}.vmsnap`);
    const vm = new SimulatedVm({ pageSize: 4096, ipaBits: c.outputBits52 ? 52 : 40 });
    vm.enableMte();
    vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: RAM, size: RAM_SIZE });
    const t = new PageTableBuilder({ granule: c.granule, vaBits: c.vaBits, tableArea: RAM, outputBits52: c.outputBits52 });
    const g = BigInt(c.granule);
    const first = t.firstLevel(0);
    // One address per level, broken at that level: its index at that level is 1..4, every other address's is 0 there,
    // so each break faults only its own address.
    const broken: { va: bigint; level: number }[] = [];
    for (let level = first; level <= 3; level++) {
      const va = BigInt(level - first + 1) * t.entrySize(level);
      t.map(va, RAM + 8n * 1024n * 1024n, g);
      t.setDescriptor(va, level, 0x4000_0000n /* bit 0 clear */);
      broken.push({ va, level });
    }
    // Level 3 with 0b01: reserved.
    const reserved = 0n;
    t.map(reserved, RAM, g);
    t.setDescriptor(reserved, 3, RAM | 1n);
    t.writeTo(vm);
    t.setRegisters(vm.createVcpu(0));
    await saveSnapshot(vm, path, { threads: 0 });
    vm.close();
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      const space = await virtualAddressSpace(reader, 0);
      expect(broken.length).toBeGreaterThan(0);
      for (const { va, level } of broken) {
        const error = await space.translate(va).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TranslationFaultError);
        expect(error).toMatchObject({ level, virtualAddress: va, code: 'translation-fault', kind: 'usage' });
        expect((error as Error).message).toContain(`virtual address 0x${va.toString(16)}`);
        expect((error as Error).message).toContain(`at level ${level}`);
      }
      await expect(space.translate(reserved)).rejects.toThrow(/level 3.*reserved/);
      // An address outside the half's range: bit vaBits set in a TTBR0 address.
      const outside = 1n << BigInt(c.vaBits);
      await expect(space.translate(outside)).rejects.toMatchObject({ code: 'translation-fault' });
    } finally {
      await reader.close();
    }
  });
});

describe('stage-1 regime edge cases', () => {
  it('without TBI the top byte is part of the address: a tagged pointer faults, naming TBI', async () => {
    const path = join(dir.path, 'notbi.vmsnap');
    const vm = new SimulatedVm({ pageSize: 4096 });
    vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: RAM, size: RAM_SIZE });
    const t = new PageTableBuilder({ granule: 4096, vaBits: 48, tableArea: RAM, tbi0: false });
    t.map(0x1000n, RAM + 0x10_0000n, 0x1000n);
    t.writeTo(vm);
    t.setRegisters(vm.createVcpu(0));
    await saveSnapshot(vm, path, { threads: 0 });
    vm.close();
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      const space = await virtualAddressSpace(reader);
      expect((await space.translate(0x1008n)).ipa).toBe(RAM + 0x10_0008n);
      await expect(space.translate(0x0500_0000_0000_1008n)).rejects.toThrow(/TBI0 is clear/);
    } finally {
      await reader.close();
    }
  });

  it('with the MMU off a virtual address is its IPA', async () => {
    const path = join(dir.path, 'mmuoff.vmsnap');
    const vm = new SimulatedVm({ pageSize: 4096 });
    vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: RAM, size: RAM_SIZE });
    const t = new PageTableBuilder({ granule: 4096, vaBits: 48, tableArea: RAM, mmuOn: false });
    t.setRegisters(vm.createVcpu(0));
    await saveSnapshot(vm, path, { threads: 0 });
    vm.close();
    const reader = await openSnapshot(path, { threads: 0 });
    try {
      const space = await virtualAddressSpace(reader);
      expect(await space.translate(RAM + 0x42n)).toMatchObject({ ipa: RAM + 0x42n, steps: [] });
    } finally {
      await reader.close();
    }
  });

  it('a vCPU without translation registers is refused with a typed error naming them', () => {
    expect(() => stage1RegimeOf({ id: 3, registers: [] })).toThrow(NoPageTablesError);
    expect(() => stage1RegimeOf({ id: 3, registers: [] })).toThrow(/vCPU 3: .*TTBR0_EL1, TTBR1_EL1, TCR_EL1, SCTLR_EL1/);
  });

  it('reserved granule encodings and address widths are refused, naming TCR_EL1', () => {
    const base = { ttbr0: 0n, ttbr1: 0n, sctlr: 1n };
    expect(() => stage1Regime({ ...base, tcr: 0x10n | (3n << 14n) | (16n << 16n) | (2n << 30n) })).toThrow(/TG0 = 3/);
    expect(() => stage1Regime({ ...base, tcr: 0x10n | (16n << 16n) })).toThrow(/TG1 = 0/);
    expect(() => stage1Regime({ ...base, tcr: 8n | (16n << 16n) | (2n << 30n) })).toThrow(/T0SZ = 8 gives a 56-bit/);
  });
});

describe('virtual addresses on the command line', () => {
  let path: string;
  const k = VIRTUAL.kernelPages;

  it('translate prints the IPA and every level of the walk, and JSON', async () => {
    path = await saveVirtualGuest(join(dir.path, 'virtual.vmsnap'));
    const text = await vmsnap('translate', path, `0x${(k | (0xf5n << 56n)).toString(16).replace('ffff', 'f5ff')}`);
    expect(text.code).toBe(0);
    const lines = text.out.trim().split('\n');
    expect(lines[0]).toBe('0xf5ff000000100000 -> IPA 0x40011000 (region ram), logical tag 0x5');
    expect(lines[1]).toContain('TTBR1_EL1, 4 KiB granule, 48-bit VA; page of 0x1000 bytes');
    expect(lines.slice(2).map((l) => l.trim().split(':')[0])).toEqual(['level 0', 'level 1', 'level 2', 'level 3']);
    const json = JSON.parse((await vmsnap('translate', path, '0x0000aaaa00012345', '--json')).out);
    expect(json).toMatchObject({ schemaVersion: 1, ipa: String(0x4021_2345), half: 1 - 1, region: 'ram', mappingSize: String(0x20_0000) });
    expect(json.steps.map((s: { kind: string }) => s.kind)).toEqual(['table', 'table', 'block']);
    const fault = await vmsnap('translate', path, '0xffff000000102000');
    expect(fault.code).toBe(2);
    expect(fault.err).toMatch(
      /virtual address 0xffff000000102000: translation fault at level 3: descriptor 0x0 at IPA 0x[0-9a-f]+ \(index 258 /,
    );
  });

  it('tags dump --va and check-pointer --va read through the tables, across non-contiguous pages', async () => {
    const dump = await vmsnap('tags', 'dump', path, '--va', `0x${(k + 0xfe0n).toString(16)}`, '--length', '64', '--json');
    expect(dump.code).toBe(0);
    expect(JSON.parse(dump.out).granules).toEqual([
      { address: String(k + 0xfe0n), ipa: String(0x4001_1fe0), tag: 9 },
      { address: String(k + 0xff0n), ipa: String(0x4001_1ff0), tag: 2 },
      { address: String(k + 0x1000n), ipa: String(0x4001_0000), tag: 6 },
      { address: String(k + 0x1010n), ipa: String(0x4001_0010), tag: 6 },
    ]);
    const data = await vmsnap('tags', 'dump', path, '--va', `0x${(k + 0x1000n).toString(16)}`, '--length', '16', '--data');
    expect(data.out).toContain('|second virtual p|');
    const ok = await vmsnap('check-pointer', path, '0xf9ff000000100010', '--va', '--length', '0x100');
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('(IPA 0x40011010) match (0x9)');
    const bad = await vmsnap('check-pointer', path, '0xf9ff000000100fe0', '--va', '--length', '0x40', '--json');
    expect(bad.code).toBe(4);
    expect(JSON.parse(bad.out)).toMatchObject({
      virtual: true,
      ipa: String(0x4001_1fe0),
      granulesMismatched: 3,
      mismatches: [
        { address: String(k + 0xff0n), ipa: String(0x4001_1ff0), allocationTag: 2 },
        { address: String(k + 0x1000n), ipa: String(0x4001_0000), allocationTag: 6 },
        { address: String(k + 0x1010n), ipa: String(0x4001_0010), allocationTag: 6 },
      ],
    });
  });
});
