/**
 * vCPU registers as the VCPU section stores them: KVM ONE_REG ids and
 * little-endian values whose size the id encodes (spec/FORMAT.md, VCPU).
 */

/** One ONE_REG register: its KVM id and its value, little-endian, of the size the id encodes. */
export interface RegisterValue {
  readonly id: bigint;
  readonly value: Uint8Array;
}

/** A vCPU's register state as KVM_GET_REG_LIST / KVM_GET_ONE_REG give it. */
export interface VcpuState {
  readonly id: number;
  readonly registers: readonly RegisterValue[];
}

/** The bytes of a ONE_REG value: KVM_REG_SIZE_MASK (bits 52..55) holds log2 of it. */
export function registerSize(id: bigint): number {
  return 1 << Number((id >> 52n) & 0xfn);
}
