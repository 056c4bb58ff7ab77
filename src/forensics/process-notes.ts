/**
 * The notes of a Linux process core that say what happened to the process:
 * the signal and its siginfo (for an MTE fault: SEGV_MTESERR and the tagged
 * address that faulted), the process (NT_PRPSINFO), the file mappings
 * (NT_FILE), the auxiliary vector and, per thread, TLS, tagged-address
 * control and the pointer-authentication masks and keys.
 *
 * `import core` keeps a Linux core's notes as they were, in a blob of ELF
 * note records (PROCESS_NOTES_BLOB), so that `export core` writes them back
 * and GDB reports the fault on the exported core as on the original. This
 * file decodes them, by the layouts of include/uapi/linux/elf.h, the arm64
 * elfcore and signal headers, for `show` and `info`.
 */

import {
  AT_HWCAP2,
  HWCAP2_MTE,
  NT_ARM_PAC_ENABLED_KEYS,
  NT_ARM_PAC_MASK,
  NT_ARM_TAGGED_ADDR_CTRL,
  NT_ARM_TLS,
  NT_AUXV,
  NT_FILE,
  NT_FPREGSET,
  NT_PRPSINFO,
  NT_PRSTATUS,
  NT_SIGINFO,
  PRSTATUS_CURSIG_OFFSET,
  PRSTATUS_PID_OFFSET,
} from './elf-constants.js';
import type { ElfNote } from './elf-notes.js';

/** The blob in which `import core` keeps a Linux core's notes: ELF note records, in the core's order. */
export const PROCESS_NOTES_BLOB = 'linux-core.notes';

/** Linux signal numbers on arm64 (asm-generic/signal.h). */
// biome-ignore format: a table
const SIGNAL_NAMES: Record<number, string> = {
  1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 5: 'SIGTRAP', 6: 'SIGABRT', 7: 'SIGBUS', 8: 'SIGFPE',
  9: 'SIGKILL', 10: 'SIGUSR1', 11: 'SIGSEGV', 12: 'SIGUSR2', 13: 'SIGPIPE', 14: 'SIGALRM', 15: 'SIGTERM',
  16: 'SIGSTKFLT', 17: 'SIGCHLD', 18: 'SIGCONT', 19: 'SIGSTOP', 20: 'SIGTSTP', 21: 'SIGTTIN', 22: 'SIGTTOU',
  23: 'SIGURG', 24: 'SIGXCPU', 25: 'SIGXFSZ', 26: 'SIGVTALRM', 27: 'SIGPROF', 28: 'SIGWINCH', 29: 'SIGIO',
  30: 'SIGPWR', 31: 'SIGSYS',
};

const SIGILL = 4;
const SIGTRAP = 5;
const SIGBUS = 7;
const SIGFPE = 8;
const SIGSEGV = 11;
/** si_code values whose meaning depends on the signal (uapi asm-generic/siginfo.h). */
// biome-ignore format: a table
const SIGNAL_CODES: Record<number, readonly string[]> = {
  [SIGSEGV]: ['', 'SEGV_MAPERR', 'SEGV_ACCERR', 'SEGV_BNDERR', 'SEGV_PKUERR', 'SEGV_ACCADI', 'SEGV_ADIDERR', 'SEGV_ADIPERR',
    'SEGV_MTEAERR', 'SEGV_MTESERR', 'SEGV_CPERR'],
  [SIGBUS]: ['', 'BUS_ADRALN', 'BUS_ADRERR', 'BUS_OBJERR', 'BUS_MCEERR_AR', 'BUS_MCEERR_AO'],
  [SIGILL]: ['', 'ILL_ILLOPC', 'ILL_ILLOPN', 'ILL_ILLADR', 'ILL_ILLTRP', 'ILL_PRVOPC', 'ILL_PRVREG', 'ILL_COPROC', 'ILL_BADSTK',
    'ILL_BADIADDR'],
  [SIGFPE]: ['', 'FPE_INTDIV', 'FPE_INTOVF', 'FPE_FLTDIV', 'FPE_FLTOVF', 'FPE_FLTUND', 'FPE_FLTRES', 'FPE_FLTINV', 'FPE_FLTSUB',
    'FPE_FLTUNK', 'FPE_CONDTRAP'],
  [SIGTRAP]: ['', 'TRAP_BRKPT', 'TRAP_TRACE', 'TRAP_BRANCH', 'TRAP_HWBKPT', 'TRAP_UNK', 'TRAP_PERF'],
};
/** si_code values every signal shares: who sent it. */
// biome-ignore format: a table
const GENERIC_CODES: Record<number, string> = {
  0: 'SI_USER', 128: 'SI_KERNEL', [-1]: 'SI_QUEUE', [-2]: 'SI_TIMER', [-3]: 'SI_MESGQ', [-4]: 'SI_ASYNCIO', [-5]: 'SI_SIGIO',
  [-6]: 'SI_TKILL',
};
/** Signals whose siginfo carries a fault address (si_addr, the _sigfault member). */
const FAULT_SIGNALS = new Set([SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP]);
const SEGV_MTEAERR = 8;
const SEGV_MTESERR = 9;

