/**
 * The Linux notes of a core, built from and read back into vCPU registers.
 *
 * NT_PRSTATUS carries x0..x30, sp, pc, pstate (user_pt_regs) and NT_FPREGSET
 * v0..v31, fpsr, fpcr (user_fpsimd_state); both are KVM core registers, so
 * they map one to one onto ONE_REG ids. A register the snapshot lacks is
 * written as zero. One PRSTATUS (thread) per vCPU, pid = vCPU id + 1 (GDB
 * treats lwp 0 as "no thread").
 */

import { FPCR_ID, FPSR_ID, PC_ID, PSTATE_ID, SP_EL1_ID, SP_ID, vRegisterId, xRegisterId } from '../vm/arm64-registers.js';
import type { RegisterValue, VcpuState } from '../vm/vm.js';
import {
  AT_HWCAP,
  AT_HWCAP2,
  AT_NULL,
  AT_PAGESZ,
  FPREGSET_SIZE,
  HWCAP_ASIMD,
  HWCAP_FP,
  HWCAP2_MTE,
  NT_AUXV,
  NT_FPREGSET,
  NT_PRPSINFO,
  NT_PRSTATUS,
  NT_SIGINFO,
  PRPSINFO_SIZE,
  PRSTATUS_FPVALID_OFFSET,
  PRSTATUS_PID_OFFSET,
  PRSTATUS_REGS_OFFSET,
  PRSTATUS_SIZE,
  SIGINFO_SIZE,
} from './elf-constants.js';
import type { ElfNote } from './elf-notes.js';

/** pr_reg order: x0..x30, sp, pc, pstate. */
const PRSTATUS_REGISTER_IDS: readonly bigint[] = [...Array.from({ length: 31 }, (_, n) => xRegisterId(n)), SP_ID, PC_ID, PSTATE_ID];
const VREG_IDS: readonly bigint[] = Array.from({ length: 32 }, (_, n) => vRegisterId(n));
const FPSR_OFFSET = 512;
const FPCR_OFFSET = 516;

function registerMap(vcpu: VcpuState): Map<bigint, Uint8Array> {
  return new Map(vcpu.registers.map((r) => [r.id, r.value]));
}

/** Copies a register value into `out` at `offset`, at most `size` bytes (little-endian either way). */
function put(out: Uint8Array, offset: number, size: number, value: Uint8Array | undefined): void {
  if (value) out.set(value.subarray(0, size), offset);
}

/**
 * The stack pointer the vCPU was using: PSTATE.M[3:0] names the exception
 * level and SPSel. EL1h (0b0101) runs on SP_EL1, which KVM keeps apart from
 * `sp` (SP_EL0); EL0t and EL1t run on SP_EL0. A kernel-mode guest written
 * with SP_EL0 in pr_reg would show GDB a user stack pointer (often 0) and
 * break its backtraces.
 */
export function activeStackPointerId(regs: ReadonlyMap<bigint, Uint8Array>): bigint {
  const pstate = regs.get(PSTATE_ID);
  return pstate && (pstate[0] & 0xf) === 0b0101 ? SP_EL1_ID : SP_ID;
}

export function prstatusDesc(vcpu: VcpuState): Uint8Array {
  const out = Buffer.alloc(PRSTATUS_SIZE);
  const regs = registerMap(vcpu);
  out.writeInt32LE(vcpu.id + 1, PRSTATUS_PID_OFFSET);
  for (const [i, id] of PRSTATUS_REGISTER_IDS.entries()) {
    put(out, PRSTATUS_REGS_OFFSET + i * 8, 8, regs.get(id === SP_ID ? activeStackPointerId(regs) : id));
  }
  out.writeInt32LE(1, PRSTATUS_FPVALID_OFFSET);
  return out;
}

