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
import { RegionNotTaggedError } from '../src/forensics/errors.js';
import { checkPointer } from '../src/forensics/pointer-check.js';
import { decodeProcessNotes, PROCESS_NOTES_BLOB } from '../src/forensics/process-notes.js';
import { type SnapshotShow, showSnapshot } from '../src/forensics/snapshot-show.js';
import { openSnapshot } from '../src/reader/open.js';
import { PSTATE_ID, SP_EL1_ID, SP_ID } from '../src/vm/arm64-registers.js';
import { saveSnapshot } from '../src/writer/save.js';
import { buildGuest, temporaryDirectory } from './forensics-fixtures.js';
import { LINUX_CORE, linuxCoreNotes, writeLinuxProcessCore } from './support/linux-process-core.js';
import { vmsnap } from './support/run-cli.js';

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

describe('a Linux MTE process core (shaped as the kernel writes one: see test/support/linux-process-core.ts)', () => {
  const original = join(dir.path, 'process.core');
  const snapshot = join(dir.path, 'process.vmsnap');
  const again = join(dir.path, 'process-again.core');

  function linuxNotes(path: string): { name: string; type: number; desc: string }[] {
    const core = ElfCore.open(path);
    try {
      return core.notes.filter((n) => n.name !== 'VMSNAP').map((n) => ({ ...n, desc: Buffer.from(n.desc).toString('hex') }));
    } finally {
      core.close();
    }
  }

  it('imports with every note kept, regions named after NT_FILE mappings', async () => {
    await writeLinuxProcessCore(original);
    await importCore(original, snapshot);
    const reader = await openSnapshot(snapshot);
    try {
      expect(reader.regions.map((r) => [r.name, r.guestAddress, r.mte])).toEqual([
        ['mte-crash+0x0', LINUX_CORE.loads.text, false],
        ['mte-crash+0x10000', LINUX_CORE.loads.data, false],
        ['load2', LINUX_CORE.loads.heap, true],
        ['libc.so.6+0x17d000', LINUX_CORE.loads.libc, false],
        ['load5', LINUX_CORE.loads.stack, false],
      ]);
      const blob = (await reader.blobs()).find((b) => b.name === PROCESS_NOTES_BLOB);
      expect(Buffer.from(blob!.data).equals(Buffer.from(linuxCoreNotes()))).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('decodes the notes by name: signal, fault address and tags, process, TLS, tagged-addr-ctrl, PAC, mappings, auxv', async () => {
    const reader = await openSnapshot(snapshot);
    let shown: SnapshotShow;
    try {
      shown = await showSnapshot(reader);
    } finally {
      await reader.close();
    }
    const pc = shown.processCore!;
    expect(pc.signal).toEqual({
      number: 11,
      name: 'SIGSEGV',
      code: 9,
      codeName: 'SEGV_MTESERR',
      errno: 0,
      faultAddress: LINUX_CORE.faultAddress,
      logicalTag: 0xb,
      tagCheckFault: 'sync',
    });
    expect(pc.faultAllocationTag).toBe(LINUX_CORE.allocationTag);
    expect(pc.process).toEqual({
      name: LINUX_CORE.name,
      args: LINUX_CORE.args,
      pid: LINUX_CORE.pid,
      ppid: LINUX_CORE.ppid,
      uid: LINUX_CORE.uid,
      gid: LINUX_CORE.gid,
      state: 'R',
    });
    expect(pc.threads.map((t) => [t.pid, t.currentSignal, t.tls])).toEqual([
      [LINUX_CORE.pid, 11, LINUX_CORE.tls[0]],
      [LINUX_CORE.secondThread, 11, LINUX_CORE.tls[1]],
    ]);
    expect(pc.threads[0].taggedAddrCtrl).toEqual({
      raw: LINUX_CORE.taggedAddrCtrl,
      taggedAddresses: true,
      tcf: 'sync',
      tagIncludeMask: 0xfffe,
      includedTags: Array.from({ length: 15 }, (_, i) => i + 1),
    });
    expect(pc.threads[1].pacMask).toEqual(LINUX_CORE.pacMask);
    expect(pc.threads[1].pacEnabledKeys).toEqual({ raw: 0xfn, keys: ['APIAKEY', 'APIBKEY', 'APDAKEY', 'APDBKEY'] });
    expect(pc.mappings).toEqual(
      LINUX_CORE.files.map((f) => ({ start: f.start, end: f.end, fileOffset: f.pageOffset * 4096n, path: f.path })),
    );
    expect(pc.mteCapable).toBe(true);
    expect(pc.auxv.map((e) => e.name)).toEqual([
      'AT_SYSINFO_EHDR',
      'AT_MINSIGSTKSZ',
      'AT_HWCAP',
      'AT_PAGESZ',
      'AT_CLKTCK',
      'AT_ENTRY',
      'AT_HWCAP2',
      'AT_NULL',
    ]);
    // NT_ARM_SYSTEM_CALL is not decoded, but listed (and kept).
    expect(pc.otherNotes).toEqual([
      { name: 'LINUX', type: 0x404, bytes: 4 },
      { name: 'LINUX', type: 0x404, bytes: 4 },
    ]);
    expect(JSON.parse(JSON.stringify(shown)).processCore.signal.faultAddress).toBe(LINUX_CORE.faultAddress.toString());
  });

  it('exports the same Linux notes back: signal, siginfo, process, mappings, auxv and every regset, byte for byte', async () => {
    const reader = await openSnapshot(snapshot);
    try {
      await exportCore(reader, again);
    } finally {
      await reader.close();
    }
    expect(linuxNotes(again)).toEqual(linuxNotes(original));
  });

  it('shows them in `vmsnap show` and `vmsnap info`', async () => {
    const show = await vmsnap('show', snapshot);
    expect(show.code).toBe(0);
    expect(show.out).toContain('process core: mte-crash (pid 4242), "./mte-crash --use-after-free 7"');
    expect(show.out).toContain(
      'signal: SIGSEGV (11), SEGV_MTESERR (9): synchronous tag check fault at 0x0b00ffff80001010 (logical tag 0xb, allocation tag 0x3)',
    );
    expect(show.out).toContain(
      '  thread 4242 (signal 11): TLS 0xffffb7ff7020\n' +
        '    tagged-addr-ctrl 0x7fff3: tagged addresses on, TCF sync, tag include mask 0xfffe (tags 1-f)\n' +
        '    PAC masks data 0x7f000000000000, insn 0x7f000000000000; enabled keys APIAKEY|APIBKEY|APDAKEY|APDBKEY\n' +
        '  thread 4243 (signal 11): TLS 0xffffb7df6020\n',
    );
    expect(show.out).toContain('0xffffa0000000-0xffffa0002000 +0x17d000 /usr/lib/aarch64-linux-gnu/libc.so.6');
    expect(show.out).toMatch(/AT_HWCAP2\s+0x40000/);
    const info = await vmsnap('info', snapshot);
    expect(info.out).toContain('signal: SIGSEGV (11), SEGV_MTESERR (9): synchronous tag check fault at 0x0b00ffff80001010');
    const json = JSON.parse((await vmsnap('info', snapshot, '--json')).out);
    expect(json.processCore.signal.codeName).toBe('SEGV_MTESERR');
    expect(json.processCore.faultAllocationTag).toBe(3);
  });

  it('keeps a MADV_DONTDUMP PROT_MTE mapping (memtag p_filesz 0) without tags under --keep-empty-loads', async () => {
    const kept = join(dir.path, 'process-empty.vmsnap');
    const summary = await importCore(original, kept, { keepEmptyLoads: true });
    expect(summary.skippedLoads).toEqual([]);
    const reader = await openSnapshot(kept);
    try {
      const region = reader.regions.find((r) => r.guestAddress === LINUX_CORE.loads.dontdump)!;
      expect([region.name, region.mte, region.readOnly]).toEqual(['load3', false, false]);
      expect(reader.regions.find((r) => r.guestAddress === LINUX_CORE.loads.heap)!.mte).toBe(true);
      await expect(checkPointer(reader, 0x0500_0000_0000_0000n | LINUX_CORE.loads.dontdump)).rejects.toBeInstanceOf(RegionNotTaggedError);
    } finally {
      await reader.close();
    }
  });
});

describe('kept notes that are damaged', () => {
  it('leave info and show working, say why, and make export core refuse with a typed error naming the blob', async () => {
    const vm = buildGuest({ regions: [{ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: 0x10000n }] });
    const snapshot = join(dir.path, 'bad-notes.vmsnap');
    // A note record whose descsz runs past the end of the blob.
    const bad = Buffer.alloc(20);
    bad.writeUInt32LE(5, 0);
    bad.writeUInt32LE(4096, 4);
    bad.writeUInt32LE(1, 8);
    bad.write('CORE', 12, 'latin1');
    await saveSnapshot(vm, snapshot, { threads: 0, blobs: [{ name: PROCESS_NOTES_BLOB, data: bad }] });
    vm.close();
    const info = await vmsnap('info', snapshot);
    expect(info.code).toBe(0);
    expect(info.out).toMatch(/process core: its kept notes cannot be read: .*linux-core\.notes.*note of 4096 bytes runs past the end/);
    const show = await vmsnap('show', snapshot, '--json');
    expect(JSON.parse(show.out).processCore.problem).toMatch(/runs past the end/);
    const exported = await vmsnap('export', 'core', snapshot, '-o', join(dir.path, 'bad-notes.core'));
    expect(exported.code).not.toBe(0);
    expect(exported.err).toMatch(/linux-core\.notes/);
  });

  it('decode to a report, never an exception, whatever their bytes', () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const types = [1, 2, 3, 6, 0x53494749, 0x46494c45, 0x401, 0x406, 0x409, 0x40a, 0x404];
    for (let round = 0; round < 300; round++) {
      const notes = Array.from({ length: 1 + (random() % 8) }, () => {
        const desc = new Uint8Array(random() % 600);
        for (let i = 0; i < desc.length; i++) desc[i] = random() & 0xff;
        return { name: random() % 2 ? 'CORE' : 'LINUX', type: types[random() % types.length], desc };
      });
      expect(() => decodeProcessNotes(notes)).not.toThrow();
    }
  });
});