/** Auxiliary vector keys (uapi linux/auxvec.h, arm64 asm/auxvec.h). */
// biome-ignore format: a table
const AUXV_NAMES: Record<number, string> = {
  0: 'AT_NULL', 1: 'AT_IGNORE', 2: 'AT_EXECFD', 3: 'AT_PHDR', 4: 'AT_PHENT', 5: 'AT_PHNUM', 6: 'AT_PAGESZ', 7: 'AT_BASE',
  8: 'AT_FLAGS', 9: 'AT_ENTRY', 10: 'AT_NOTELF', 11: 'AT_UID', 12: 'AT_EUID', 13: 'AT_GID', 14: 'AT_EGID', 15: 'AT_PLATFORM',
  16: 'AT_HWCAP', 17: 'AT_CLKTCK', 23: 'AT_SECURE', 24: 'AT_BASE_PLATFORM', 25: 'AT_RANDOM', 26: 'AT_HWCAP2',
  27: 'AT_RSEQ_FEATURE_SIZE', 28: 'AT_RSEQ_ALIGN', 29: 'AT_HWCAP3', 30: 'AT_HWCAP4', 31: 'AT_EXECFN', 33: 'AT_SYSINFO_EHDR',
  51: 'AT_MINSIGSTKSZ',
};

/** prctl(PR_SET_TAGGED_ADDR_CTRL) bits (uapi linux/prctl.h). */
const PR_TAGGED_ADDR_ENABLE = 1n << 0n;
const PR_MTE_TCF_SYNC = 1n << 1n;
const PR_MTE_TCF_ASYNC = 1n << 2n;
const PR_MTE_TAG_SHIFT = 3n;
const PR_MTE_TAG_MASK = 0xffffn;
/** prctl(PR_PAC_SET_ENABLED_KEYS) bits, in order. */
const PAC_KEYS = ['APIAKEY', 'APIBKEY', 'APDAKEY', 'APDBKEY', 'APGAKEY'] as const;

export interface ProcessInfo {
  /** pr_fname: the command name (at most 15 characters). */
  readonly name: string;
  /** pr_psargs: the start of the command line (at most 79 characters). */
  readonly args: string;
  readonly pid: number;
  readonly ppid: number;
  readonly uid: number;
  readonly gid: number;
  /** pr_sname: R, S, D, ... */
  readonly state: string;
}

export interface SignalInfo {
  readonly number: number;
  readonly name: string;
  readonly code: number;
  readonly codeName: string;
  readonly errno: number;
  /** si_addr for a fault signal, with its top byte (so an MTE fault keeps the pointer's logical tag); else null. */
  readonly faultAddress: bigint | null;
  /** Bits 59:56 of the fault address: the pointer's logical tag, for an MTE tag check fault. */
  readonly logicalTag: number | null;
  /** A synchronous (SEGV_MTESERR) or asynchronous (SEGV_MTEAERR, no precise address) MTE tag check fault. */
  readonly tagCheckFault: 'sync' | 'async' | null;
}

export interface TaggedAddrCtrl {
  readonly raw: bigint;
  /** PR_TAGGED_ADDR_ENABLE: the process may pass tagged pointers to the kernel. */
  readonly taggedAddresses: boolean;
  /** The tag check fault mode: none (tags unchecked), sync, async, or sync+async (the CPU's preferred, asymmetric where it has it). */
  readonly tcf: 'none' | 'sync' | 'async' | 'sync+async';
  /** PR_MTE_TAG_MASK: the tags IRG may generate (bit N = tag N included). */
  readonly tagIncludeMask: number;
  readonly includedTags: number[];
}

export interface ThreadNotes {
  /** pr_pid of the thread's NT_PRSTATUS (its LWP). */
  readonly pid: number;
  /** pr_cursig: the signal the thread was handling. */
  readonly currentSignal: number;
  /** NT_ARM_TLS: TPIDR_EL0 (and TPIDR2_EL0 on a CPU with SME). */
  readonly tls: bigint | null;
  readonly tpidr2: bigint | null;
  readonly taggedAddrCtrl: TaggedAddrCtrl | null;
  /** NT_ARM_PAC_MASK: the bits of a data and of an instruction pointer that hold its PAC. */
  readonly pacMask: { data: bigint; insn: bigint } | null;
  /** NT_ARM_PAC_ENABLED_KEYS: the enabled keys, by name. */
  readonly pacEnabledKeys: { raw: bigint; keys: string[] } | null;
}

