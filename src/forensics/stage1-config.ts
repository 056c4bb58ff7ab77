/**
 * The guest's stage-1 translation regime as its saved system registers set it
 * (Arm ARM D8, VMSAv8-64 at EL1&0): for each half of the address space
 * (TTBR0_EL1 for addresses with bit 55 clear, TTBR1_EL1 for bit 55 set) the
 * granule, the virtual address width, the table base, whether the top byte
 * is ignored, and how descriptors hold output addresses wider than 48 bits
 * (FEAT_LPA with 64 KiB pages, FEAT_LPA2 when TCR_EL1.DS is set).
 *
 * A snapshot of a vCPU whose MMU is off (SCTLR_EL1.M clear) has no stage-1
 * regime: virtual addresses are physical ones.
 */

import { registerName } from '../vm/arm64-registers.js';
import type { VcpuState } from '../vm/vm.js';
import { hex } from './errors.js';
import { NoPageTablesError } from './translation-errors.js';

export type Granule = 4096 | 16384 | 65536;

/** One half of the address space: its table base and translation controls. */
export interface HalfRegime {
  readonly half: 0 | 1;
  /** TTBRn_EL1 as saved. */
  readonly ttbr: bigint;
  /** Walks disabled (TCR_EL1.EPDn): every address of this half faults. */
  readonly disabled: boolean;
  readonly granule: Granule;
  /** 64 - TnSZ: bits of virtual address the tables resolve. */
  readonly vaBits: number;
  /** Top byte ignored (TCR_EL1.TBIn): bits 63:56 are a tag, not part of the address. */
  readonly topByteIgnored: boolean;
  /** Tag 0xf (for TTBR1) or 0x0 (for TTBR0) is "match all" (TCR_EL1.TCMAn). */
  readonly matchAllTag: boolean;
}

export interface Stage1Regime {
  /** SCTLR_EL1.M: stage 1 on. When false, virtual addresses are IPAs. */
  readonly mmuOn: boolean;
  readonly halves: readonly [HalfRegime, HalfRegime];
  /** Output addresses of up to 52 bits in descriptors and TTBRs (FEAT_LPA with 64 KiB, or TCR_EL1.DS). */
  readonly outputBits: 48 | 52;
  /** TCR_EL1.DS (FEAT_LPA2): OA[51:50] in descriptor bits 9:8, blocks one level higher. */
  readonly lpa2: boolean;
  readonly tcr: bigint;
}

const REGISTER_NAMES = ['TTBR0_EL1', 'TTBR1_EL1', 'TCR_EL1', 'SCTLR_EL1'] as const;

function field(value: bigint, shift: number, bits: number): number {
  return Number((value >> BigInt(shift)) & ((1n << BigInt(bits)) - 1n));
}

/** TCR_EL1.IPS encodings, in bits. */
const IPS_BITS = [32, 36, 40, 42, 44, 48, 52];

/** Reads a vCPU's translation registers by name; throws naming the register when one is missing. */
export function stage1RegimeOf(vcpu: VcpuState): Stage1Regime {
  const byName = new Map<string, bigint>();
  for (const r of vcpu.registers) {
    const name = registerName(r.id);
    if (!(REGISTER_NAMES as readonly string[]).includes(name)) continue;
    let value = 0n;
    for (let i = r.value.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(r.value[i]);
    byName.set(name, value);
  }
  const missing = REGISTER_NAMES.filter((n) => !byName.has(n));
  if (missing.length) throw new NoPageTablesError(vcpu.id, `the snapshot has no ${missing.join(', ')} for it`);
  return stage1Regime({
    ttbr0: byName.get('TTBR0_EL1')!,
    ttbr1: byName.get('TTBR1_EL1')!,
    tcr: byName.get('TCR_EL1')!,
    sctlr: byName.get('SCTLR_EL1')!,
    vcpu: vcpu.id,
  });
}

export interface Stage1Registers {
  readonly ttbr0: bigint;
  readonly ttbr1: bigint;
  readonly tcr: bigint;
  readonly sctlr: bigint;
  /** For messages. */
  readonly vcpu?: number;
}

export function stage1Regime(registers: Stage1Registers): Stage1Regime {
  const { tcr } = registers;
  const lpa2 = field(tcr, 59, 1) === 1;
  const tg0 = field(tcr, 14, 2);
  const tg1 = field(tcr, 30, 2);
  const granule0 = ({ 0: 4096, 1: 65536, 2: 16384 } as Record<number, Granule | undefined>)[tg0];
  const granule1 = ({ 1: 16384, 2: 4096, 3: 65536 } as Record<number, Granule | undefined>)[tg1];
  const vcpu = registers.vcpu ?? 0;
  if (!granule0) throw new NoPageTablesError(vcpu, `TCR_EL1 ${hex(tcr)}: TG0 = ${tg0} is a reserved granule encoding`);
  if (!granule1) throw new NoPageTablesError(vcpu, `TCR_EL1 ${hex(tcr)}: TG1 = ${tg1} is a reserved granule encoding`);
  const ips = IPS_BITS[field(tcr, 32, 3)] ?? 52;
  const outputBits = lpa2 || (ips === 52 && (granule0 === 65536 || granule1 === 65536)) ? 52 : 48;
  const half = (n: 0 | 1, granule: Granule): HalfRegime => {
    const txsz = field(tcr, n === 0 ? 0 : 16, 6);
    const minimum = granule === 65536 || lpa2 ? 12 : 16;
    if (txsz < minimum || txsz > 39) {
      throw new NoPageTablesError(
        vcpu,
        `TCR_EL1 ${hex(tcr)}: T${n}SZ = ${txsz} gives a ${64 - txsz}-bit address space; ` +
          `a ${granule / 1024} KiB granule${lpa2 ? ' with DS' : ''} allows ${64 - 39} to ${64 - minimum} bits`,
      );
    }
    return {
      half: n,
      ttbr: n === 0 ? registers.ttbr0 : registers.ttbr1,
      disabled: field(tcr, n === 0 ? 7 : 23, 1) === 1,
      granule,
      vaBits: 64 - txsz,
      topByteIgnored: field(tcr, n === 0 ? 37 : 38, 1) === 1,
      matchAllTag: field(tcr, n === 0 ? 57 : 58, 1) === 1,
    };
  };
  return {
    mmuOn: (registers.sctlr & 1n) === 1n,
    halves: [half(0, granule0), half(1, granule1)],
    outputBits,
    lpa2,
    tcr,
  };
}

/** log2 of the granule. */
export function granuleShift(granule: Granule): number {
  return granule === 4096 ? 12 : granule === 16384 ? 14 : 16;
}

/** The level of the first lookup: 0 for a 48-bit 4 KiB regime, -1 for a 52-bit one, 1 for 64 KiB at 42 bits. */
export function startLevel(half: HalfRegime): number {
  const shift = granuleShift(half.granule);
  const perLevel = shift - 3;
  return 4 - Math.ceil((half.vaBits - shift) / perLevel);
}

/** Whether a block descriptor is allowed at `level` (Arm ARM D8.2: block sizes per granule). */
export function blockAllowed(regime: Stage1Regime, granule: Granule, level: number): boolean {
  if (granule === 4096) return level === 1 || level === 2 || (level === 0 && regime.lpa2);
  if (granule === 16384) return level === 2 || (level === 1 && regime.lpa2);
  return level === 2 || (level === 1 && regime.outputBits === 52);
}
