/**
 * A core shaped as Linux 6.x writes one for an arm64 MTE process killed by a
 * synchronous tag check fault: the notes in the kernel's order
 * (fs/binfmt_elf.c write_note_info: per thread NT_PRSTATUS, then for the
 * first thread NT_PRPSINFO, NT_SIGINFO, NT_AUXV, NT_FILE, then the thread's
 * regsets in arch/arm64 order), the struct layouts of the uapi headers written
 * here byte by byte (not with vmsnap's encoders, so tests of vmsnap's decode
 * can fail), file mappings, a text segment held only in part, a tagged heap
 * and a MADV_DONTDUMP PROT_MTE mapping (PT_LOAD and memtag with p_filesz 0).
 *
 * No core written by a real kernel is in the repository (this machine has no
 * arm64 CPU or emulator); GDB reads this one as it reads a kernel's, which
 * tests/forensics-gdb checks.
 */
import { PF_R, PF_W, PF_X, PT_AARCH64_MEMTAG_MTE, PT_LOAD } from '../../src/forensics/elf-constants.js';
import { type CoreSegmentSpec, ElfCoreWriter, layoutCore } from '../../src/forensics/elf-core-writer.js';
import { encodeNotes } from '../../src/forensics/elf-notes.js';

const PAGE = 4096n;

/** What the core says, for tests to compare against. */
export const LINUX_CORE = {
  pid: 4242,
  secondThread: 4243,
  ppid: 4200,
  uid: 1000,
  gid: 1001,
  name: 'mte-crash',
  args: './mte-crash --use-after-free 7',
  /** The tagged pointer that faulted: logical tag 0xb into a granule whose allocation tag is 0x3. */
  faultAddress: 0x0b00_ffff_8000_1010n,
  allocationTag: 0x3,
  pc: 0xaaaa_aaaa_0124n,
  sp: 0xffff_f000_1f00n,
  tls: [0xffff_b7ff_7020n, 0xffff_b7df_6020n],
  /** PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | tags 1..15 included (PR_MTE_TAG_MASK 0xfffe << 3). */
  taggedAddrCtrl: 0x7fff3n,
  pacMask: { data: 0x007f_0000_0000_0000n, insn: 0x007f_0000_0000_0000n },
  /** APIAKEY | APIBKEY | APDAKEY | APDBKEY. */
  pacEnabledKeys: 0xfn,
  /** AT_HWCAP: FP, ASIMD, PACA (bit 30), PACG (bit 31). */
  hwcap: 0xc000_0003n,
  /** AT_HWCAP2: MTE (bit 18). */
  hwcap2: 1n << 18n,
  entry: 0xaaaa_aaaa_0100n,
  loads: {
    text: 0xaaaa_aaaa_0000n,
    data: 0xaaaa_aaab_0000n,
    heap: 0xffff_8000_0000n,
    dontdump: 0xffff_9000_0000n,
    libc: 0xffff_a000_0000n,
    stack: 0xffff_f000_0000n,
  },
  files: [
    { start: 0xaaaa_aaaa_0000n, end: 0xaaaa_aaaa_2000n, pageOffset: 0n, path: '/usr/local/bin/mte-crash' },
    { start: 0xaaaa_aaab_0000n, end: 0xaaaa_aaab_1000n, pageOffset: 0x10n, path: '/usr/local/bin/mte-crash' },
    { start: 0xffff_a000_0000n, end: 0xffff_a000_2000n, pageOffset: 0x17dn, path: '/usr/lib/aarch64-linux-gnu/libc.so.6' },
  ],
} as const;

const NT_PRSTATUS = 1;
const NT_FPREGSET = 2;
const NT_PRPSINFO = 3;
const NT_AUXV = 6;
const NT_SIGINFO = 0x53494749;
const NT_FILE = 0x46494c45;
const NT_ARM_TLS = 0x401;
const NT_ARM_SYSTEM_CALL = 0x404;
const NT_ARM_PAC_MASK = 0x406;
const NT_ARM_TAGGED_ADDR_CTRL = 0x409;
const NT_ARM_PAC_ENABLED_KEYS = 0x40a;