export interface FileMapping {
  readonly start: bigint;
  readonly end: bigint;
  /** Offset in the file in bytes (NT_FILE gives pages of its page_size). */
  readonly fileOffset: bigint;
  readonly path: string;
}

export interface AuxvEntry {
  readonly key: number;
  readonly name: string;
  readonly value: bigint;
}

export interface ProcessNotes {
  readonly process: ProcessInfo | null;
  readonly signal: SignalInfo | null;
  readonly threads: ThreadNotes[];
  readonly auxv: AuxvEntry[];
  /** AT_HWCAP2 has HWCAP2_MTE: the process ran on a CPU with MTE (and GDB shows tags only then). */
  readonly mteCapable: boolean;
  readonly mappings: FileMapping[];
  /** Notes this decoder does not know, by name, type and size: kept and exported all the same. */
  readonly otherNotes: { name: string; type: number; bytes: number }[];
}

function view(desc: Uint8Array): Buffer {
  return Buffer.from(desc.buffer, desc.byteOffset, desc.length);
}

function cString(desc: Uint8Array, offset: number, size: number): string {
  const bytes = desc.subarray(offset, offset + size);
  const end = bytes.indexOf(0);
  return Buffer.from(end < 0 ? bytes : bytes.subarray(0, end)).toString('latin1');
}

export function signalName(signal: number): string {
  return SIGNAL_NAMES[signal] ?? `signal ${signal}`;
}

export function signalCodeName(signal: number, code: number): string {
  const specific = code > 0 && code < 0x80 ? SIGNAL_CODES[signal]?.[code] : undefined;
  return specific || GENERIC_CODES[code] || `si_code ${code}`;
}

/** struct elf_prpsinfo (136 bytes on arm64): state, name and arguments, ids. */
function decodePrpsinfo(desc: Uint8Array): ProcessInfo | null {
  if (desc.length < 136) return null;
  const v = view(desc);
  return {
    state: String.fromCharCode(v[1]).replace('\0', ''),
    uid: v.readUInt32LE(16),
    gid: v.readUInt32LE(20),
    pid: v.readInt32LE(24),
    ppid: v.readInt32LE(28),
    name: cString(desc, 40, 16),
    args: cString(desc, 56, 80).trimEnd(),
  };
}

/** The user siginfo_t (128 bytes): si_signo, si_errno, si_code, then the union (si_addr first for faults). */
export function decodeSiginfo(desc: Uint8Array): SignalInfo | null {
  if (desc.length < 24) return null;
  const v = view(desc);
  const number = v.readInt32LE(0);
  if (number === 0) return null;
  const code = v.readInt32LE(8);
  const faultAddress = FAULT_SIGNALS.has(number) && code > 0 ? v.readBigUInt64LE(16) : null;
  const tagCheckFault = number === SIGSEGV ? (code === SEGV_MTESERR ? 'sync' : code === SEGV_MTEAERR ? 'async' : null) : null;
  return {
    number,
    name: signalName(number),
    code,
    codeName: signalCodeName(number, code),
    errno: v.readInt32LE(4),
    faultAddress,
    logicalTag: faultAddress === null ? null : Number((faultAddress >> 56n) & 0xfn),
    tagCheckFault,
  };
}

export function decodeTaggedAddrCtrl(raw: bigint): TaggedAddrCtrl {
  const sync = (raw & PR_MTE_TCF_SYNC) !== 0n;
  const async = (raw & PR_MTE_TCF_ASYNC) !== 0n;
  const tagIncludeMask = Number((raw >> PR_MTE_TAG_SHIFT) & PR_MTE_TAG_MASK);
  return {
    raw,
    taggedAddresses: (raw & PR_TAGGED_ADDR_ENABLE) !== 0n,
    tcf: sync && async ? 'sync+async' : sync ? 'sync' : async ? 'async' : 'none',
    tagIncludeMask,
    includedTags: Array.from({ length: 16 }, (_, tag) => tag).filter((tag) => (tagIncludeMask >> tag) & 1),
  };
}

function u64(desc: Uint8Array, offset: number): bigint | null {
  return desc.length >= offset + 8 ? view(desc).readBigUInt64LE(offset) : null;
}

