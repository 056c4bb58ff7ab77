/**
 * The ioctl numbers and struct layouts of src/backends/kvm/kvm-abi.ts against the
 * values the Linux uapi headers give on arm64 (and x86_64: same _IOC layout,
 * same LP64 structs).
 */
import { describe, expect, test } from 'vitest';
import * as abi from '../src/backends/kvm/kvm-abi.js';

describe('ioctl numbers', () => {
  const known: Record<string, number> = {
    KVM_GET_API_VERSION: 0xae00,
    KVM_CREATE_VM: 0xae01,
    KVM_CHECK_EXTENSION: 0xae03,
    KVM_GET_VCPU_MMAP_SIZE: 0xae04,
    KVM_CREATE_VCPU: 0xae41,
    KVM_GET_DIRTY_LOG: 0x4010ae42,
    KVM_SET_USER_MEMORY_REGION: 0x4020ae46,
    KVM_ENABLE_CAP: 0x4068aea3,
    KVM_RUN: 0xae80,
    KVM_GET_ONE_REG: 0x4010aeab,
    KVM_SET_ONE_REG: 0x4010aeac,
    KVM_ARM_VCPU_INIT: 0x4020aeae,
    KVM_ARM_PREFERRED_TARGET: 0x8020aeaf,
    KVM_GET_REG_LIST: 0xc008aeb0,
    KVM_ARM_MTE_COPY_TAGS: 0x8030aeb4,
    KVM_CLEAR_DIRTY_LOG: 0xc018aec0,
  };
  for (const [name, value] of Object.entries(known)) {
    test(`${name} = 0x${value.toString(16)}`, () => {
      expect((abi as unknown as Record<string, number>)[name]).toBe(value);
    });
  }

  test('_IOC rejects an argument size that does not fit 14 bits', () => {
    expect(() => abi.ior(abi.KVMIO, 1, 1 << 14)).toThrow(RangeError);
  });
});

describe('struct layouts', () => {
  test('kvm_arm_copy_mte_tags is 48 bytes: ipa, length, addr, flags, reserved[2]', () => {
    const layout = abi.KVM_ARM_COPY_MTE_TAGS_STRUCT;
    expect(layout.size).toBe(48);
    expect([
      layout.fields.guest_ipa.offset,
      layout.fields.length.offset,
      layout.fields.addr.offset,
      layout.fields.flags.offset,
      layout.fields.reserved.offset,
    ]).toEqual([0, 8, 16, 24, 32]);
  });

  test.each([
    ['kvm_userspace_memory_region', abi.KVM_USERSPACE_MEMORY_REGION_STRUCT, 32],
    ['kvm_enable_cap', abi.KVM_ENABLE_CAP_STRUCT, 104],
    ['kvm_one_reg', abi.KVM_ONE_REG_STRUCT, 16],
    ['kvm_vcpu_init', abi.KVM_VCPU_INIT_STRUCT, 32],
    ['kvm_reg_list (fixed part)', abi.KVM_REG_LIST_STRUCT, 8],
    ['kvm_dirty_log', abi.KVM_DIRTY_LOG_STRUCT, 16],
    ['kvm_clear_dirty_log', abi.KVM_CLEAR_DIRTY_LOG_STRUCT, 24],
  ])('%s is %i bytes', (_name, layout, size) => {
    expect(layout.size).toBe(size);
  });

  test('kvm_userspace_memory_region puts guest_phys_addr after two u32s', () => {
    const fields = abi.KVM_USERSPACE_MEMORY_REGION_STRUCT.fields;
    expect([
      fields.slot.offset,
      fields.flags.offset,
      fields.guest_phys_addr.offset,
      fields.memory_size.offset,
      fields.userspace_addr.offset,
    ]).toEqual([0, 4, 8, 16, 24]);
  });

  test('kvm_enable_cap aligns args[] to 8 after cap and flags', () => {
    expect(abi.KVM_ENABLE_CAP_STRUCT.fields.args.offset).toBe(8);
    expect(abi.KVM_ENABLE_CAP_STRUCT.fields.pad.offset).toBe(40);
  });

  test('kvm_run: exit_reason at 8, the MMIO exit at 32 (phys_addr, data[8], len, is_write)', () => {
    const fields = abi.KVM_RUN_STRUCT.fields;
    expect(fields.immediate_exit.offset).toBe(1);
    expect(fields.exit_reason.offset).toBe(8);
    expect(fields.mmio_phys_addr.offset).toBe(abi.KVM_RUN_EXIT_UNION_OFFSET);
    expect([fields.mmio_data.offset, fields.mmio_len.offset, fields.mmio_is_write.offset]).toEqual([40, 48, 52]);
  });

  test('values round-trip through a struct buffer, little-endian, with array indices', () => {
    const layout = abi.KVM_ARM_COPY_MTE_TAGS_STRUCT;
    const buffer = layout.allocate();
    layout.write(buffer, 'guest_ipa', 0x1234_5678_9abc_def0n);
    layout.write(buffer, 'reserved', 7n, 1);
    expect(buffer.readBigUInt64LE(0)).toBe(0x1234_5678_9abc_def0n);
    expect(buffer.readBigUInt64LE(40)).toBe(7n);
    expect(layout.read(buffer, 'reserved', 1)).toBe(7n);
    expect(() => layout.read(buffer, 'reserved', 2)).toThrow(RangeError);
  });
});

test('constants: API version 12, KVM_CAP_ARM_MTE 205, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 168, MMIO exit 6', () => {
  expect(abi.KVM_API_VERSION).toBe(12);
  expect(abi.KVM_CAP_ARM_MTE).toBe(205);
  expect(abi.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).toBe(168);
  expect(abi.KVM_EXIT_REASON.MMIO).toBe(6);
});
