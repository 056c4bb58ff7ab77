/**
 * KVM ONE_REG ids of arm64 vCPU registers (include/uapi/linux/kvm.h and
 * arch/arm64/include/uapi/asm/kvm.h), shared by the simulated and the real
 * KVM backend so both list, name and size registers the same way.
 *
 *   63..56 arch (KVM_REG_ARM64)   55..52 log2(size)   31..16 coproc group   15..0 index
 *
 * Core registers (group 0x0010) are indexed by their offset in
 * `struct kvm_regs` counted in 32-bit words; system registers (group 0x0013)
 * pack op0/op1/CRn/CRm/op2 the way MRS/MSR encode them.
 */

export const KVM_REG_ARM64 = 0x6000000000000000n;
export const KVM_REG_SIZE_U32 = 0x0020000000000000n;
export const KVM_REG_SIZE_U64 = 0x0030000000000000n;
export const KVM_REG_SIZE_U128 = 0x0040000000000000n;

const COPROC_SHIFT = 16n;
export const KVM_REG_ARM_COPROC_MASK = 0x0fff0000n;
export const KVM_REG_ARM_CORE = 0x0010n << COPROC_SHIFT;
export const KVM_REG_ARM64_SYSREG = 0x0013n << COPROC_SHIFT;
/** Firmware pseudo-registers (PSCI version and friends). */
export const KVM_REG_ARM_FW = 0x0014n << COPROC_SHIFT;

export type RegisterBits = 32 | 64 | 128;

const SIZE_FIELD: Record<RegisterBits, bigint> = {
  32: KVM_REG_SIZE_U32,
  64: KVM_REG_SIZE_U64,
  128: KVM_REG_SIZE_U128,
};

/*
 * struct kvm_regs: user_pt_regs { x0..x30, sp, pc, pstate } at 0..271, then
 * sp_el1, elr_el1, spsr[5], then user_fpsimd_state (16-byte aligned, so 336):
 * vregs[32] (128-bit), fpsr, fpcr.
 */
const CORE_OFFSET = {
  x0: 0,
  sp: 31 * 8,
  pc: 32 * 8,
  pstate: 33 * 8,
  spEl1: 34 * 8,
  elrEl1: 35 * 8,
  spsr0: 36 * 8,
  v0: 336,
  fpsr: 336 + 32 * 16,
  fpcr: 336 + 32 * 16 + 4,
} as const;
const KVM_NR_SPSR = 5;

/** KVM_REG_ARM_CORE_REG: the id of the core register at `offsetBytes` in struct kvm_regs. */
export function coreRegisterId(offsetBytes: number, bits: RegisterBits): bigint {
  if (offsetBytes % 4 !== 0) throw new RangeError(`core register offset ${offsetBytes} is not a multiple of 4`);
  return KVM_REG_ARM64 | SIZE_FIELD[bits] | KVM_REG_ARM_CORE | BigInt(offsetBytes / 4);
}

export function xRegisterId(n: number): bigint {
  checkIndex('x', n, 31);
  return coreRegisterId(CORE_OFFSET.x0 + n * 8, 64);
}
export function vRegisterId(n: number): bigint {
  checkIndex('v', n, 32);
  return coreRegisterId(CORE_OFFSET.v0 + n * 16, 128);
}
export function spsrRegisterId(n: number): bigint {
  checkIndex('spsr', n, KVM_NR_SPSR);
  return coreRegisterId(CORE_OFFSET.spsr0 + n * 8, 64);
}
export const SP_ID = coreRegisterId(CORE_OFFSET.sp, 64);
export const PC_ID = coreRegisterId(CORE_OFFSET.pc, 64);
export const PSTATE_ID = coreRegisterId(CORE_OFFSET.pstate, 64);
export const SP_EL1_ID = coreRegisterId(CORE_OFFSET.spEl1, 64);
export const ELR_EL1_ID = coreRegisterId(CORE_OFFSET.elrEl1, 64);
export const FPSR_ID = coreRegisterId(CORE_OFFSET.fpsr, 32);
export const FPCR_ID = coreRegisterId(CORE_OFFSET.fpcr, 32);

function checkIndex(kind: string, n: number, count: number): void {
  if (!Number.isInteger(n) || n < 0 || n >= count) throw new RangeError(`${kind}${n}: index must be 0..${count - 1}`);
}

/** A system register's MRS/MSR encoding. */
export interface SysRegEncoding {
  readonly op0: number;
  readonly op1: number;
  readonly crn: number;
  readonly crm: number;
  readonly op2: number;
}

