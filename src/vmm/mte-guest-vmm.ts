/**
 * A VMM just big enough to run the MTE test guest: it lays out one RAM slot,
 * loads the image, points vCPU 0 at it with the parameters in x0..x5, and runs
 * the vCPU, collecting the guest's report-port stores (and answering its
 * COMMAND loads in mutator mode), until the guest reports a status. The VM's state lives entirely in RAM, tags and vCPU
 * registers, so a vmsnap snapshot taken at the checkpoint is all a new VM
 * needs to resume and verify.
 */

import { KvmVcpu } from '../backends/kvm/kvm-vcpu.js';
import { PC_ID } from '../vm/arm64-registers.js';
import type { Vcpu, Vm } from '../vm/vm.js';
import {
  checkLayout,
  DEFAULT_LAYOUT,
  decodeReport,
  describeReport,
  GUEST_MODE,
  type GuestMode,
  GuestProtocolError,
  type GuestReport,
  type MteGuestLayout,
  PARAMETER_REGISTERS,
  PORT,
  PORT_SIZE,
  vaRegionIpa,
} from './mte-guest-protocol.js';
import { MTE_TEST_GUEST_IMAGE } from './mte-test-image.js';

/** The guest's RAM is memslot 0. */
export const RAM_SLOT = 0;
/** Exits a run may take before its report: the guest makes at most 4 stores and one COMMAND load per report. */
const MAX_EXITS_PER_REPORT = 16;

/** Sets up `vm` (fresh, from any backend) to run the guest, in `mode`, from its first instruction. */
export function loadMteTestGuest(vm: Vm, layout: MteGuestLayout = DEFAULT_LAYOUT, mode: GuestMode = 'checkpoint'): Vcpu {
  checkLayout(layout, MTE_TEST_GUEST_IMAGE.length, vm.pageSize, mode);
  if (!vm.mteEnabled) vm.enableMte();
  vm.addMemorySlot({ slot: RAM_SLOT, name: 'ram', guestAddress: layout.ramBase, size: layout.ramSize });
  vm.writeMemory(layout.ramBase, MTE_TEST_GUEST_IMAGE);
  const vcpu = vm.createVcpu(0);
  setRegister64(vcpu, PARAMETER_REGISTERS.fillBase, layout.ramBase + layout.fillOffset);
  setRegister64(vcpu, PARAMETER_REGISTERS.fillLength, layout.fillLength);
  setRegister64(vcpu, PARAMETER_REGISTERS.seed, layout.seed);
  setRegister64(vcpu, PARAMETER_REGISTERS.port, layout.port);
  setRegister64(vcpu, PARAMETER_REGISTERS.mode, GUEST_MODE[mode]);
  setRegister64(vcpu, PARAMETER_REGISTERS.vaRegion, vaRegionIpa(layout));
  setRegister64(vcpu, PC_ID, layout.ramBase);
  return vcpu;
}

/** The vCPU of a VM that can run guest code (a KVM VM); other backends only hold state. */
export function runnableVcpu(vm: Vm): KvmVcpu {
  const vcpu = vm.vcpus()[0];
  if (!vcpu) throw new GuestProtocolError('the VM has no vCPU 0');
  if (!(vcpu instanceof KvmVcpu)) throw new GuestProtocolError(`a ${vm.backend} VM cannot run guest code; restore into KVM`);
  return vcpu;
}

/**
 * Runs until the guest stores a STATUS. The port's IPA comes from x3, so a
 * restored vCPU needs nothing but its registers. `command` answers one
 * COMMAND load (mutator mode: steps to do next, 0 to verify); a load with no
 * answer given is a protocol error.
 */
export function runUntilReport(vcpu: KvmVcpu, command?: bigint): GuestReport {
  const port = readRegister64(vcpu, PARAMETER_REGISTERS.port);
  const details = { address: 0n, expected: 0n, actual: 0n };
  let answer = command;
  for (let exits = 0; exits < MAX_EXITS_PER_REPORT; exits++) {
    const exit = vcpu.runUntilExit();
    if (exit.reason !== 'mmio')
      throw new GuestProtocolError(`unexpected exit ${exit.reason === 'other' ? exit.name : `system event ${exit.type}`}`);
    const offset = exit.address - port;
    if (!exit.isWrite && offset === PORT.command) {
      if (answer === undefined) throw new GuestProtocolError('the guest asks for a command and none was given');
      vcpu.answerMmioRead(answer);
      answer = undefined;
      continue;
    }
    if (!exit.isWrite || offset < 0n || offset >= PORT_SIZE) {
      throw new GuestProtocolError(`MMIO ${exit.isWrite ? 'store' : 'load'} at IPA 0x${exit.address.toString(16)} outside the report port`);
    }
    if (offset === PORT.status) return decodeReport(exit.value, details);
    if (offset === PORT.address) details.address = exit.value;
    else if (offset === PORT.expected) details.expected = exit.value;
    else if (offset === PORT.actual) details.actual = exit.value;
  }
  throw new GuestProtocolError(`no status after ${MAX_EXITS_PER_REPORT} exits`);
}

/**
 * Runs a freshly loaded guest to its checkpoint and completes the checkpoint
 * store, so that the registers saved next resume after it.
 */
export function runToCheckpoint(vcpu: KvmVcpu): void {
  const report = runUntilReport(vcpu);
  if (report.status !== 'checkpoint') throw new GuestProtocolError(`expected the checkpoint, but the guest ${describeReport(report)}`);
  vcpu.completePendingExit();
}

/**
 * Mutator mode: lets the guest (at a PROGRESS pause) do `steps` more
 * mutation steps and returns its step count at the next pause.
 */
export function mutate(vcpu: KvmVcpu, steps: bigint): bigint {
  if (steps <= 0n) throw new GuestProtocolError('mutate: the number of steps must be positive');
  const report = runUntilReport(vcpu, steps);
  if (report.status !== 'progress')
    throw new GuestProtocolError(`expected a pause after mutating, but the guest ${describeReport(report)}`);
  return report.steps;
}

/** Mutator mode: tells the guest (at a PROGRESS pause) to stop and verify; returns its verdict. */
export function stopMutator(vcpu: KvmVcpu): GuestReport {
  return runUntilReport(vcpu, 0n);
}

/**
 * Runs a freshly loaded mutator-mode guest to its first pause (step 0) and
 * returns; `mutate` and `stopMutator` go on from there.
 */
export function runToFirstPause(vcpu: KvmVcpu): void {
  const report = runUntilReport(vcpu);
  if (report.status !== 'progress' || report.steps !== 0n)
    throw new GuestProtocolError(`expected the first pause, but the guest ${describeReport(report)}`);
}

function setRegister64(vcpu: Vcpu, id: bigint, value: bigint): void {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  vcpu.setRegister(id, bytes);
}

function readRegister64(vcpu: Vcpu, id: bigint): bigint {
  const bytes = vcpu.getRegister(id);
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
}
