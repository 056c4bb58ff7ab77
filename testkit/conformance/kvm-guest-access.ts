/**
 * Guest accesses on the real KVM: the store probe (testkit/guest-store-probe)
 * runs on vCPU 0 from its own memslot and does one load, store, STG or LDG
 * per command. Each command is three MMIO loads the VMM answers (command,
 * address, value) and one MMIO store of the result, so the access itself is
 * the guest's own, through stage 2, exactly what the dirty log watches.
 */
import { KvmVcpu } from '../../src/backends/kvm/kvm-vcpu.js';
import { PC_ID, xRegisterId } from '../../src/vm/arm64-registers.js';
import type { Vm } from '../../src/vm/vm.js';
import { STORE_PROBE_IMAGE } from '../guest-store-probe/store-probe-image.js';
import { GUEST_CODE_BYTES, GUEST_CODE_IPA, GUEST_CODE_SLOT } from './fixtures.js';
import type { GuestAccess } from './types.js';

/** The probe's command port: no memslot, in the first 1 GiB block (the probe maps it as Device memory). */
const PORT = 0x1000_0000n;
const PORT_OFFSET = { command: 0x00n, address: 0x08n, value: 0x10n, done: 0x18n, far: 0x20n, elr: 0x28n, esr: 0x30n } as const;
const COMMAND = { store: 1n, storeTag: 2n, load: 3n, loadTag: 4n } as const;
/** Exits one command may take: three loads, one store, and a fault report of three stores. */
const MAX_EXITS = 8;

export class ProbeGuestError extends Error {
  constructor(message: string) {
    super(`store probe: ${message}`);
    this.name = 'ProbeGuestError';
  }
}

export class KvmGuestAccess implements GuestAccess {
  private readonly vcpu: KvmVcpu;

  constructor(vm: Vm) {
    vm.addMemorySlot({ slot: GUEST_CODE_SLOT, name: 'store-probe', guestAddress: GUEST_CODE_IPA, size: GUEST_CODE_BYTES });
    vm.writeMemory(GUEST_CODE_IPA, STORE_PROBE_IMAGE);
    const vcpu = vm.createVcpu(0);
    if (!(vcpu instanceof KvmVcpu)) throw new ProbeGuestError(`a ${vm.backend} VM cannot run guest code`);
    this.vcpu = vcpu;
    vcpu.setRegister(xRegisterId(3), word(PORT));
    vcpu.setRegister(PC_ID, word(GUEST_CODE_IPA));
  }

  store64(guestAddress: bigint, value: bigint): void {
    this.command(COMMAND.store, guestAddress, value);
  }

  storeTag(guestAddress: bigint, tag: number): void {
    this.command(COMMAND.storeTag, guestAddress, BigInt(tag & 0x0f));
  }

  load64(guestAddress: bigint): bigint {
    return this.command(COMMAND.load, guestAddress, 0n);
  }

  loadTag(guestAddress: bigint): number {
    return Number(this.command(COMMAND.loadTag, guestAddress, 0n));
  }

  /** Answers the probe's three loads, then returns the value of its DONE store. */
  private command(command: bigint, address: bigint, value: bigint): bigint {
    const answers = [
      [PORT_OFFSET.command, command],
      [PORT_OFFSET.address, address],
      [PORT_OFFSET.value, value],
    ] as const;
    const fault = { far: 0n, elr: 0n };
    let answered = 0;
    for (let exits = 0; exits < MAX_EXITS; exits++) {
      const exit = this.vcpu.runUntilExit();
      if (exit.reason !== 'mmio') throw new ProbeGuestError(`unexpected exit ${exit.reason === 'other' ? exit.name : exit.type}`);
      const offset = exit.address - PORT;
      if (!exit.isWrite && answered < answers.length && offset === answers[answered][0]) {
        this.vcpu.answerMmioRead(answers[answered][1]);
        answered++;
        continue;
      }
      if (exit.isWrite && offset === PORT_OFFSET.done && answered === answers.length) return exit.value;
      if (exit.isWrite && offset === PORT_OFFSET.far) fault.far = exit.value;
      else if (exit.isWrite && offset === PORT_OFFSET.elr) fault.elr = exit.value;
      else if (exit.isWrite && offset === PORT_OFFSET.esr) {
        throw new ProbeGuestError(
          `exception at PC 0x${fault.elr.toString(16)}: ESR 0x${exit.value.toString(16)}, FAR 0x${fault.far.toString(16)}`,
        );
      } else {
        throw new ProbeGuestError(`MMIO ${exit.isWrite ? 'store' : 'load'} at 0x${exit.address.toString(16)} out of protocol`);
      }
    }
    throw new ProbeGuestError(`command ${command} did not finish in ${MAX_EXITS} exits`);
  }
}

function word(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}
