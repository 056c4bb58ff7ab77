/**
 * A vCPU of the kernel model: the register file KVM_GET_REG_LIST lists,
 * reset as KVM_ARM_VCPU_INIT leaves it, read and written through ONE_REG ids.
 */

import { registerSize } from '../format/registers.js';
import { arm64RegisterList, namedSysRegisterId, PSCI_VERSION_ID, PSTATE_ID, registerName } from '../vm/arm64-registers.js';
import { type Vcpu, VmErrnoError } from '../vm/vm.js';

/** EL1h with D, A, I and F masked: the PSTATE a vCPU starts with after KVM_ARM_VCPU_INIT. */
const RESET_PSTATE = 0x3c5n;
/** SCTLR_EL1's RES1 bits with the MMU off. */
const RESET_SCTLR_EL1 = 0x0000_0000_00c5_0838n;
/** An Arm Neoverse N1 (implementer 0x41, part 0xd0c). */
const SIMULATED_MIDR_EL1 = 0x413f_d0c1n;
/** PSCI 1.1. */
const PSCI_VERSION = 0x0001_0001n;

/** reset_mpidr(): affinity fields from the vCPU id, bit 31 RES1. */
function resetMpidr(id: number): bigint {
  const aff0 = BigInt(id & 0x0f);
  const aff1 = BigInt((id >> 4) & 0xff);
  const aff2 = BigInt((id >> 12) & 0xff);
  return (1n << 31n) | (aff2 << 16n) | (aff1 << 8n) | aff0;
}

function littleEndian(value: bigint, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let rest = value;
  for (let i = 0; i < size; i++) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}

export class SimulatedVcpu implements Vcpu {
  private readonly values = new Map<bigint, Uint8Array>();
  private readonly invariant = new Set<bigint>([namedSysRegisterId('MIDR_EL1')]);

  /**
   * `adoptRegisters`: take any register list set on it, as the vCPU of the
   * CPU a snapshot was taken on would (a real KVM lists firmware registers and
   * ID registers of its own host, which this model's CPU does not have).
   */
  constructor(
    readonly id: number,
    private readonly adoptRegisters = false,
  ) {
    for (const registerId of arm64RegisterList()) this.values.set(registerId, new Uint8Array(registerSize(registerId)));
    this.reset(PSTATE_ID, RESET_PSTATE);
    this.reset(namedSysRegisterId('SCTLR_EL1'), RESET_SCTLR_EL1);
    this.reset(namedSysRegisterId('MIDR_EL1'), SIMULATED_MIDR_EL1);
    this.reset(namedSysRegisterId('MPIDR_EL1'), resetMpidr(id));
    this.reset(PSCI_VERSION_ID, PSCI_VERSION);
  }

  private reset(registerId: bigint, value: bigint): void {
    this.values.set(registerId, littleEndian(value, registerSize(registerId)));
  }

  registerIds(): bigint[] {
    return [...this.values.keys()];
  }

  getRegister(id: bigint): Uint8Array {
    return this.stored(id, 'KVM_GET_ONE_REG').slice();
  }

  setRegister(id: bigint, value: Uint8Array): void {
    if (this.adoptRegisters) {
      if (value.length !== registerSize(id)) {
        throw new VmErrnoError('EINVAL', 'KVM_SET_ONE_REG', `${registerName(id)} is ${registerSize(id)} bytes, got ${value.length}`);
      }
      this.values.set(id, value.slice());
      return;
    }
    const current = this.stored(id, 'KVM_SET_ONE_REG');
    if (value.length !== current.length) {
      throw new VmErrnoError(
        'EINVAL',
        'KVM_SET_ONE_REG',
        `${registerName(id)} on vCPU ${this.id} is ${current.length} bytes, got ${value.length}`,
      );
    }
    // Invariant ID registers accept only their own value, as KVM's set_invariant_sys_reg does.
    if (this.invariant.has(id) && !current.every((byte, i) => byte === value[i])) {
      throw new VmErrnoError('EINVAL', 'KVM_SET_ONE_REG', `${registerName(id)} on vCPU ${this.id} is invariant`);
    }
    this.values.set(id, value.slice());
  }

  private stored(id: bigint, operation: string): Uint8Array {
    const value = this.values.get(id);
    if (!value) throw new VmErrnoError('ENOENT', operation, `vCPU ${this.id} has no register ${registerName(id)}`);
    return value;
  }
}
