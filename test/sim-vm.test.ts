/** The simulated backend beyond the conformance rows: registers, memslots, stores, lifecycle. */
import { describe, expect, it } from 'vitest';
import { SimulatedVm, SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { isAllZero } from '../src/format/bytes.js';
import { registerSize } from '../src/format/registers.js';
import { packTags, unpackTags } from '../src/format/tag-packing.js';
import {
  arm64RegisterList,
  decodeSysRegisterId,
  FPSR_ID,
  MTE_SYS_REGISTER_IDS,
  namedSysRegisterId,
  PC_ID,
  PSTATE_ID,
  registerName,
  SP_ID,
  vRegisterId,
  xRegisterId,
} from '../src/vm/arm64-registers.js';
import { guestTags, TagCopyError, writeGuestTags } from '../src/vm/tag-copy.js';
import { dirtyBitmapBytes, dirtyPages, TAGS_FROM_GUEST, VmErrnoError } from '../src/vm/vm.js';

function errnoOf(call: () => unknown): string | undefined {
  try {
    call();
  } catch (error) {
    if (error instanceof VmErrnoError) return error.code;
    throw error;
  }
  return undefined;
}

describe('ONE_REG ids', () => {
  it('match the values KVM headers give', () => {
    expect(xRegisterId(0)).toBe(0x6030000000100000n);
    expect(xRegisterId(30)).toBe(0x603000000010003cn);
    expect(SP_ID).toBe(0x603000000010003en);
    expect(PC_ID).toBe(0x6030000000100040n);
    expect(PSTATE_ID).toBe(0x6030000000100042n);
    expect(vRegisterId(0)).toBe(0x6040000000100054n);
    expect(vRegisterId(31)).toBe(0x6040000000100050n + 4n + 31n * 4n);
    expect(FPSR_ID).toBe(0x60200000001000d4n);
    expect(namedSysRegisterId('SCTLR_EL1')).toBe(0x603000000013c080n);
    expect(namedSysRegisterId('GCR_EL1')).toBe(0x603000000013c086n);
    expect(namedSysRegisterId('RGSR_EL1')).toBe(0x603000000013c085n);
    expect(namedSysRegisterId('TFSR_EL1')).toBe(0x603000000013c2b0n);
    expect(namedSysRegisterId('TFSRE0_EL1')).toBe(0x603000000013c2b1n);
    expect(namedSysRegisterId('KVM_REG_ARM_TIMER_CNT')).toBe(0x603000000013df1an);
    expect(namedSysRegisterId('KVM_REG_ARM_TIMER_CVAL')).toBe(0x603000000013df02n);
  });

  it('encode their size and decode back to names and encodings', () => {
    expect(registerSize(xRegisterId(3))).toBe(8);
    expect(registerSize(vRegisterId(3))).toBe(16);
    expect(registerSize(FPSR_ID)).toBe(4);
    expect(decodeSysRegisterId(namedSysRegisterId('TFSR_EL1'))).toEqual({ op0: 3, op1: 0, crn: 5, crm: 6, op2: 0 });
    expect(decodeSysRegisterId(PC_ID)).toBeNull();
    expect(registerName(xRegisterId(7))).toBe('x7');
    expect(registerName(namedSysRegisterId('GCR_EL1'))).toBe('GCR_EL1');
    expect(registerName(0x603000000013c7f9n)).toBe('sysreg(3,0,15,15,1)');
  });

  it('list core, firmware and system registers once each, with the MTE ones', () => {
    const ids = arm64RegisterList();
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of MTE_SYS_REGISTER_IDS) expect(ids).toContain(id);
    expect(ids.filter((id) => registerSize(id) === 16)).toHaveLength(32);
  });
});

describe('simulated vCPUs', () => {
  const vm = new SimulatedVm({ pageSize: 4096 });
  const vcpu = vm.createVcpu(17);

  it('start as KVM_ARM_VCPU_INIT leaves them', () => {
    expect(vcpu.getRegister(PSTATE_ID)).toEqual(Uint8Array.of(0xc5, 0x03, 0, 0, 0, 0, 0, 0));
    // MPIDR: Aff0 = 17 & 0xf, Aff1 = 17 >> 4, bit 31 set.
    expect(vcpu.getRegister(namedSysRegisterId('MPIDR_EL1'))).toEqual(Uint8Array.of(1, 1, 0, 0x80, 0, 0, 0, 0));
  });

  it('keep what SET_ONE_REG stores, and refuse bad ids, sizes and invariant changes', () => {
    const value = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    vcpu.setRegister(vRegisterId(5), value);
    expect(vcpu.getRegister(vRegisterId(5))).toEqual(value);
    value[0] = 99;
    expect(vcpu.getRegister(vRegisterId(5))[0]).toBe(1);
    expect(errnoOf(() => vcpu.setRegister(PC_ID, new Uint8Array(4)))).toBe('EINVAL');
    expect(errnoOf(() => vcpu.getRegister(0x603000000013ffffn))).toBe('ENOENT');
    const midr = namedSysRegisterId('MIDR_EL1');
    vcpu.setRegister(midr, vcpu.getRegister(midr));
    expect(errnoOf(() => vcpu.setRegister(midr, new Uint8Array(8)))).toBe('EINVAL');
  });

  it('have unique ids in range', () => {
    expect(errnoOf(() => vm.createVcpu(17))).toBe('EEXIST');
    expect(errnoOf(() => vm.createVcpu(512))).toBe('EINVAL');
    expect(vm.vcpus().map((v) => v.id)).toEqual([17]);
  });
});

