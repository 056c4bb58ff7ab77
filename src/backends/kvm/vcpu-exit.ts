/**
 * Why KVM_RUN returned: struct kvm_run's exit_reason and, for the exits the
 * VMM handles, the union member that goes with it.
 */
import { KVM_EXIT_REASON, KVM_RUN_EXIT_UNION_OFFSET, KVM_RUN_STRUCT } from './kvm-abi.js';

export interface MmioExit {
  readonly reason: 'mmio';
  /** The IPA the guest accessed (an address with no memslot). */
  readonly address: bigint;
  readonly isWrite: boolean;
  /** 1, 2, 4 or 8 bytes. */
  readonly length: number;
  /** For a write, the value the guest stored, zero-extended. */
  readonly value: bigint;
}

export interface SystemEventExit {
  readonly reason: 'system-event';
  /** KVM_SYSTEM_EVENT_SHUTDOWN (1), _RESET (2), _CRASH (3), ... */
  readonly type: number;
}

export interface OtherExit {
  readonly reason: 'other';
  readonly exitReason: number;
  readonly name: string;
}

export type VcpuExit = MmioExit | SystemEventExit | OtherExit;

const NAME_BY_CODE = new Map<number, string>(Object.entries(KVM_EXIT_REASON).map(([name, code]) => [code, `KVM_EXIT_${name}`]));

/** Decodes the exit from the vCPU's shared kvm_run page. */
export function decodeExit(run: Uint8Array): VcpuExit {
  const page = Buffer.from(run.buffer, run.byteOffset, run.byteLength);
  const exitReason = Number(KVM_RUN_STRUCT.read(page, 'exit_reason'));
  if (exitReason === KVM_EXIT_REASON.MMIO) {
    const length = Number(KVM_RUN_STRUCT.read(page, 'mmio_len'));
    let value = 0n;
    for (let i = length - 1; i >= 0; i--) value = (value << 8n) | KVM_RUN_STRUCT.read(page, 'mmio_data', i);
    return {
      reason: 'mmio',
      address: KVM_RUN_STRUCT.read(page, 'mmio_phys_addr'),
      isWrite: KVM_RUN_STRUCT.read(page, 'mmio_is_write') !== 0n,
      length,
      value,
    };
  }
  if (exitReason === KVM_EXIT_REASON.SYSTEM_EVENT) {
    // struct { __u32 type; ... } system_event, at the start of the union.
    return { reason: 'system-event', type: page.readUInt32LE(KVM_RUN_EXIT_UNION_OFFSET) };
  }
  return { reason: 'other', exitReason, name: NAME_BY_CODE.get(exitReason) ?? `exit reason ${exitReason}` };
}

/** Fills the data an MMIO read returns to the guest on the next KVM_RUN. */
export function encodeMmioReadValue(run: Uint8Array, value: bigint): void {
  const page = Buffer.from(run.buffer, run.byteOffset, run.byteLength);
  for (let i = 0; i < 8; i++) KVM_RUN_STRUCT.write(page, 'mmio_data', (value >> BigInt(8 * i)) & 0xffn, i);
}

export function setImmediateExit(run: Uint8Array, enabled: boolean): void {
  const page = Buffer.from(run.buffer, run.byteOffset, run.byteLength);
  KVM_RUN_STRUCT.write(page, 'immediate_exit', enabled ? 1 : 0);
}