/** struct elf_prstatus (392 bytes): pr_info, pr_cursig at 12, pr_pid at 32, pr_reg at 112, pr_fpvalid at 384. */
function prstatus(pid: number, regs: { x: bigint[]; sp: bigint; pc: bigint; pstate: bigint }): Buffer {
  const b = Buffer.alloc(392);
  b.writeInt32LE(11, 0); // pr_info.si_signo
  b.writeInt16LE(11, 12); // pr_cursig
  b.writeInt32LE(pid, 32);
  b.writeInt32LE(LINUX_CORE.ppid, 36);
  b.writeInt32LE(LINUX_CORE.pid, 40); // pgrp
  b.writeInt32LE(LINUX_CORE.ppid, 44); // sid
  b.writeBigInt64LE(1n, 48); // utime.tv_sec
  for (const [n, value] of regs.x.entries()) b.writeBigUInt64LE(value, 112 + n * 8);
  b.writeBigUInt64LE(regs.sp, 112 + 31 * 8);
  b.writeBigUInt64LE(regs.pc, 112 + 32 * 8);
  b.writeBigUInt64LE(regs.pstate, 112 + 33 * 8);
  b.writeInt32LE(1, 384);
  return b;
}

/** struct user_fpsimd_state (528 bytes): v0..v31, fpsr, fpcr. */
function fpregset(seed: number): Buffer {
  const b = Buffer.alloc(528);
  for (let n = 0; n < 32; n++) b.writeBigUInt64LE(BigInt(seed * 100 + n), n * 16);
  b.writeUInt32LE(0x10, 512);
  b.writeUInt32LE(0x0300_0000, 516);
  return b;
}

/** struct elf_prpsinfo (136 bytes). */
function prpsinfo(): Buffer {
  const b = Buffer.alloc(136);
  b.writeUInt8(0, 0); // pr_state
  b.write('R', 1, 'latin1'); // pr_sname
  b.writeBigUInt64LE(0x40_0100n, 8); // pr_flag
  b.writeUInt32LE(LINUX_CORE.uid, 16);
  b.writeUInt32LE(LINUX_CORE.gid, 20);
  b.writeInt32LE(LINUX_CORE.pid, 24);
  b.writeInt32LE(LINUX_CORE.ppid, 28);
  b.writeInt32LE(LINUX_CORE.pid, 32);
  b.writeInt32LE(LINUX_CORE.ppid, 36);
  b.write(LINUX_CORE.name, 40, 'latin1');
  b.write(LINUX_CORE.args, 56, 'latin1');
  return b;
}

/** siginfo_t (128 bytes): SIGSEGV, SEGV_MTESERR (9), si_addr = the tagged pointer. */
function siginfo(): Buffer {
  const b = Buffer.alloc(128);
  b.writeInt32LE(11, 0);
  b.writeInt32LE(0, 4);
  b.writeInt32LE(9, 8);
  b.writeBigUInt64LE(LINUX_CORE.faultAddress, 16);
  return b;
}

function auxv(): Buffer {
  const pairs: [number, bigint][] = [
    [33, 0xffff_b7ff_e000n], // AT_SYSINFO_EHDR
    [51, 4720n], // AT_MINSIGSTKSZ
    [16, LINUX_CORE.hwcap],
    [6, PAGE],
    [17, 100n], // AT_CLKTCK
    [9, LINUX_CORE.entry],
    [26, LINUX_CORE.hwcap2],
    [0, 0n],
  ];
  const b = Buffer.alloc(pairs.length * 16);
  pairs.forEach(([key, value], i) => {
    b.writeBigUInt64LE(BigInt(key), i * 16);
    b.writeBigUInt64LE(value, i * 16 + 8);
  });
  return b;
}

function fileNote(): Buffer {
  const head = Buffer.alloc(16 + LINUX_CORE.files.length * 24);
  head.writeBigUInt64LE(BigInt(LINUX_CORE.files.length), 0);
  head.writeBigUInt64LE(PAGE, 8);
  LINUX_CORE.files.forEach((f, i) => {
    head.writeBigUInt64LE(f.start, 16 + i * 24);
    head.writeBigUInt64LE(f.end, 24 + i * 24);
    head.writeBigUInt64LE(f.pageOffset, 32 + i * 24);
  });
  return Buffer.concat([head, Buffer.from(LINUX_CORE.files.map((f) => `${f.path}\0`).join(''), 'latin1')]);
}