describe('simulated memslots', () => {
  const page = 16384;
  const vm = new SimulatedVmFactory({ pageSize: page, kernelVersion: [6, 6] }).createVm();
  vm.enableMte();
  vm.addMemorySlot({ slot: 1, name: 'ram', guestAddress: 0x4000_0000n, size: BigInt(8 * page) });

  it('follow KVM_SET_USER_MEMORY_REGION rules', () => {
    const at = (guestAddress: bigint, size: bigint, slot = 2) => errnoOf(() => vm.addMemorySlot({ slot, name: 'x', guestAddress, size }));
    expect(at(0x1000n, BigInt(page))).toBe('EINVAL');
    expect(at(0n, 4096n)).toBe('EINVAL');
    expect(at(0n, 0n)).toBe('EINVAL');
    expect(at(0x4000_0000n + BigInt(page), BigInt(page))).toBe('EEXIST');
    expect(at(0n, BigInt(page), 1)).toBe('EINVAL');
    expect(at(1n << 40n, BigInt(page))).toBe('EFAULT');
    expect(at(0n, BigInt(page), 40000)).toBe('EINVAL');
    expect(vm.memorySlots()).toHaveLength(1);
    expect(vm.memorySlots()[0]).toMatchObject({ slot: 1, readOnly: false, backing: 'anonymous-private', dirtyLogging: false });
  });

  it('map guest memory for the VMM inside one slot only', () => {
    vm.writeMemory(0x4000_0010n, Uint8Array.of(1, 2, 3));
    const back = new Uint8Array(4);
    vm.readMemory(0x4000_000fn, back);
    expect(back).toEqual(Uint8Array.of(0, 1, 2, 3));
    expect(errnoOf(() => vm.readMemory(0x4000_0000n + BigInt(8 * page - 2), new Uint8Array(4)))).toBe('EFAULT');
    expect(errnoOf(() => vm.writeMemory(0x1000n, new Uint8Array(1)))).toBe('EFAULT');
    expect(vm.slotMemory(1)?.[0x10]).toBe(1);
  });

  it('move tags of whole ranges with the looping helpers, and name the IPA where they stop', () => {
    const tags = Uint8Array.from({ length: (3 * page) / 16 }, (_, i) => (i * 7) % 16);
    writeGuestTags(vm, 0x4000_0000n + BigInt(page), tags);
    expect(guestTags(vm, 0x4000_0000n + BigInt(page), 3 * page)).toEqual(tags);
    const past = () => guestTags(vm, 0x4000_0000n + BigInt(7 * page), 2 * page);
    expect(past).toThrow(TagCopyError);
    expect(past).toThrow(/from the guest failed at IPA 0x40020000/);
  });

  it('answer EIO to other processes and EBADF once closed', () => {
    const request = {
      guestIpa: 0x4000_0000n,
      length: BigInt(page),
      flags: TAGS_FROM_GUEST,
      reserved: [0n, 0n] as const,
      buffer: new Uint8Array(page / 16),
    };
    expect(vm.fromProcess(vm.owner).copyMteTags(request)).toBe(page);
    expect(errnoOf(() => vm.fromProcess(vm.owner + 1).copyMteTags(request))).toBe('EIO');
    const closing = new SimulatedVm({ pageSize: 4096 });
    closing.close();
    expect(errnoOf(() => closing.enableMte())).toBe('EBADF');
  });
});

describe('kernels before 6.3 keep the return value in an int', () => {
  it('a 2 GiB FROM_GUEST on 6.1 returns INT_MIN, on 6.3 is EINVAL', () => {
    const page = 65536;
    const size = 2 ** 31;
    for (const kernelVersion of [
      [6, 1],
      [6, 3],
    ] as const) {
      const vm = new SimulatedVm({ pageSize: page, kernelVersion });
      vm.enableMte();
      vm.addMemorySlot({ slot: 0, name: 'big', guestAddress: 1n << 32n, size: BigInt(size) });
      const request = {
        guestIpa: 1n << 32n,
        length: BigInt(size),
        flags: TAGS_FROM_GUEST,
        reserved: [0n, 0n] as const,
        buffer: new Uint8Array(size / 16),
      };
      if (kernelVersion[1] === 1) expect(vm.copyMteTags(request)).toBe(-(2 ** 31));
      else expect(errnoOf(() => vm.copyMteTags(request))).toBe('EINVAL');
      vm.close();
    }
  });
});

