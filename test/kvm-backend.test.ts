/**
 * The KVM backend's parts that run anywhere (host mappings, kvm_run decoding,
 * the guest protocol and pattern, state transfer and tag damage on the
 * simulated backend), and, where this host has KVM with MTE, the real thing.
 * On a host without it (x86 CI) those tests skip, saying why; the emulated
 * arm64 host of `npm run test:kvm` runs them for real.
 */
import { describe, expect, test } from 'vitest';
import { GuardedBuffer, mapGuestMemory } from '../src/backends/kvm/host-memory.js';
import { KVM_EXIT_REASON, KVM_RUN_STRUCT } from '../src/backends/kvm/kvm-abi.js';
import { KvmVmFactory, kvmMteUnavailableReason } from '../src/backends/kvm/kvm-factory.js';
import { hostPageSize } from '../src/backends/kvm/libc.js';
import { decodeExit } from '../src/backends/kvm/vcpu-exit.js';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { PC_ID, xRegisterId } from '../src/vm/arm64-registers.js';
import { guestTags, writeGuestTags } from '../src/vm/tag-copy.js';
import { checkLayout, DEFAULT_LAYOUT, decodeReport, GuestLayoutError, GuestProtocolError, STATUS } from '../src/vmm/mte-guest-protocol.js';
import { loadMteTestGuest, runnableVcpu, runToCheckpoint, runUntilReport } from '../src/vmm/mte-guest-vmm.js';
import { conformanceRows, runConformanceRow } from '../testkit/conformance/index.js';
import { kvmConformanceTarget, parseKernelRelease } from '../testkit/conformance/kvm-target.js';
import { deserialiseCopyRequest, serialiseCopyRequest } from '../testkit/conformance/other-process-copy.js';
import { expectedTags, forEachGranule } from '../testkit/kvm-lab/mte-guest-pattern.js';
import { transferVmState } from '../testkit/kvm-lab/state-transfer.js';
import { TagCorruptingVm, type TagCorruption } from '../testkit/tag-corruption.js';

const pageSize = hostPageSize();

describe('host memory', () => {
  test.each(['anonymous-private', 'anonymous-shared', 'memfd'] as const)(
    '%s memory is zeroed, writable and readable through its view',
    (backing) => {
      const mapping = mapGuestMemory(4 * pageSize, backing);
      try {
        expect(mapping.bytes.length).toBe(4 * pageSize);
        expect(mapping.bytes.every((byte) => byte === 0)).toBe(true);
        mapping.bytes.set([1, 2, 3], pageSize);
        expect(Array.from(mapping.bytes.subarray(pageSize, pageSize + 3))).toEqual([1, 2, 3]);
      } finally {
        mapping.unmap();
      }
    },
  );

  test('an unmapped range stays reserved while a view of it is reachable: new mappings never land on it', () => {
    const mapping = mapGuestMemory(4 * pageSize, 'anonymous-private');
    const stale = mapping.bytes.subarray(pageSize);
    const start = mapping.address;
    const end = start + BigInt(4 * pageSize);
    mapping.unmap();
    expect(() => mapping.bytes).toThrow(RangeError);
    const others = Array.from({ length: 64 }, () => mapGuestMemory(4 * pageSize, 'anonymous-private'));
    try {
      for (const other of others) expect(other.address + BigInt(other.size) <= start || other.address >= end).toBe(true);
    } finally {
      for (const other of others) other.unmap();
    }
    expect(stale.length).toBe(3 * pageSize);
  });

  test.each([0, 1, 255, pageSize, pageSize + 17])('a guarded buffer of %i bytes ends exactly where its guard page starts', (length) => {
    const buffer = new GuardedBuffer(length, pageSize);
    try {
      expect(buffer.bytes.length).toBe(length);
      expect((buffer.address + BigInt(length)) % BigInt(pageSize)).toBe(0n);
    } finally {
      buffer.release();
    }
  });
});

