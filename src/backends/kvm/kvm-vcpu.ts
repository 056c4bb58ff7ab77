/**
 * A KVM arm64 vCPU: created and initialised with the target the host
 * prefers, its registers read and written one ONE_REG id at a time, and run
 * until it exits to the VMM.
 */

import { registerSize } from '../../format/registers.js';
import { registerName } from '../../vm/arm64-registers.js';
import { type Vcpu, VmErrnoError } from '../../vm/vm.js';
import { check, EINTR, errnoError } from './errno.js';
import { type HostMapping, mapGuestMemory, mapSharedFd } from './host-memory.js';
import {
  KVM_ARM_VCPU_INIT,
  KVM_CREATE_VCPU,
  KVM_GET_ONE_REG,
  KVM_GET_REG_LIST,
  KVM_ONE_REG_STRUCT,
  KVM_REG_LIST_STRUCT,
  KVM_RUN,
  KVM_SET_ONE_REG,
} from './kvm-abi.js';
import { close, ioctlBuffer, ioctlValue, lastErrno } from './libc.js';
import { decodeExit, encodeMmioReadValue, setImmediateExit, type VcpuExit } from './vcpu-exit.js';

/** E2BIG: KVM_GET_REG_LIST's answer to a list too short, with the needed count written back. */
const E2BIG = 7;
/** The largest ONE_REG value (KVM_REG_SIZE_U2048), which fits in the scratch page. */
const MAX_REGISTER_BYTES = 256;

export class KvmVcpu implements Vcpu {
  private readonly run: HostMapping;
  /** Native memory for ONE_REG values: kvm_one_reg.addr must point into the VMM. */
  private readonly scratch: HostMapping;
  private closed = false;

  constructor(
    readonly id: number,
    /** The vCPU fd: a vCPU thread (src/vmm/vcpu-thread.ts) runs it from another thread of this process. */
    readonly fd: number,
    /** Bytes of its struct kvm_run mapping. */
    readonly runSize: number,
    pageSize: number,
  ) {
    this.run = mapSharedFd(fd, runSize, `kvm_run of vCPU ${id}`);
    this.scratch = mapGuestMemory(pageSize, 'anonymous-private');
  }

  /** KVM_CREATE_VCPU then KVM_ARM_VCPU_INIT with `init` (a struct kvm_vcpu_init from KVM_ARM_PREFERRED_TARGET). */
  static create(vmFd: number, id: number, init: Buffer, runSize: number, pageSize: number): KvmVcpu {
    const fd = check(ioctlValue(vmFd, KVM_CREATE_VCPU, id), 'KVM_CREATE_VCPU', `vCPU ${id}`);
    try {
      check(ioctlBuffer(fd, KVM_ARM_VCPU_INIT, Buffer.from(init)), 'KVM_ARM_VCPU_INIT', `vCPU ${id}`);
      return new KvmVcpu(id, fd, runSize, pageSize);
    } catch (error) {
      close(fd);
      throw error;
    }
  }

  registerIds(): bigint[] {
    this.checkOpen('KVM_GET_REG_LIST');
    const probe = KVM_REG_LIST_STRUCT.allocate();
    if (ioctlBuffer(this.fd, KVM_GET_REG_LIST, probe) === 0) return [];
    if (lastErrno() !== E2BIG) throw errnoError(lastErrno(), 'KVM_GET_REG_LIST', `vCPU ${this.id}`);
    const count = Number(KVM_REG_LIST_STRUCT.read(probe, 'n'));
    const list = Buffer.alloc(KVM_REG_LIST_STRUCT.size + 8 * count);
    KVM_REG_LIST_STRUCT.write(list, 'n', count);
    check(ioctlBuffer(this.fd, KVM_GET_REG_LIST, list), 'KVM_GET_REG_LIST', `vCPU ${this.id}, ${count} ids`);
    const ids: bigint[] = [];
    for (let i = 0; i < count; i++) ids.push(list.readBigUInt64LE(KVM_REG_LIST_STRUCT.size + 8 * i));
    return ids;
  }

  getRegister(id: bigint): Uint8Array {
    this.checkOpen('KVM_GET_ONE_REG');
    const size = this.checkedSize(id);
    check(ioctlBuffer(this.fd, KVM_GET_ONE_REG, this.oneReg(id)), 'KVM_GET_ONE_REG', this.describe(id));
    return this.scratch.bytes.slice(0, size);
  }

  setRegister(id: bigint, value: Uint8Array): void {
    this.checkOpen('KVM_SET_ONE_REG');
    const size = this.checkedSize(id);
    if (value.length !== size) throw new RangeError(`${this.describe(id)}: value has ${value.length} bytes, the id says ${size}`);
    this.scratch.bytes.set(value);
    check(ioctlBuffer(this.fd, KVM_SET_ONE_REG, this.oneReg(id)), 'KVM_SET_ONE_REG', this.describe(id));
  }

  /** KVM_RUN until the vCPU exits to the VMM. */
  runUntilExit(): VcpuExit {
    this.checkOpen('KVM_RUN');
    for (;;) {
      if (ioctlValue(this.fd, KVM_RUN, 0) === 0) return decodeExit(this.run.bytes);
      const errno = lastErrno();
      // A signal interrupted the run before the guest exited: run again.
      if (errno !== EINTR) throw errnoError(errno, 'KVM_RUN', `vCPU ${this.id}`);
    }
  }

  /** The value the guest's pending MMIO read gets when the vCPU runs next. */
  answerMmioRead(value: bigint): void {
    this.checkOpen('KVM_RUN');
    encodeMmioReadValue(this.run.bytes, value);
  }

  /**
   * Finishes the exit KVM_RUN returned (an MMIO access is only complete, and
   * the PC moved past it, on the next KVM_RUN) without running guest code:
   * KVM_RUN with immediate_exit set. Registers read after this are the state
   * to save; read before, a restored guest would redo the access.
   */
  completePendingExit(): void {
    this.checkOpen('KVM_RUN');
    setImmediateExit(this.run.bytes, true);
    try {
      if (ioctlValue(this.fd, KVM_RUN, 0) === 0) throw new Error(`KVM_RUN with immediate_exit ran vCPU ${this.id}; expected EINTR`);
      const errno = lastErrno();
      if (errno !== EINTR) throw errnoError(errno, 'KVM_RUN', `vCPU ${this.id} with immediate_exit`);
    } finally {
      setImmediateExit(this.run.bytes, false);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.run.unmap();
    this.scratch.unmap();
    close(this.fd);
  }

  private oneReg(id: bigint): Buffer {
    const request = KVM_ONE_REG_STRUCT.allocate();
    KVM_ONE_REG_STRUCT.write(request, 'id', id);
    KVM_ONE_REG_STRUCT.write(request, 'addr', this.scratch.address);
    return request;
  }

  private checkedSize(id: bigint): number {
    const size = registerSize(id);
    if (size > MAX_REGISTER_BYTES)
      throw new VmErrnoError('EINVAL', 'ONE_REG', `${this.describe(id)}: ${size}-byte registers are not supported`);
    return size;
  }

  private describe(id: bigint): string {
    return `vCPU ${this.id} register ${registerName(id)}`;
  }

  /** A closed vCPU's fd number and kvm_run mapping may belong to something else now (see KvmVm.checkOpen). */
  private checkOpen(operation: string): void {
    if (this.closed) throw new VmErrnoError('EBADF', operation, `vCPU ${this.id} is closed`);
  }
}