function u64s(...values: bigint[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  for (const [i, v] of values.entries()) b.writeBigUInt64LE(v, i * 8);
  return b;
}

function regsets(thread: number): { name: string; type: number; desc: Uint8Array }[] {
  const syscall = Buffer.alloc(4);
  syscall.writeInt32LE(-1, 0);
  return [
    { name: 'CORE', type: NT_FPREGSET, desc: fpregset(thread) },
    { name: 'LINUX', type: NT_ARM_TLS, desc: u64s(LINUX_CORE.tls[thread]) },
    { name: 'LINUX', type: NT_ARM_SYSTEM_CALL, desc: syscall },
    { name: 'LINUX', type: NT_ARM_PAC_MASK, desc: u64s(LINUX_CORE.pacMask.data, LINUX_CORE.pacMask.insn) },
    { name: 'LINUX', type: NT_ARM_PAC_ENABLED_KEYS, desc: u64s(LINUX_CORE.pacEnabledKeys) },
    { name: 'LINUX', type: NT_ARM_TAGGED_ADDR_CTRL, desc: u64s(LINUX_CORE.taggedAddrCtrl) },
  ];
}

export function linuxCoreNotes(): Uint8Array {
  const x = Array.from({ length: 31 }, (_, n) => BigInt(n) * 0x1111n);
  x[0] = LINUX_CORE.faultAddress;
  const pstate = 0x8000_0000n; // EL0t, N set
  return encodeNotes([
    { name: 'CORE', type: NT_PRSTATUS, desc: prstatus(LINUX_CORE.pid, { x, sp: LINUX_CORE.sp, pc: LINUX_CORE.pc, pstate }) },
    { name: 'CORE', type: NT_PRPSINFO, desc: prpsinfo() },
    { name: 'CORE', type: NT_SIGINFO, desc: siginfo() },
    { name: 'CORE', type: NT_AUXV, desc: auxv() },
    { name: 'CORE', type: NT_FILE, desc: fileNote() },
    ...regsets(0),
    {
      name: 'CORE',
      type: NT_PRSTATUS,
      desc: prstatus(LINUX_CORE.secondThread, {
        x: x.map((v) => v + 1n),
        sp: LINUX_CORE.sp - 0x10_0000n,
        pc: LINUX_CORE.pc + 0x40n,
        pstate,
      }),
    },
    ...regsets(1),
  ]);
}

/**
 * Writes the core to `path`. Segments: 1 text (2 pages, 1 in the file), 2 data,
 * 3 heap (4 pages, tagged), 4 DONTDUMP (2 pages, p_filesz 0, tagged), 5 libc,
 * 6 stack, then memtag 7 (heap) and 8 (DONTDUMP, p_filesz 0).
 */
export async function writeLinuxProcessCore(path: string): Promise<void> {
  const L = LINUX_CORE.loads;
  const load = (address: bigint, pages: bigint, filePages: bigint, flags: number): CoreSegmentSpec => ({
    type: PT_LOAD,
    flags,
    address,
    memSize: pages * PAGE,
    fileSize: filePages * PAGE,
    align: PAGE,
  });
  const memtag = (address: bigint, pages: bigint, dumped: boolean): CoreSegmentSpec => ({
    type: PT_AARCH64_MEMTAG_MTE,
    flags: 0,
    address,
    physicalAddress: 0n,
    memSize: pages * PAGE,
    fileSize: dumped ? (pages * PAGE) / 32n : 0n,
    align: 0n,
  });
  const specs = [
    load(L.text, 2n, 1n, PF_R | PF_X),
    load(L.data, 1n, 1n, PF_R | PF_W),
    load(L.heap, 4n, 4n, PF_R | PF_W),
    load(L.dontdump, 2n, 0n, PF_R | PF_W),
    load(L.libc, 2n, 2n, PF_R | PF_X),
    load(L.stack, 2n, 2n, PF_R | PF_W),
    memtag(L.heap, 4n, true),
    memtag(L.dontdump, 2n, false),
  ];
  const notes = linuxCoreNotes();
  const writer = await ElfCoreWriter.create(path, layoutCore(notes.length, specs), notes, Number(PAGE));
  await writer.writeSegment(1, 0n, Buffer.alloc(4096, 0x7f));
  await writer.writeSegment(2, 0n, Buffer.alloc(4096, 0x2d));
  const heap = Buffer.alloc(4 * 4096);
  for (let i = 0; i < heap.length; i += 8) heap.writeBigUInt64LE(L.heap + BigInt(i), i);
  await writer.writeSegment(3, 0n, heap);
  await writer.writeSegment(5, 0n, Buffer.alloc(2 * 4096, 0xc3));
  await writer.writeSegment(6, 0n, Buffer.alloc(2 * 4096, 0x51));
  // Heap tags: page 0 alternates 1 and 2, page 1 is all 3 (the faulting granule's), pages 2 and 3 tag 0xa.
  const tags = Buffer.alloc(512);
  tags.fill(0x21, 0, 128);
  tags.fill(0x33, 128, 256);
  tags.fill(0xaa, 256, 512);
  await writer.writeSegment(7, 0n, tags);
  await writer.finish();
}
