/**
 * Fidelity of exported and imported cores with what Linux writes and GDB
 * reads (issue 11, item 5): each test here failed before its fix.
 */

import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportCore } from '../src/forensics/core-export.js';
import { importCore } from '../src/forensics/core-import.js';
import { auxvDesc } from '../src/forensics/core-notes.js';
import { NT_AUXV, PF_R, PF_W, PRSTATUS_REGS_OFFSET, PT_AARCH64_MEMTAG_MTE, PT_LOAD } from '../src/forensics/elf-constants.js';
import { ElfCore } from '../src/forensics/elf-core-reader.js';
import { type CoreSegmentSpec, ElfCoreWriter, layoutCore } from '../src/forensics/elf-core-writer.js';
import { encodeNotes } from '../src/forensics/elf-notes.js';
import { openSnapshot } from '../src/reader/open.js';
import { PSTATE_ID, SP_EL1_ID, SP_ID } from '../src/vm/arm64-registers.js';
import { saveSnapshot } from '../src/writer/save.js';
import { buildGuest, temporaryDirectory } from './forensics-fixtures.js';

const dir = temporaryDirectory();
afterAll(() => dir.remove());

function u64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value, true);
  return out;
}

function prstatusSp(core: ElfCore): bigint[] {
  return core.notes.filter((n) => n.type === 1).map((n) => Buffer.from(n.desc).readBigUInt64LE(PRSTATUS_REGS_OFFSET + 31 * 8));
}

describe('exported cores', () => {
  it('write the stack pointer the saved EL and SPSel select: SP_EL1 in EL1h, SP_EL0 in EL1t and EL0t', async () => {
    const vm = buildGuest({ regions: [{ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: 0x10000n }], vcpus: 3 });
    const pstates = [0x3c5n, 0x3c4n, 0x0n];
    vm.vcpus().forEach((vcpu, i) => {
      vcpu.setRegister(PSTATE_ID, u64(pstates[i]));
      vcpu.setRegister(SP_ID, u64(0x1000n + BigInt(i)));
      vcpu.setRegister(SP_EL1_ID, u64(0xffff_8000_8000_3f00n + BigInt(i)));
    });
    const snapshot = join(dir.path, 'el1h.vmsnap');
    await saveSnapshot(vm, snapshot, { threads: 0 });
    vm.close();
    const reader = await openSnapshot(snapshot);
    const corePath = join(dir.path, 'el1h.core');
    try {
      await exportCore(reader, corePath);
    } finally {
      await reader.close();
    }
    const core = ElfCore.open(corePath);
    try {
      expect(prstatusSp(core)).toEqual([0xffff_8000_8000_3f00n, 0x1001n, 0x1002n]);
    } finally {
      core.close();
    }
    // The VMSNAP note keeps both stack pointers, so import gives back the very snapshot.
    const back = join(dir.path, 'el1h-back.vmsnap');
    await importCore(corePath, back);
    const again = await openSnapshot(back);
    const original = await openSnapshot(snapshot);
    try {
      expect(await again.vcpus()).toEqual(await original.vcpus());
    } finally {
      await again.close();
      await original.close();
    }
  });

  it('keep host paths out of the VMSNAP note unless asked', async () => {
    const vm = buildGuest({ regions: [{ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: 0x10000n }] });
    const snapshot = join(dir.path, 'paths.vmsnap');
    const annotations = { 'raw.ram-file': '/home/alice/vms/secret-project/guest.ram', host: 'lab1', note: 'a/b is not a path' };
    await saveSnapshot(vm, snapshot, { threads: 0, annotations });
    vm.close();
    const reader = await openSnapshot(snapshot);
    try {
      for (const keepHostPaths of [false, true]) {
        const corePath = join(dir.path, `paths-${keepHostPaths}.core`);
        await exportCore(reader, corePath, { keepHostPaths });
        const core = ElfCore.open(corePath);
        const note = Buffer.from(core.notes.find((n) => n.name === 'VMSNAP')!.desc).toString('utf8');
        core.close();
        expect(note.includes('/home/alice')).toBe(keepHostPaths);
        expect(note).toContain('guest.ram');
        expect(note).toContain('a/b is not a path');
      }
    } finally {
      await reader.close();
    }
  });
});

describe('imported cores', () => {
  it('take a memtag segment for an odd number of granules: p_filesz rounds up', async () => {
    const path = join(dir.path, 'odd.core');
    const page = 4096n;
    const specs: CoreSegmentSpec[] = [
      { type: PT_LOAD, flags: PF_R | PF_W, address: 0xffff_8000_0000n, memSize: page, fileSize: page, align: page },
      // Three granules: two tags per byte, so 2 bytes (Linux rounds up; 48 / 32 would be 1).
      { type: PT_AARCH64_MEMTAG_MTE, flags: 0, address: 0xffff_8000_0000n, physicalAddress: 0n, memSize: 48n, fileSize: 2n, align: 0n },
    ];
    const notes = encodeNotes([{ name: 'CORE', type: NT_AUXV, desc: auxvDesc(4096) }]);
    const writer = await ElfCoreWriter.create(path, layoutCore(notes.length, specs), notes, 4096);
    await writer.writeSegment(1, 0n, new Uint8Array(4096).fill(0x42));
    await writer.writeSegment(2, 0n, new Uint8Array([0x21, 0x03]));
    await writer.finish();
    const snapshot = join(dir.path, 'odd.vmsnap');
    await importCore(path, snapshot);
    const reader = await openSnapshot(snapshot);
    try {
      const tags = await reader.readTags(0xffff_8000_0000n, 64);
      expect(Array.from(tags)).toEqual([1, 2, 3, 0]);
    } finally {
      await reader.close();
    }
  });
});

describe('bytes a core does not hold', () => {
  it('stay absent through import and export: p_filesz < p_memsz comes back as it was', async () => {
    const path = join(dir.path, 'short.core');
    const page = 4096n;
    const specs: CoreSegmentSpec[] = [
      { type: PT_LOAD, flags: PF_R, address: 0xaaaa_0000_0000n, memSize: 3n * page, fileSize: page, align: page },
      { type: PT_LOAD, flags: PF_R | PF_W, address: 0xffff_8000_0000n, memSize: page, fileSize: page, align: page },
    ];
    const notes = encodeNotes([{ name: 'CORE', type: NT_AUXV, desc: auxvDesc(4096) }]);
    const writer = await ElfCoreWriter.create(path, layoutCore(notes.length, specs), notes, 4096);
    await writer.writeSegment(1, 0n, new Uint8Array(4096).fill(0x7f));
    await writer.writeSegment(2, 0n, new Uint8Array(4096).fill(0x11));
    await writer.finish();
    const snapshot = join(dir.path, 'short.vmsnap');
    await importCore(path, snapshot);
    const reader = await openSnapshot(snapshot);
    const again = join(dir.path, 'short-again.core');
    try {
      await exportCore(reader, again);
    } finally {
      await reader.close();
    }
    const core = ElfCore.open(again);
    try {
      expect(core.loads.map((l) => [l.address, l.memSize, l.fileSize])).toEqual([
        [0xaaaa_0000_0000n, 3n * page, page],
        [0xffff_8000_0000n, page, page],
      ]);
    } finally {
      core.close();
    }
  });
});