describe('tag packing', () => {
  it('packs two tags per byte, low nibble first, at any granule', () => {
    const packed = new Uint8Array(4);
    packTags(Uint8Array.of(1, 2, 3), packed, 1);
    expect([...packed]).toEqual([0x10, 0x32, 0, 0]);
    packTags(Uint8Array.of(0xff), packed, 0);
    expect([...packed]).toEqual([0x1f, 0x32, 0, 0]);
    const out = new Uint8Array(4);
    unpackTags(packed, 0, out);
    expect([...out]).toEqual([15, 1, 2, 3]);
    const odd = new Uint8Array(2);
    unpackTags(packed, 1, odd);
    expect([...odd]).toEqual([1, 2]);
  });

  it('finds all-zero ranges at any alignment', () => {
    const bytes = new Uint8Array(4099);
    expect(isAllZero(bytes.subarray(1))).toBe(true);
    bytes[4098] = 1;
    expect(isAllZero(bytes.subarray(3))).toBe(false);
    expect(isAllZero(bytes.subarray(0, 4098))).toBe(true);
  });
});

describe('vCPUs restored from another CPU', () => {
  it('refuse a register this CPU lacks, as KVM does, unless told to adopt the saved register list', () => {
    const firmwareRegister = 0x6030000000140001n;
    const strict = new SimulatedVm({ pageSize: 4096 }).createVcpu(0);
    expect(errnoOf(() => strict.setRegister(firmwareRegister, new Uint8Array(8)))).toBe('ENOENT');
    const adopting = new SimulatedVm({ pageSize: 4096, adoptRegisters: true }).createVcpu(0);
    adopting.setRegister(firmwareRegister, Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0));
    expect(adopting.registerIds()).toContain(firmwareRegister);
    expect(adopting.getRegister(firmwareRegister)[0]).toBe(1);
    expect(errnoOf(() => adopting.setRegister(firmwareRegister, new Uint8Array(4)))).toBe('EINVAL');
  });
});

describe('simulated guest accesses and the dirty log', () => {
  function loggingVm(pageSize = 4096): SimulatedVm {
    const vm = new SimulatedVm({ pageSize });
    vm.enableMte();
    vm.addMemorySlot({ slot: 3, name: 'ram', guestAddress: 0x8000_0000n, size: BigInt(8 * pageSize) });
    vm.addMemorySlot({ slot: 4, name: 'rom', guestAddress: 0x9000_0000n, size: BigInt(pageSize), readOnly: true });
    vm.setDirtyLogging(3, true);
    return vm;
  }

  it('a store spanning two pages marks both; a tag store spanning pages writes every granule and marks both', () => {
    const vm = loggingVm();
    vm.guestStore(0x8000_0ffcn, new Uint8Array(8).fill(7));
    expect(dirtyPages(vm.getDirtyLog(3))).toEqual([0, 1]);
    vm.guestStoreTags(0x8000_3ff0n, Uint8Array.of(0x1a, 0x2b));
    expect(dirtyPages(vm.getDirtyLog(3))).toEqual([3, 4]);
    expect(vm.guestLoadTag(0x8000_3ff0n)).toBe(0xa);
    expect(vm.guestLoadTag(0x8000_4000n)).toBe(0xb);
    expect(guestTags(vm, 0x8000_4000n, 4096)[0]).toBe(0xb);
    expect(dirtyPages(vm.getDirtyLog(3))).toEqual([]);
  });

  it('guest stores to a read-only slot or no slot are refused (MMIO on KVM); unaligned STG is a programming error', () => {
    const vm = loggingVm();
    expect(() => vm.guestStore(0x9000_0000n, Uint8Array.of(1))).toThrow(VmErrnoError);
    expect(() => vm.guestStore(0x7000_0000n, Uint8Array.of(1))).toThrow(VmErrnoError);
    expect(() => vm.guestStoreTags(0x8000_0008n, Uint8Array.of(1))).toThrow(RangeError);
  });

  it('a slot without logging keeps no log; the dirty bitmap has whole 64-bit words', () => {
    const vm = loggingVm(16384);
    expect(vm.getDirtyLog(3).length).toBe(dirtyBitmapBytes(8));
    expect(dirtyBitmapBytes(65)).toBe(16);
    expect(() => vm.getDirtyLog(4)).toThrow(/ENOENT/);
  });
});