test('an MMIO exit decodes from struct kvm_run: address, direction, length, little-endian value', () => {
  const page = KVM_RUN_STRUCT.allocate();
  KVM_RUN_STRUCT.write(page, 'exit_reason', KVM_EXIT_REASON.MMIO);
  KVM_RUN_STRUCT.write(page, 'mmio_phys_addr', 0x0900_0008n);
  for (const [i, byte] of [0xef, 0xbe, 0xad, 0xde].entries()) KVM_RUN_STRUCT.write(page, 'mmio_data', byte, i);
  KVM_RUN_STRUCT.write(page, 'mmio_len', 4);
  KVM_RUN_STRUCT.write(page, 'mmio_is_write', 1);
  expect(decodeExit(page)).toEqual({ reason: 'mmio', address: 0x0900_0008n, isWrite: true, length: 4, value: 0xdeadbeefn });
  KVM_RUN_STRUCT.write(page, 'exit_reason', KVM_EXIT_REASON.FAIL_ENTRY);
  expect(decodeExit(page)).toEqual({ reason: 'other', exitReason: 9, name: 'KVM_EXIT_FAIL_ENTRY' });
});

describe('MTE test guest protocol and pattern', () => {
  test('the default layout is valid; a fill outside RAM, a port in the RAM block, or seed 0 are not', () => {
    expect(() => checkLayout(DEFAULT_LAYOUT, 4096, pageSize)).not.toThrow();
    expect(() => checkLayout({ ...DEFAULT_LAYOUT, fillLength: DEFAULT_LAYOUT.ramSize }, 4096, pageSize)).toThrow(GuestLayoutError);
    expect(() => checkLayout({ ...DEFAULT_LAYOUT, port: DEFAULT_LAYOUT.ramBase + 0x1000_0000n }, 4096, pageSize)).toThrow(GuestLayoutError);
    expect(() => checkLayout({ ...DEFAULT_LAYOUT, seed: 0n }, 4096, pageSize)).toThrow(GuestLayoutError);
    expect(() => checkLayout({ ...DEFAULT_LAYOUT, fillOffset: 0x1000n }, 4096, pageSize)).toThrow(GuestLayoutError);
  });

  test('reports decode with their details; an unknown status is a protocol error', () => {
    expect(decodeReport(STATUS.tagMismatch, { address: 0x40100010n, expected: 3n, actual: 4n })).toEqual({
      status: 'tag-mismatch',
      address: 0x40100010n,
      expected: 3n,
      actual: 4n,
    });
    expect(decodeReport(STATUS.exception, { address: 1n, expected: 2n, actual: 3n })).toEqual({
      status: 'exception',
      far: 1n,
      elr: 2n,
      esr: 3n,
    });
    expect(() => decodeReport(99n, { address: 0n, expected: 0n, actual: 0n })).toThrow(GuestProtocolError);
  });

  test('the pattern is xorshift64 (13, 7, 17): the tag is the top nibble, the words r and r ^ address', () => {
    const layout = { ...DEFAULT_LAYOUT, fillLength: 32n, seed: 1n };
    // xorshift64 from 1: 1 ^ 1<<13 = 0x2001; ^ >>7 = 0x2041; ^ <<17 = 0x40822041.
    const seen: [bigint, number, bigint, bigint][] = [];
    forEachGranule(layout, (_i, address, pattern) => seen.push([address, pattern.tag, pattern.words[0], pattern.words[1]]));
    const base = layout.ramBase + layout.fillOffset;
    expect(seen[0]).toEqual([base, 0, 0x40822041n, 0x40822041n ^ base]);
    expect(seen[1][0]).toBe(base + 16n);
    const tags = expectedTags(DEFAULT_LAYOUT);
    expect(new Set(tags).size).toBe(16);
  });
});