/** ARM64_SYS_REG(op0, op1, crn, crm, op2): always 64 bits wide. */
export function sysRegisterId({ op0, op1, crn, crm, op2 }: SysRegEncoding): bigint {
  const index = (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2;
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | BigInt(index);
}

/** The encoding inside a system-register id, or null for any other id. */
export function decodeSysRegisterId(id: bigint): SysRegEncoding | null {
  if ((id & KVM_REG_ARM_COPROC_MASK) !== KVM_REG_ARM64_SYSREG) return null;
  const index = Number(id & 0xffffn);
  return {
    op0: (index >> 14) & 0x3,
    op1: (index >> 11) & 0x7,
    crn: (index >> 7) & 0xf,
    crm: (index >> 3) & 0xf,
    op2: index & 0x7,
  };
}

function enc(op0: number, op1: number, crn: number, crm: number, op2: number): SysRegEncoding {
  return { op0, op1, crn, crm, op2 };
}

/**
 * System registers a KVM arm64 vCPU lists, among them the MTE ones (GCR_EL1,
 * RGSR_EL1, TFSR_EL1, TFSRE0_EL1) that a snapshot of an MTE guest must keep.
 */
export const SYS_REGS = {
  MIDR_EL1: enc(3, 0, 0, 0, 0),
  MPIDR_EL1: enc(3, 0, 0, 0, 5),
  SCTLR_EL1: enc(3, 0, 1, 0, 0),
  ACTLR_EL1: enc(3, 0, 1, 0, 1),
  CPACR_EL1: enc(3, 0, 1, 0, 2),
  RGSR_EL1: enc(3, 0, 1, 0, 5),
  GCR_EL1: enc(3, 0, 1, 0, 6),
  TTBR0_EL1: enc(3, 0, 2, 0, 0),
  TTBR1_EL1: enc(3, 0, 2, 0, 1),
  TCR_EL1: enc(3, 0, 2, 0, 2),
  AFSR0_EL1: enc(3, 0, 5, 1, 0),
  AFSR1_EL1: enc(3, 0, 5, 1, 1),
  ESR_EL1: enc(3, 0, 5, 2, 0),
  TFSR_EL1: enc(3, 0, 5, 6, 0),
  TFSRE0_EL1: enc(3, 0, 5, 6, 1),
  FAR_EL1: enc(3, 0, 6, 0, 0),
  PAR_EL1: enc(3, 0, 7, 4, 0),
  MAIR_EL1: enc(3, 0, 10, 2, 0),
  AMAIR_EL1: enc(3, 0, 10, 3, 0),
  VBAR_EL1: enc(3, 0, 12, 0, 0),
  CONTEXTIDR_EL1: enc(3, 0, 13, 0, 1),
  TPIDR_EL1: enc(3, 0, 13, 0, 4),
  CNTKCTL_EL1: enc(3, 0, 14, 1, 0),
  CSSELR_EL1: enc(3, 2, 0, 0, 0),
  TPIDR_EL0: enc(3, 3, 13, 0, 2),
  TPIDRRO_EL0: enc(3, 3, 13, 0, 3),
  // KVM's timer ids: KVM_REG_ARM_TIMER_CNT and _CVAL swap the architectural
  // CNTVCT/CNTV_CVAL encodings, a historical ABI accident that must be kept.
  KVM_REG_ARM_TIMER_CTL: enc(3, 3, 14, 3, 1),
  KVM_REG_ARM_TIMER_CNT: enc(3, 3, 14, 3, 2),
  KVM_REG_ARM_TIMER_CVAL: enc(3, 3, 14, 0, 2),
} as const;
export type SysRegName = keyof typeof SYS_REGS;

export function namedSysRegisterId(name: SysRegName): bigint {
  return sysRegisterId(SYS_REGS[name]);
}

/** KVM_REG_ARM_PSCI_VERSION, the firmware register every vCPU lists. */
export const PSCI_VERSION_ID = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_FW | 0n;

/** The MTE system registers by id, for callers that check a snapshot carries them. */
export const MTE_SYS_REGISTER_IDS: readonly bigint[] = (['GCR_EL1', 'RGSR_EL1', 'TFSR_EL1', 'TFSRE0_EL1'] as const).map(namedSysRegisterId);

/** The register list of a KVM arm64 vCPU, in KVM_GET_REG_LIST order (core, firmware, system registers by id). */
export function arm64RegisterList(): bigint[] {
  const core: bigint[] = [];
  for (let n = 0; n < 31; n++) core.push(xRegisterId(n));
  core.push(SP_ID, PC_ID, PSTATE_ID, SP_EL1_ID, ELR_EL1_ID);
  for (let n = 0; n < KVM_NR_SPSR; n++) core.push(spsrRegisterId(n));
  for (let n = 0; n < 32; n++) core.push(vRegisterId(n));
  core.push(FPSR_ID, FPCR_ID);
  const sys = Object.values(SYS_REGS)
    .map(sysRegisterId)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return [...core, PSCI_VERSION_ID, ...sys];
}

const CORE_NAMES = new Map<bigint, string>([
  [SP_ID, 'sp'],
  [PC_ID, 'pc'],
  [PSTATE_ID, 'pstate'],
  [SP_EL1_ID, 'sp_el1'],
  [ELR_EL1_ID, 'elr_el1'],
  [FPSR_ID, 'fpsr'],
  [FPCR_ID, 'fpcr'],
  [PSCI_VERSION_ID, 'psci_version'],
]);
for (let n = 0; n < 31; n++) CORE_NAMES.set(xRegisterId(n), `x${n}`);
for (let n = 0; n < 32; n++) CORE_NAMES.set(vRegisterId(n), `v${n}`);
for (let n = 0; n < KVM_NR_SPSR; n++) CORE_NAMES.set(spsrRegisterId(n), `spsr${n}`);
for (const [name, encoding] of Object.entries(SYS_REGS)) CORE_NAMES.set(sysRegisterId(encoding), name);

/** A readable name: "x0", "pc", "GCR_EL1", "sysreg(3,0,15,2,1)" or the id in hex. */
export function registerName(id: bigint): string {
  const known = CORE_NAMES.get(id);
  if (known) return known;
  const sys = decodeSysRegisterId(id);
  if (sys) return `sysreg(${sys.op0},${sys.op1},${sys.crn},${sys.crm},${sys.op2})`;
  return `0x${id.toString(16)}`;
}
