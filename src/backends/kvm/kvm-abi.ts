/**
 * The KVM user ABI vmsnap speaks, in one place: ioctl numbers computed from
 * the kernel's _IOC macros, the struct layouts those numbers encode the size
 * of, and the constants the calls take (include/uapi/linux/kvm.h,
 * include/uapi/asm-generic/ioctl.h). test/kvm-abi.test.ts checks every number
 * and size here against the values the kernel headers give.
 *
 *   ioctl number:  31..30 direction   29..16 argument size   15..8 type (0xAE)   7..0 nr
 *
 * Only arm64 and x86_64 Linux matter: both use the generic _IOC layout, LP64
 * and natural alignment, so one table serves the emulated host and this one.
 */

// ---- _IOC (asm-generic/ioctl.h) ----------------------------------------

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;
const IOC_SIZE_LIMIT = 1 << 14;

export function ioc(direction: number, type: number, nr: number, size: number): number {
  if (size < 0 || size >= IOC_SIZE_LIMIT) throw new RangeError(`ioctl argument size ${size} does not fit _IOC's 14 bits`);
  // >>> 0: direction bit 31 would make the JavaScript number negative.
  return ((direction << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
export const io = (type: number, nr: number): number => ioc(IOC_NONE, type, nr, 0);
export const ior = (type: number, nr: number, size: number): number => ioc(IOC_READ, type, nr, size);
export const iow = (type: number, nr: number, size: number): number => ioc(IOC_WRITE, type, nr, size);
export const iowr = (type: number, nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, type, nr, size);

// ---- struct layouts ------------------------------------------------------

type FieldType = 'u8' | 'u16' | 'u32' | 'u64';
const FIELD_BYTES: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8 };

/** A field: its type and, for arrays, the element count. Pointers are u64 (LP64). */
export type FieldSpec = FieldType | readonly [FieldType, number];

export interface FieldLayout {
  readonly type: FieldType;
  readonly offset: number;
  readonly count: number;
}

/** A C struct laid out with natural alignment, as GCC does on LP64 Linux. */
export class StructLayout<Name extends string> {
  readonly size: number;
  readonly fields: Readonly<Record<Name, FieldLayout>>;

  constructor(
    readonly cName: string,
    spec: Readonly<Record<Name, FieldSpec>>,
  ) {
    let offset = 0;
    let alignment = 1;
    const fields = {} as Record<Name, FieldLayout>;
    for (const name of Object.keys(spec) as Name[]) {
      const [type, count] = typeof spec[name] === 'string' ? [spec[name] as FieldType, 1] : (spec[name] as [FieldType, number]);
      const bytes = FIELD_BYTES[type];
      offset = alignUp(offset, bytes);
      alignment = Math.max(alignment, bytes);
      fields[name] = { type, offset, count };
      offset += bytes * count;
    }
    this.size = alignUp(offset, alignment);
    this.fields = fields;
  }

  /** A zeroed buffer the size of the struct, to pass to an ioctl. */
  allocate(): Buffer {
    return Buffer.alloc(this.size);
  }

  write(buffer: Buffer, name: Name, value: bigint | number, index = 0): void {
    const field = this.field(name, index);
    const at = field.offset + index * FIELD_BYTES[field.type];
    switch (field.type) {
      case 'u8':
        buffer.writeUInt8(Number(value), at);
        break;
      case 'u16':
        buffer.writeUInt16LE(Number(value), at);
        break;
      case 'u32':
        buffer.writeUInt32LE(Number(value), at);
        break;
      case 'u64':
        buffer.writeBigUInt64LE(BigInt(value), at);
        break;
    }
  }

  read(buffer: Buffer, name: Name, index = 0): bigint {
    const field = this.field(name, index);
    const at = field.offset + index * FIELD_BYTES[field.type];
    switch (field.type) {
      case 'u8':
        return BigInt(buffer.readUInt8(at));
      case 'u16':
        return BigInt(buffer.readUInt16LE(at));
      case 'u32':
        return BigInt(buffer.readUInt32LE(at));
      case 'u64':
        return buffer.readBigUInt64LE(at);
    }
  }

  private field(name: Name, index: number): FieldLayout {
    const field = this.fields[name];
    if (index < 0 || index >= field.count) throw new RangeError(`${this.cName}.${name}[${index}] is out of bounds`);
    return field;
  }
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** struct kvm_arm_copy_mte_tags: the kernel only reads it. */
export const KVM_ARM_COPY_MTE_TAGS_STRUCT = new StructLayout('kvm_arm_copy_mte_tags', {
  guest_ipa: 'u64',
  length: 'u64',
  addr: 'u64',
  flags: 'u64',
  reserved: ['u64', 2],
});

export const KVM_USERSPACE_MEMORY_REGION_STRUCT = new StructLayout('kvm_userspace_memory_region', {
  slot: 'u32',
  flags: 'u32',
  guest_phys_addr: 'u64',
  memory_size: 'u64',
  userspace_addr: 'u64',
});

export const KVM_ENABLE_CAP_STRUCT = new StructLayout('kvm_enable_cap', {
  cap: 'u32',
  flags: 'u32',
  args: ['u64', 4],
  pad: ['u8', 64],
});

export const KVM_ONE_REG_STRUCT = new StructLayout('kvm_one_reg', { id: 'u64', addr: 'u64' });

export const KVM_VCPU_INIT_STRUCT = new StructLayout('kvm_vcpu_init', { target: 'u32', features: ['u32', 7] });

/** struct kvm_reg_list's fixed part; `reg[]` (u64 ids) follows it. */
export const KVM_REG_LIST_STRUCT = new StructLayout('kvm_reg_list', { n: 'u64' });

export const KVM_DIRTY_LOG_STRUCT = new StructLayout('kvm_dirty_log', { slot: 'u32', padding: 'u32', dirty_bitmap: 'u64' });

export const KVM_CLEAR_DIRTY_LOG_STRUCT = new StructLayout('kvm_clear_dirty_log', {
  slot: 'u32',
  num_pages: 'u32',
  first_page: 'u64',
  dirty_bitmap: 'u64',
});

/**
 * The head of struct kvm_run (the vCPU's shared page) up to the MMIO exit
 * member of its union, which starts at offset 32.
 */
export const KVM_RUN_STRUCT = new StructLayout('kvm_run', {
  request_interrupt_window: 'u8',
  immediate_exit: 'u8',
  padding1: ['u8', 6],
  exit_reason: 'u32',
  ready_for_interrupt_injection: 'u8',
  if_flag: 'u8',
  flags: 'u16',
  cr8: 'u64',
  apic_base: 'u64',
  mmio_phys_addr: 'u64',
  mmio_data: ['u8', 8],
  mmio_len: 'u32',
  mmio_is_write: 'u8',
});
/** Where the exit union starts in struct kvm_run. */
export const KVM_RUN_EXIT_UNION_OFFSET = 32;

// ---- ioctl numbers -------------------------------------------------------

export const KVMIO = 0xae;

/** System ioctls (on /dev/kvm). */
export const KVM_GET_API_VERSION = io(KVMIO, 0x00);
export const KVM_CREATE_VM = io(KVMIO, 0x01);
export const KVM_CHECK_EXTENSION = io(KVMIO, 0x03);
export const KVM_GET_VCPU_MMAP_SIZE = io(KVMIO, 0x04);

/** VM ioctls. */
export const KVM_CREATE_VCPU = io(KVMIO, 0x41);
export const KVM_GET_DIRTY_LOG = iow(KVMIO, 0x42, KVM_DIRTY_LOG_STRUCT.size);
export const KVM_SET_USER_MEMORY_REGION = iow(KVMIO, 0x46, KVM_USERSPACE_MEMORY_REGION_STRUCT.size);
export const KVM_ENABLE_CAP = iow(KVMIO, 0xa3, KVM_ENABLE_CAP_STRUCT.size);
export const KVM_ARM_PREFERRED_TARGET = ior(KVMIO, 0xaf, KVM_VCPU_INIT_STRUCT.size);
export const KVM_ARM_MTE_COPY_TAGS = ior(KVMIO, 0xb4, KVM_ARM_COPY_MTE_TAGS_STRUCT.size);
export const KVM_CLEAR_DIRTY_LOG = iowr(KVMIO, 0xc0, KVM_CLEAR_DIRTY_LOG_STRUCT.size);

/** vCPU ioctls. */
export const KVM_RUN = io(KVMIO, 0x80);
export const KVM_GET_ONE_REG = iow(KVMIO, 0xab, KVM_ONE_REG_STRUCT.size);
export const KVM_SET_ONE_REG = iow(KVMIO, 0xac, KVM_ONE_REG_STRUCT.size);
export const KVM_ARM_VCPU_INIT = iow(KVMIO, 0xae, KVM_VCPU_INIT_STRUCT.size);
export const KVM_GET_REG_LIST = iowr(KVMIO, 0xb0, KVM_REG_LIST_STRUCT.size);

// ---- constants -----------------------------------------------------------

/** KVM_GET_API_VERSION has returned 12 since Linux 2.6.22; anything else is not the KVM API. */
export const KVM_API_VERSION = 12;

export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_ONE_REG = 70;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_CAP_ARM_MTE = 205;

/** kvm_userspace_memory_region.flags */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
export const KVM_MEM_READONLY = 2;

/** kvm_run.exit_reason values vmsnap's VMM handles or names. */
export const KVM_EXIT_REASON = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  ARM_NISV: 28,
} as const;
