/**
 * The ELF facts an AArch64 Linux core file is made of (include/uapi/linux/elf.h,
 * arch/arm64 elfcore.c, GDB 13's aarch64-linux-tdep.c).
 *
 *   +------------------+ 0
 *   | ELF header       | 64 bytes, ET_CORE, EM_AARCH64
 *   +------------------+ 64
 *   | program headers  | PT_NOTE, PT_LOAD per region, PT_AARCH64_MEMTAG_MTE per MTE region
 *   +------------------+
 *   | notes            | PRSTATUS/FPREGSET per vCPU, PRPSINFO, SIGINFO, AUXV, VMSNAP
 *   +------------------+ page aligned
 *   | PT_LOAD data     | one per region, zero pages left as holes (sparse file)
 *   +------------------+
 *   | memtag data      | two tags per byte, low nibble first
 *   +------------------+
 *   | section header 0 | only with PN_XNUM: holds the real program header count
 *   +------------------+
 */

export const ELF_HEADER_SIZE = 64;
/** End of e_ident (16 bytes: magic, class, data, version, OS ABI, padding). */
export const EI_PAD_END = 16;
export const PROGRAM_HEADER_SIZE = 56;
export const SECTION_HEADER_SIZE = 64;

export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const ET_CORE = 4;
export const EM_AARCH64 = 183;

export const PT_LOAD = 1;
export const PT_NOTE = 4;
/** PT_LOPROC + 2. Early 5.18 trees used PT_LOPROC + 1; only this value is right. */
export const PT_AARCH64_MEMTAG_MTE = 0x70000002;

export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;

/** e_phnum value meaning "the count is in section header 0's sh_info". */
export const PN_XNUM = 0xffff;

export const NT_PRSTATUS = 1;
export const NT_FPREGSET = 2;
export const NT_PRPSINFO = 3;
export const NT_AUXV = 6;
export const NT_SIGINFO = 0x53494749;
/** "FILE": the file-backed mappings (start, end, page offset, path). */
export const NT_FILE = 0x46494c45;
/** arm64 regset notes (name "LINUX"), one per thread after its NT_PRSTATUS. */
export const NT_ARM_TLS = 0x401;
export const NT_ARM_PAC_MASK = 0x406;
export const NT_ARM_TAGGED_ADDR_CTRL = 0x409;
export const NT_ARM_PAC_ENABLED_KEYS = 0x40a;

export const PRSTATUS_SIZE = 392;
/** Where pr_pid, pr_reg and pr_fpvalid sit in struct elf_prstatus (arm64). */
export const PRSTATUS_PID_OFFSET = 32;
export const PRSTATUS_REGS_OFFSET = 112;
export const PRSTATUS_FPVALID_OFFSET = 384;
/** pr_cursig: the signal that killed the process (a short); GDB's "Program terminated with signal". */
export const PRSTATUS_CURSIG_OFFSET = 12;
export const PRPSINFO_SIZE = 136;
export const FPREGSET_SIZE = 528;
export const SIGINFO_SIZE = 128;

export const AT_NULL = 0n;
export const AT_PAGESZ = 6n;
export const AT_HWCAP = 16n;
export const AT_HWCAP2 = 26n;
export const HWCAP_FP = 1n << 0n;
export const HWCAP_ASIMD = 1n << 1n;
/** GDB 13 shows tags from a core only when AT_HWCAP2 has this bit. */
export const HWCAP2_MTE = 1n << 18n;

/** Tag bytes per guest byte in a memtag segment: 2 tags per byte, 16 bytes per tag. */
export const GUEST_BYTES_PER_TAG_BYTE = 32;

/** Notes larger than this are refused on read: a corrupt size must not allocate gigabytes. */
export const MAX_NOTES_BYTES = 64 * 1024 * 1024;

/** Annotation of a snapshot imported from a Linux core: {region name: p_filesz} of the loads whose file held less than memory. */
export const CORE_FILE_SIZES_ANNOTATION = 'core-file-sizes';