export function fpregsetDesc(vcpu: VcpuState): Uint8Array {
  const out = Buffer.alloc(FPREGSET_SIZE);
  const regs = registerMap(vcpu);
  for (const [i, id] of VREG_IDS.entries()) put(out, i * 16, 16, regs.get(id));
  put(out, FPSR_OFFSET, 4, regs.get(FPSR_ID));
  put(out, FPCR_OFFSET, 4, regs.get(FPCR_ID));
  return out;
}

/** struct elf_prpsinfo with pr_fname set (GDB prints it as the program name). */
export function prpsinfoDesc(programName: string): Uint8Array {
  const out = Buffer.alloc(PRPSINFO_SIZE);
  out.writeUInt8('R'.charCodeAt(0), 1);
  out.writeInt32LE(1, 24);
  out.write(programName.slice(0, 15), 40, 'latin1');
  out.write(programName.slice(0, 79), 56, 'latin1');
  return out;
}

/** AT_HWCAP2 with HWCAP2_MTE is what makes GDB show tags; AT_PAGESZ tells the guest page size. */
export function auxvDesc(pageSize: number): Uint8Array {
  const pairs: [bigint, bigint][] = [
    [AT_HWCAP, HWCAP_FP | HWCAP_ASIMD],
    [AT_HWCAP2, HWCAP2_MTE],
    [AT_PAGESZ, BigInt(pageSize)],
    [AT_NULL, 0n],
  ];
  const out = Buffer.alloc(pairs.length * 16);
  pairs.forEach(([key, value], i) => {
    out.writeBigUInt64LE(key, i * 16);
    out.writeBigUInt64LE(value, i * 16 + 8);
  });
  return out;
}

/** The Linux notes for a guest: per vCPU PRSTATUS + FPREGSET, and once PRPSINFO, SIGINFO (no signal), AUXV. */
export function linuxCoreNotes(vcpus: readonly VcpuState[], pageSize: number, programName: string): ElfNote[] {
  const threads = vcpus.length ? vcpus : [{ id: 0, registers: [] }];
  const notes: ElfNote[] = [];
  threads.forEach((vcpu, i) => {
    notes.push({ name: 'CORE', type: NT_PRSTATUS, desc: prstatusDesc(vcpu) });
    if (i === 0) {
      notes.push({ name: 'CORE', type: NT_PRPSINFO, desc: prpsinfoDesc(programName) });
      notes.push({ name: 'CORE', type: NT_SIGINFO, desc: new Uint8Array(SIGINFO_SIZE) });
      notes.push({ name: 'CORE', type: NT_AUXV, desc: auxvDesc(pageSize) });
    }
    notes.push({ name: 'CORE', type: NT_FPREGSET, desc: fpregsetDesc(vcpu) });
  });
  return notes;
}

/** `auxv` with HWCAP2_MTE set in AT_HWCAP2 (added before AT_NULL when missing). */
function auxvWithMte(auxv: Uint8Array): Uint8Array {
  const out = Buffer.from(auxv);
  for (let at = 0; at + 16 <= out.length; at += 16) {
    const key = out.readBigUInt64LE(at);
    if (key === AT_HWCAP2) {
      out.writeBigUInt64LE(out.readBigUInt64LE(at + 8) | HWCAP2_MTE, at + 8);
      return out;
    }
    if (key === AT_NULL) {
      const entry = Buffer.alloc(16);
      entry.writeBigUInt64LE(AT_HWCAP2, 0);
      entry.writeBigUInt64LE(HWCAP2_MTE, 8);
      return Buffer.concat([out.subarray(0, at), entry, out.subarray(at)]);
    }
  }
  return out;
}

/**
 * The notes of the Linux core a snapshot was imported from (kept in its
 * PROCESS_NOTES_BLOB blob), to write back as they were: signal, siginfo,
 * process, mappings, auxv, each thread's regsets. The snapshot's registers
 * stay the truth: each NT_PRSTATUS gets its vCPU's x0..pstate (the rest of
 * it, pid and pr_cursig, is kept) and each NT_FPREGSET its vCPU's vector
 * registers. vCPUs the notes have no thread for get the synthetic notes.
 * With `mte` (the snapshot has tagged regions) AT_HWCAP2 gets HWCAP2_MTE, as
 * GDB shows tags only then.
 */
