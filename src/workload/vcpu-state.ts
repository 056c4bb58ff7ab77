/**
 * Registers of a vCPU caught running the generated guest's kernel: PC in the
 * kernel text, SP in RAM, the MMU on with tagged memory, and the MTE system
 * registers a snapshot must carry (GCR_EL1, RGSR_EL1, TFSR_EL1, TFSRE0_EL1).
 */

import { registerSize } from '../format/registers.js';
import { namedSysRegisterId, PC_ID, PSTATE_ID, SP_EL1_ID, type SysRegName, vRegisterId, xRegisterId } from '../vm/arm64-registers.js';
import type { Vcpu } from '../vm/vm.js';
import { FrameRandom, hashKey } from './random.js';
import type { Workload } from './workload-layout.js';

function bytesOf(value: bigint, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return bytes;
}

function set(vcpu: Vcpu, id: bigint, value: bigint): void {
  vcpu.setRegister(id, bytesOf(value, registerSize(id)));
}

function random64(random: FrameRandom): bigint {
  return (BigInt(random.next()) << 32n) | BigInt(random.next());
}

const SYSTEM_STATE: Partial<Record<SysRegName, bigint>> = {
  // M, C, I, plus ATA (bit 43) and TCF=sync (bits 41:40 = 01): tag checks on at EL1.
  SCTLR_EL1: 0x0000_0a00_30d5_d99dn,
  // T0SZ = T1SZ = 16 (48-bit VA), TBI1, TCMA1: the kernel's tagged-pointer setup.
  TCR_EL1: 0x0000_0045_b551_0010n | (1n << 38n) | (1n << 58n),
  // Attr index 0 = Tagged Normal (0xf0), then device and normal non-cacheable.
  MAIR_EL1: 0x0000_0000_0044_0cf0n,
  // RRND, exclude tag 0 from IRG: what Linux programs for KASAN_HW_TAGS.
  GCR_EL1: 0x0001_0001n,
  TFSR_EL1: 0n,
  TFSRE0_EL1: 0n,
  VBAR_EL1: 0xffff_8000_0801_0800n,
  CPACR_EL1: 0x0030_0000n,
};

/** Sets a plausible running state on `vcpu`, derived from the workload seed and the vCPU id. */
export function seedVcpuRegisters(vcpu: Vcpu, workload: Workload): void {
  const random = new FrameRandom(hashKey(workload.seed, 0xc0, vcpu.id));
  const ram = workload.regions.find((r) => r.kind === 'ram');
  const ramBase = ram?.guestAddress ?? 0x4000_0000n;
  for (let n = 0; n < 31; n++)
    set(vcpu, xRegisterId(n), random.chance(30) ? BigInt(random.below(4096)) : random64(random) & 0xffff_ffff_ffffn);
  for (let n = 0; n < 32; n++) set(vcpu, vRegisterId(n), random.chance(50) ? 0n : (random64(random) << 64n) | random64(random));
  set(vcpu, PC_ID, ramBase + 0x8_0000n + BigInt(random.below(0x10_0000) * 4));
  set(vcpu, SP_EL1_ID, 0xffff_8000_8000_0000n + BigInt(vcpu.id) * 0x4000n + 0x3f00n);
  set(vcpu, PSTATE_ID, 0x3c5n);
  for (const [name, value] of Object.entries(SYSTEM_STATE) as [SysRegName, bigint][]) set(vcpu, namedSysRegisterId(name), value);
  // RGSR_EL1: SEED in bits 23:8, TAG in bits 3:0.
  set(vcpu, namedSysRegisterId('RGSR_EL1'), (BigInt(random.below(0x10000)) << 8n) | BigInt(random.below(16)));
  set(vcpu, namedSysRegisterId('TPIDR_EL1'), 0xffff_0000_7fe0_0000n + BigInt(vcpu.id) * 0x10000n);
}