/** NT_FILE: count, page_size, count x (start, end, page offset), then count NUL-terminated paths. */
export function decodeFileNote(desc: Uint8Array): FileMapping[] {
  const v = view(desc);
  if (v.length < 16) return [];
  const count = v.readBigUInt64LE(0);
  const pageSize = v.readBigUInt64LE(8);
  const namesAt = 16 + Number(count) * 24;
  if (count > BigInt(v.length) || namesAt > v.length) return [];
  const paths = v.toString('latin1', namesAt).split('\0');
  return Array.from({ length: Number(count) }, (_, i) => ({
    start: v.readBigUInt64LE(16 + i * 24),
    end: v.readBigUInt64LE(24 + i * 24),
    fileOffset: v.readBigUInt64LE(32 + i * 24) * pageSize,
    path: paths[i] ?? '',
  }));
}

export function decodeAuxv(desc: Uint8Array): AuxvEntry[] {
  const v = view(desc);
  const out: AuxvEntry[] = [];
  for (let at = 0; at + 16 <= v.length; at += 16) {
    const key = Number(v.readBigUInt64LE(at));
    out.push({ key, name: AUXV_NAMES[key] ?? `AT_${key}`, value: v.readBigUInt64LE(at + 8) });
    if (key === 0) break;
  }
  return out;
}

function newThread(prstatus: Uint8Array): ThreadNotes {
  const v = view(prstatus);
  return {
    pid: prstatus.length >= 36 ? v.readInt32LE(PRSTATUS_PID_OFFSET) : 0,
    currentSignal: prstatus.length >= 14 ? v.readInt16LE(PRSTATUS_CURSIG_OFFSET) : 0,
    tls: null,
    tpidr2: null,
    taggedAddrCtrl: null,
    pacMask: null,
    pacEnabledKeys: null,
  };
}

/** Applies one per-thread arm64 regset note to its thread; false when the note is not one of them. */
function threadNote(thread: { -readonly [K in keyof ThreadNotes]: ThreadNotes[K] }, note: ElfNote): boolean {
  switch (note.type) {
    case NT_ARM_TLS:
      thread.tls = u64(note.desc, 0);
      thread.tpidr2 = u64(note.desc, 8);
      return true;
    case NT_ARM_TAGGED_ADDR_CTRL: {
      const raw = u64(note.desc, 0);
      thread.taggedAddrCtrl = raw === null ? null : decodeTaggedAddrCtrl(raw);
      return true;
    }
    case NT_ARM_PAC_MASK: {
      const [data, insn] = [u64(note.desc, 0), u64(note.desc, 8)];
      thread.pacMask = data === null || insn === null ? null : { data, insn };
      return true;
    }
    case NT_ARM_PAC_ENABLED_KEYS: {
      const raw = u64(note.desc, 0);
      thread.pacEnabledKeys = raw === null ? null : { raw, keys: PAC_KEYS.filter((_, bit) => (raw >> BigInt(bit)) & 1n) };
      return true;
    }
    default:
      return false;
  }
}

/**
 * Decodes a Linux core's notes. Per-thread notes belong to the NT_PRSTATUS
 * before them (the kernel writes each thread's notes after its PRSTATUS; the
 * first thread is the one that took the signal). Malformed or short notes
 * decode to null fields rather than failing: this is a report, and the notes
 * are kept as they were whatever it says.
 */
export function decodeProcessNotes(notes: readonly ElfNote[]): ProcessNotes {
  const threads: ThreadNotes[] = [];
  let process: ProcessInfo | null = null;
  let signal: SignalInfo | null = null;
  let auxv: AuxvEntry[] = [];
  let mappings: FileMapping[] = [];
  const otherNotes: ProcessNotes['otherNotes'] = [];
  for (const note of notes) {
    const current = threads[threads.length - 1] as { -readonly [K in keyof ThreadNotes]: ThreadNotes[K] } | undefined;
    if (note.type === NT_PRSTATUS && note.name === 'CORE') threads.push(newThread(note.desc));
    else if (note.type === NT_PRPSINFO && note.name === 'CORE') process = decodePrpsinfo(note.desc);
    else if (note.type === NT_SIGINFO) signal ??= decodeSiginfo(note.desc);
    else if (note.type === NT_AUXV) auxv = decodeAuxv(note.desc);
    else if (note.type === NT_FILE) mappings = decodeFileNote(note.desc);
    else if (note.type === NT_FPREGSET && note.name === 'CORE') continue;
    else if (!(current && note.name === 'LINUX' && threadNote(current, note)))
      otherNotes.push({ name: note.name, type: note.type, bytes: note.desc.length });
  }
  const hwcap2 = auxv.find((e) => BigInt(e.key) === AT_HWCAP2)?.value ?? 0n;
  return { process, signal, threads, auxv, mteCapable: (hwcap2 & HWCAP2_MTE) !== 0n, mappings, otherNotes };
}
