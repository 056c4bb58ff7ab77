/**
 * ELF core export and import: the file's bytes as Linux and GDB expect them,
 * read back by our reader, the snapshot -> core -> snapshot round trip, and
 * cores shaped like the ones Linux writes for MTE processes.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportCore } from '../src/forensics/core-export.js';
import { importCore } from '../src/forensics/core-import.js';
import { auxvDesc, fpregsetDesc, prstatusDesc } from '../src/forensics/core-notes.js';
import {
  NT_ARM_TAGGED_ADDR_CTRL,
  NT_AUXV,
  NT_FPREGSET,
  NT_PRSTATUS,
  PF_R,
  PF_W,
  PF_X,
  PT_AARCH64_MEMTAG_MTE,
  PT_LOAD,
  PT_NOTE,
} from '../src/forensics/elf-constants.js';
import { ElfCore } from '../src/forensics/elf-core-reader.js';
import { type CoreSegmentSpec, ElfCoreWriter, layoutCore } from '../src/forensics/elf-core-writer.js';
import { encodeNotes } from '../src/forensics/elf-notes.js';
import { ElfCoreFormatError } from '../src/forensics/errors.js';
import type { SnapshotReader } from '../src/format/model.js';
import { openSnapshot } from '../src/reader/open.js';
import { xRegisterId } from '../src/vm/arm64-registers.js';
import { SCENARIO_A, saveGuest, temporaryDirectory } from './forensics-fixtures.js';

const dir = temporaryDirectory();
let snapshotPath: string;
let corePath: string;
let reader: SnapshotReader;

beforeAll(async () => {
  snapshotPath = await saveGuest(SCENARIO_A, join(dir.path, 'a.vmsnap'));
  corePath = join(dir.path, 'a.core');
  reader = await openSnapshot(snapshotPath);
});
afterAll(async () => {
  await reader?.close();
  dir.remove();
});

async function everyPageAndTag(snapshot: SnapshotReader): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const region of snapshot.regions) {
    const data = await snapshot.readMemory(region.guestAddress, Number(region.size));
    out.set(`${region.name}:data`, Buffer.from(data).toString('base64'));
    if (region.mte)
      out.set(`${region.name}:tags`, Buffer.from(await snapshot.readTags(region.guestAddress, Number(region.size))).toString('hex'));
  }
  return out;
}

describe('export core', () => {
  it('writes an AArch64 ET_CORE with a PT_LOAD per region and a memtag segment per MTE region', async () => {
    const summary = await exportCore(reader, corePath);
    const bytes = readFileSync(corePath);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(bytes.readUInt16LE(16)).toBe(4); // ET_CORE
    expect(bytes.readUInt16LE(18)).toBe(183); // EM_AARCH64
    const core = ElfCore.open(corePath);
    try {
      expect(core.segments.map((s) => s.type)).toEqual([PT_NOTE, PT_LOAD, PT_LOAD, PT_LOAD, PT_AARCH64_MEMTAG_MTE, PT_AARCH64_MEMTAG_MTE]);
      expect(core.loads.map((s) => [s.address, s.memSize, s.flags])).toEqual([
        [0x0n, 0x10000n, PF_R | PF_X],
        [0x4000_0000n, 0x10_0000n, PF_R | PF_W | PF_X],
        [0x1_0000_0000n, 0x4_0000n, PF_R | PF_W | PF_X],
      ]);
      for (const m of core.memtags) {
        expect(m.fileSize).toBe(m.memSize / 32n);
        expect([m.flags, m.physicalAddress, m.align]).toEqual([0, 0n, 0n]);
      }
      // Tags packed as Linux packs them: low nibble = even (lower) granule.
      const ram = core.memtags[0];
      const at = Number(ram.offset);
      expect([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]).toEqual([0x33, 0x33, 0x55, 0x00]);
      expect(bytes.subarray(at + 128, at + 256).every((x) => x === 0x77)).toBe(true);
      expect(summary.diskBytes).toBeLessThan(summary.fileSize / 4n);
    } finally {
      core.close();
    }
  });

  it('fills PRSTATUS per vCPU from the core registers, and AUXV with HWCAP2_MTE', () => {
    const core = ElfCore.open(corePath);
    try {
      const prstatus = core.notes.filter((n) => n.type === NT_PRSTATUS);
      expect(prstatus.map((n) => n.desc.length)).toEqual([392, 392]);
      const second = Buffer.from(prstatus[1].desc);
      expect(second.readInt32LE(32)).toBe(2); // pr_pid = vCPU id + 1
      expect(second.readBigUInt64LE(112)).toBe(0x1111_0001n); // x0
      expect(second.readBigUInt64LE(112 + 30 * 8)).toBe(0xdead_beef_0001n); // x30
      expect(second.readBigUInt64LE(112 + 32 * 8)).toBe(0x4000_0804n); // pc
      const auxv = Buffer.from(core.notes.find((n) => n.type === NT_AUXV)!.desc);
      const pairs = Array.from({ length: auxv.length / 16 }, (_, i) => [auxv.readBigUInt64LE(i * 16), auxv.readBigUInt64LE(i * 16 + 8)]);
      expect(pairs).toContainEqual([26n, 1n << 18n]);
      expect(core.notes.filter((n) => n.type === NT_FPREGSET).map((n) => n.desc.length)).toEqual([528, 528]);
      expect(core.notes.find((n) => n.type === 3)!.desc.length).toBe(136);
      expect(core.notes.find((n) => n.type === 0x53494749)!.desc.length).toBe(128);
    } finally {
      core.close();
    }
  });

  it('reads back every page and tag through the core reader', async () => {
    const core = ElfCore.open(corePath);
    try {
      for (const [i, region] of reader.regions.entries()) {
        const data = new Uint8Array(Number(region.size));
        core.readLoad(core.loads[i], 0n, data);
        expect(Buffer.from(data).equals(Buffer.from(await reader.readMemory(region.guestAddress, data.length)))).toBe(true);
        if (!region.mte) continue;
        const tags = new Uint8Array(data.length / 16);
        core.readTags(core.memtagAt(region.guestAddress)!, 0, tags);
        expect(Buffer.from(tags).equals(Buffer.from(await reader.readTags(region.guestAddress, data.length)))).toBe(true);
      }
    } finally {
      core.close();
    }
  });
});

describe('import core', () => {
  it('gives back the exported snapshot byte for byte', async () => {
    const back = join(dir.path, 'back.vmsnap');
    const summary = await importCore(corePath, back);
    expect(summary.fromVmsnap).toBe(true);
    expect(readFileSync(back).equals(readFileSync(snapshotPath))).toBe(true);
    const again = await openSnapshot(back);
    try {
      expect(await everyPageAndTag(again)).toEqual(await everyPageAndTag(reader));
      expect(await again.vcpus()).toEqual(await reader.vcpus());
    } finally {
      await again.close();
    }
  });

  it('refuses a core whose tag segment lies where no PT_LOAD is, instead of dropping its tags', async () => {
    const path = join(dir.path, 'stray-tags.core');
    const page = 4096n;
    const specs: CoreSegmentSpec[] = [
      { type: PT_LOAD, flags: PF_R | PF_W, address: 0xffff_8000_0000n, memSize: 4n * page, fileSize: 4n * page, align: page },
      {
        type: PT_AARCH64_MEMTAG_MTE,
        flags: 0,
        address: 0xffff_c000_0000n,
        physicalAddress: 0n,
        memSize: 4n * page,
        fileSize: (4n * page) / 32n,
        align: 0n,
      },
    ];
    const notes = encodeNotes([{ name: 'CORE', type: NT_AUXV, desc: auxvDesc(4096) }]);
    const writer = await ElfCoreWriter.create(path, layoutCore(notes.length, specs), notes, 4096);
    await writer.writeSegment(2, 0n, new Uint8Array(128).fill(0x77));
    await writer.finish();
    const error = await importCore(path, join(dir.path, 'stray-tags.vmsnap')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ElfCoreFormatError);
    expect((error as ElfCoreFormatError).kind).toBe('invalid-input');
    expect(String(error)).toMatch(/memtag segment 2 \[0xffffc0000000, \+0x4000\) matches no PT_LOAD/);
  });

  it('reads a Linux-style MTE process core: many loads, p_filesz 0 or short, memtag after the loads', async () => {
    const path = process.env.KEEP_LINUX_CORE ?? join(dir.path, 'linux.core');
    const page = 4096n;
    const specs: CoreSegmentSpec[] = [
      { type: PT_LOAD, flags: PF_R | PF_X, address: 0xaaaa_0000_0000n, memSize: 3n * page, fileSize: 3n * page, align: page },
      { type: PT_LOAD, flags: PF_R | PF_W, address: 0xffff_8000_0000n, memSize: 4n * page, fileSize: 4n * page, align: page },
      { type: PT_LOAD, flags: 0, address: 0xffff_9000_0000n, memSize: 16n * page, fileSize: 0n, align: page },
      { type: PT_LOAD, flags: PF_R | PF_W, address: 0xffff_a000_0000n, memSize: 2n * page, fileSize: page, align: page },
      {
        type: PT_AARCH64_MEMTAG_MTE,
        flags: 0,
        address: 0xffff_8000_0000n,
        physicalAddress: 0n,
        memSize: 4n * page,
        fileSize: (4n * page) / 32n,
        align: 0n,
      },
    ];
    const thread = { id: 0, registers: [{ id: xRegisterId(0), value: new Uint8Array([0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0]) }] };
    const notes = encodeNotes([
      { name: 'CORE', type: NT_PRSTATUS, desc: prstatusDesc(thread) },
      { name: 'CORE', type: NT_AUXV, desc: auxvDesc(4096) },
      { name: 'CORE', type: NT_FPREGSET, desc: fpregsetDesc(thread) },
      { name: 'LINUX', type: NT_ARM_TAGGED_ADDR_CTRL, desc: new Uint8Array(8).fill(0x13, 0, 1) },
    ]);
    const writer = await ElfCoreWriter.create(path, layoutCore(notes.length, specs), notes, 4096);
    await writer.writeSegment(1, 0n, new Uint8Array(3 * 4096).fill(0xc3));
    await writer.writeSegment(2, 4096n, new Uint8Array(4096).fill(0x5a));
    // Segment indices count the PT_NOTE as 0: the memtag segment is 5.
    await writer.writeSegment(5, 0n, new Uint8Array([0x21, 0x43])); // granules 0..3 of the heap: tags 1, 2, 3, 4
    await writer.writeSegment(5, 128n, new Uint8Array(128).fill(0x99)); // page 1: tag 9 everywhere
    await writer.writeSegment(4, 0n, new Uint8Array(4096).fill(0x11)); // load3's one page in the file
    await writer.finish();

    const out = join(dir.path, 'linux.vmsnap');
    const summary = await importCore(path, out);
    expect(summary.fromVmsnap).toBe(false);
    expect(summary.skippedLoads).toEqual([{ address: 0xffff_9000_0000n, size: 16n * page }]);
    const snapshot = await openSnapshot(out);
    try {
      expect(snapshot.regions.map((r) => [r.name, r.guestAddress, r.mte])).toEqual([
        ['load0', 0xaaaa_0000_0000n, false],
        ['load1', 0xffff_8000_0000n, true],
        ['load3', 0xffff_a000_0000n, false], // writable, but no memtag segment: saved untagged
      ]);
      expect(Array.from(await snapshot.readTags(0xffff_8000_0000n, 64))).toEqual([1, 2, 3, 4]);
      expect((await snapshot.readTags(0xffff_8000_1000n, 4096)).every((t) => t === 9)).toBe(true);
      expect((await snapshot.readMemory(0xffff_8000_1000n, 4096)).every((x) => x === 0x5a)).toBe(true);
      expect((await snapshot.readMemory(0xffff_a000_0000n, 4096)).every((x) => x === 0x11)).toBe(true);
      // Past p_filesz: zeros.
      expect((await snapshot.readMemory(0xffff_a000_1000n, 4096)).every((x) => x === 0)).toBe(true);
      expect((await snapshot.readMemory(0xaaaa_0000_2000n, 4096)).every((x) => x === 0xc3)).toBe(true);
      const [vcpu] = await snapshot.vcpus();
      expect(Array.from(vcpu.registers.find((r) => r.id === xRegisterId(0))!.value)).toEqual([0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0]);
      expect(snapshot.metadata.annotations.source).toBe('elf-core');
    } finally {
      await snapshot.close();
    }
  });
});

describe('ELF core reader and writer edge cases', () => {
  it('uses PN_XNUM extended numbering past 65,535 program headers, and reads it back', async () => {
    const path = join(dir.path, 'many.core');
    const specs: CoreSegmentSpec[] = Array.from({ length: 70_000 }, (_, i) => ({
      type: PT_LOAD,
      flags: PF_R,
      address: BigInt(i) * 0x1000n,
      memSize: 0x1000n,
      fileSize: 0n,
      align: 0x1000n,
    }));
    const writer = await ElfCoreWriter.create(path, layoutCore(0, specs), new Uint8Array(0), 4096);
    await writer.finish();
    const bytes = readFileSync(path);
    expect(bytes.readUInt16LE(56)).toBe(0xffff);
    const core = ElfCore.open(path);
    try {
      expect(core.segments.length).toBe(70_001);
      expect(core.loads[69_999].address).toBe(69_999n * 0x1000n);
    } finally {
      core.close();
    }
  });

  it('names the offset of what is wrong in a malformed core', () => {
    const bytes = readFileSync(corePath);
    const badMagic = join(dir.path, 'bad-magic.core');
    writeFileSync(badMagic, Buffer.concat([Buffer.from('\x7fELG'), bytes.subarray(4)]));
    expect(() => ElfCore.open(badMagic)).toThrow(/file offset 0x0: not an ELF file/);
    const badMemtag = Buffer.from(bytes);
    const phoff = 64 + 4 * 56; // program header 4: the first memtag segment
    badMemtag.writeBigUInt64LE(badMemtag.readBigUInt64LE(phoff + 32) + 1n, phoff + 32);
    const badPath = join(dir.path, 'bad-memtag.core');
    writeFileSync(badPath, badMemtag);
    expect(() => ElfCore.open(badPath)).toThrow(/program header 4 .*memtag p_filesz \d+ is not p_memsz \/ 32/);
    const truncated = join(dir.path, 'truncated.core');
    writeFileSync(truncated, bytes.subarray(0, 5000));
    expect(() => ElfCore.open(truncated)).toThrow(/runs past the end of the 5000-byte file/);
  });
});