export function keptCoreNotes(kept: readonly ElfNote[], vcpus: readonly VcpuState[], mte: boolean): ElfNote[] {
  const notes: ElfNote[] = [];
  let thread = -1;
  for (const note of kept) {
    if (note.name === 'CORE' && note.type === NT_PRSTATUS) thread++;
    const vcpu = thread >= 0 ? vcpus[thread] : undefined;
    if (note.name === 'CORE' && note.type === NT_PRSTATUS && vcpu && note.desc.length >= PRSTATUS_SIZE) {
      const desc = Buffer.from(note.desc);
      const regs = prstatusDesc(vcpu);
      desc.set(regs.subarray(PRSTATUS_REGS_OFFSET, PRSTATUS_FPVALID_OFFSET), PRSTATUS_REGS_OFFSET);
      notes.push({ ...note, desc });
    } else if (note.name === 'CORE' && note.type === NT_FPREGSET && vcpu && note.desc.length >= FPREGSET_SIZE) {
      notes.push({ ...note, desc: Buffer.concat([fpregsetDesc(vcpu), note.desc.subarray(FPREGSET_SIZE)]) });
    } else if (note.type === NT_AUXV && mte) {
      notes.push({ ...note, desc: auxvWithMte(note.desc) });
    } else notes.push(note);
  }
  for (const vcpu of vcpus.slice(thread + 1)) {
    notes.push({ name: 'CORE', type: NT_PRSTATUS, desc: prstatusDesc(vcpu) });
    notes.push({ name: 'CORE', type: NT_FPREGSET, desc: fpregsetDesc(vcpu) });
  }
  return notes;
}

function slice(desc: Uint8Array, offset: number, size: number): Uint8Array {
  return Uint8Array.from(desc.subarray(offset, offset + size));
}

/**
 * vCPU states from PRSTATUS notes (one per thread, in file order) and the
 * FPREGSET that follows each. Ids are 0, 1, ... in that order.
 */
export function vcpusFromNotes(notes: readonly ElfNote[]): VcpuState[] {
  const vcpus: { id: number; registers: RegisterValue[] }[] = [];
  for (const note of notes) {
    if (note.type === NT_PRSTATUS && note.desc.length >= PRSTATUS_REGS_OFFSET + PRSTATUS_REGISTER_IDS.length * 8) {
      const registers = PRSTATUS_REGISTER_IDS.map((id, i) => ({ id, value: slice(note.desc, PRSTATUS_REGS_OFFSET + i * 8, 8) }));
      vcpus.push({ id: vcpus.length, registers });
    } else if (note.type === NT_FPREGSET && note.desc.length >= FPREGSET_SIZE && vcpus.length && note.name === 'CORE') {
      const current = vcpus[vcpus.length - 1];
      for (const [i, id] of VREG_IDS.entries()) current.registers.push({ id, value: slice(note.desc, i * 16, 16) });
      current.registers.push({ id: FPSR_ID, value: slice(note.desc, FPSR_OFFSET, 4) });
      current.registers.push({ id: FPCR_ID, value: slice(note.desc, FPCR_OFFSET, 4) });
    }
  }
  return vcpus;
}

/** AT_HWCAP2 from an NT_AUXV note, or null. */
export function hwcap2FromNotes(notes: readonly ElfNote[]): bigint | null {
  const auxv = notes.find((n) => n.type === NT_AUXV);
  if (!auxv) return null;
  const view = Buffer.from(auxv.desc.buffer, auxv.desc.byteOffset, auxv.desc.length);
  for (let at = 0; at + 16 <= view.length; at += 16) {
    if (view.readBigUInt64LE(at) === AT_HWCAP2) return view.readBigUInt64LE(at + 8);
  }
  return null;
}