describe('state transfer and tag damage (on the simulated backend)', () => {
  function taggedSource(): SimulatedVm {
    const vm = new SimulatedVm({ pageSize });
    vm.enableMte();
    vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: BigInt(4 * pageSize) });
    vm.writeMemory(
      0x4000_0000n,
      Uint8Array.from({ length: 64 }, (_, i) => i),
    );
    writeGuestTags(
      vm,
      0x4000_0000n,
      Uint8Array.from({ length: (4 * pageSize) / 16 }, (_, i) => i % 16),
    );
    vm.createVcpu(0).setRegister(PC_ID, Uint8Array.of(0x00, 0x10, 0, 0x40, 0, 0, 0, 0));
    return vm;
  }

  test('RAM, tags and registers arrive in the new VM unchanged', () => {
    const source = taggedSource();
    const target = new SimulatedVm({ pageSize });
    transferVmState(source, target);
    expect(guestTags(target, 0x4000_0000n, 4 * pageSize)).toEqual(guestTags(source, 0x4000_0000n, 4 * pageSize));
    const ram = new Uint8Array(64);
    target.readMemory(0x4000_0000n, ram);
    expect(ram[63]).toBe(63);
    expect(target.vcpus()[0].getRegister(PC_ID)).toEqual(source.vcpus()[0].getRegister(PC_ID));
  });

  test('through a TagCorruptingVm exactly one granule gets a different tag, and it is recorded', () => {
    const source = taggedSource();
    const target = new SimulatedVm({ pageSize });
    const corruption: TagCorruption = { guestAddress: 0x4000_0000n + BigInt(pageSize) + 0x230n, original: null, corrupted: null };
    transferVmState(source, new TagCorruptingVm(target, corruption));
    const before = guestTags(source, 0x4000_0000n, 4 * pageSize);
    const after = guestTags(target, 0x4000_0000n, 4 * pageSize);
    const changed = Array.from(before).flatMap((tag, i) => (after[i] !== tag ? [i] : []));
    expect(changed).toEqual([(pageSize + 0x230) / 16]);
    expect(corruption.original).toBe(before[changed[0]]);
    expect(after[changed[0]]).toBe(corruption.corrupted);
  });
});

test('other-process requests survive the trip through JSON; kernel releases parse to major.minor', () => {
  const request = { guestIpa: 1n << 40n, length: 4096n, flags: 1n, reserved: [0n, 7n] as const, buffer: Uint8Array.of(1, 2, 0xff) };
  expect(deserialiseCopyRequest(JSON.stringify(serialiseCopyRequest(request)))).toEqual({ ...request, reserved: [0n, 7n] });
  expect(deserialiseCopyRequest(JSON.stringify(serialiseCopyRequest({ ...request, buffer: null }))).buffer).toBeNull();
  expect(parseKernelRelease('6.1.0-50-cloud-arm64')).toEqual([6, 1]);
  expect(() => parseKernelRelease('unknown')).toThrow(RangeError);
});

const unavailable = kvmMteUnavailableReason();

describe.skipIf(unavailable !== null)(`real KVM with MTE${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  test('the guest runs to its checkpoint, its tags match the pattern, and a moved copy verifies', () => {
    const factory = new KvmVmFactory();
    const source = factory.createVm();
    const target = factory.createVm();
    try {
      loadMteTestGuest(source);
      runToCheckpoint(runnableVcpu(source));
      const fill = DEFAULT_LAYOUT.ramBase + DEFAULT_LAYOUT.fillOffset;
      expect(guestTags(source, fill, Number(DEFAULT_LAYOUT.fillLength))).toEqual(expectedTags(DEFAULT_LAYOUT));
      expect(source.vcpus()[0].registerIds()).toContain(xRegisterId(3));
      transferVmState(source, target);
      expect(runUntilReport(runnableVcpu(target))).toEqual({ status: 'verified' });
    } finally {
      source.close();
      target.close();
    }
  });

  test('a closed VM and its vCPU refuse every operation with EBADF instead of reaching a reused fd or mapping', () => {
    const vm = new KvmVmFactory().createVm();
    vm.enableMte();
    vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: BigInt(pageSize) });
    const vcpu = vm.createVcpu(0);
    vm.close();
    const ebadf = expect.objectContaining({ code: 'EBADF' });
    expect(() => vm.readMemory(0x4000_0000n, new Uint8Array(8))).toThrow(ebadf);
    expect(() => vm.writeMemory(0x4000_0000n, new Uint8Array(8))).toThrow(ebadf);
    expect(() => guestTags(vm, 0x4000_0000n, pageSize)).toThrow(ebadf);
    expect(() => vm.getDirtyLog(0)).toThrow(ebadf);
    expect(() => vm.createVcpu(1)).toThrow(ebadf);
    expect(() => vcpu.getRegister(PC_ID)).toThrow(ebadf);
    expect(() => vcpu.runUntilExit()).toThrow(ebadf);
  });

  test.each(conformanceRows.map((row) => ({ id: row.id, row })))('conformance: $id', async ({ row }) => {
    const result = await runConformanceRow(row, kvmConformanceTarget());
    expect(result.message ?? '').toBe('');
    expect(result.status).toBe('pass');
  });
});
