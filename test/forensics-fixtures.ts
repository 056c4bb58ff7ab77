/**
 * Snapshots with known tags and data for the forensics tests, written by the
 * real writer from the simulated VM.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { GRANULE_SIZE } from '../src/format/constants.js';
import { PC_ID, xRegisterId } from '../src/vm/arm64-registers.js';
import { readGuestTags, writeGuestTags } from '../src/vm/tag-copy.js';
import { type SaveOptions, saveSnapshot } from '../src/writer/save.js';
import { PageTableBuilder } from '../testkit/page-tables.js';

export interface RegionSpec {
  readonly slot: number;
  readonly name: string;
  readonly guestAddress: bigint;
  readonly size: bigint;
  readonly readOnly?: boolean;
}

/** `bytes` bytes from `address` get `tag` (both granule aligned). */
export interface Allocation {
  readonly address: bigint;
  readonly bytes: number;
  readonly tag: number;
}

export interface GuestSpec {
  readonly pageSize?: number;
  readonly regions: readonly RegionSpec[];
  readonly allocations?: readonly Allocation[];
  readonly writes?: readonly { address: bigint; bytes: Uint8Array }[];
  readonly vcpus?: number;
}

export const SCENARIO_REGIONS: RegionSpec[] = [
  { slot: 0, name: 'flash', guestAddress: 0x0n, size: 0x10000n, readOnly: true },
  { slot: 1, name: 'ram', guestAddress: 0x4000_0000n, size: 0x10_0000n },
  { slot: 2, name: 'ram2', guestAddress: 0x1_0000_0000n, size: 0x4_0000n },
];

/** Snapshot A: allocations whose statistics the tests know by hand. */
export const SCENARIO_A: GuestSpec = {
  regions: SCENARIO_REGIONS,
  allocations: [
    { address: 0x4000_0000n, bytes: 64, tag: 3 },
    { address: 0x4000_0040n, bytes: 32, tag: 5 },
    { address: 0x4000_1000n, bytes: 4096, tag: 7 },
    { address: 0x4000_2000n, bytes: 8192, tag: 0xa },
    { address: 0x1_0000_0100n, bytes: 16, tag: 0xf },
  ],
  writes: [
    { address: 0x4000_0000n, bytes: new TextEncoder().encode('MTE granule dump test: ABCDEFGHIJKLMNOPQRSTUVWXYZ') },
    { address: 0x1000n, bytes: new Uint8Array([0xde, 0xad, 0xbe, 0xef]) },
  ],
  vcpus: 2,
};

/** Snapshot B: A after a free (tag 3 cleared), a reallocation (page 1: 7 -> 9), a new allocation and a data write. */
export const SCENARIO_B: GuestSpec = {
  ...SCENARIO_A,
  allocations: [
    { address: 0x4000_0040n, bytes: 32, tag: 5 },
    { address: 0x4000_1000n, bytes: 4096, tag: 9 },
    { address: 0x4000_2000n, bytes: 8192, tag: 0xa },
    { address: 0x4001_0000n, bytes: 48, tag: 2 },
    { address: 0x1_0000_0100n, bytes: 16, tag: 0xf },
  ],
  writes: [...(SCENARIO_A.writes ?? []), { address: 0x4002_0008n, bytes: new TextEncoder().encode('changed twenty bytes') }],
};

function applyAllocation(vm: SimulatedVm, allocation: Allocation): void {
  const pageSize = BigInt(vm.pageSize);
  let address = allocation.address;
  const end = allocation.address + BigInt(allocation.bytes);
  while (address < end) {
    const page = address - (address % pageSize);
    const tags = new Uint8Array(vm.pageSize / GRANULE_SIZE);
    readGuestTags(vm, page, tags);
    for (; address < end && address < page + pageSize; address += BigInt(GRANULE_SIZE)) {
      tags[Number((address - page) / BigInt(GRANULE_SIZE))] = allocation.tag;
    }
    writeGuestTags(vm, page, tags);
  }
}

function littleEndian64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value, true);
  return out;
}

export function buildGuest(spec: GuestSpec): SimulatedVm {
  const vm = new SimulatedVm({ pageSize: spec.pageSize ?? 4096 });
  vm.enableMte();
  for (const region of spec.regions) vm.addMemorySlot(region);
  for (const allocation of spec.allocations ?? []) applyAllocation(vm, allocation);
  for (const write of spec.writes ?? []) vm.writeMemory(write.address, write.bytes);
  for (let id = 0; id < (spec.vcpus ?? 1); id++) {
    const vcpu = vm.createVcpu(id);
    vcpu.setRegister(xRegisterId(0), littleEndian64(0x1111_0000n + BigInt(id)));
    vcpu.setRegister(xRegisterId(30), littleEndian64(0xdead_beef_0000n + BigInt(id)));
    vcpu.setRegister(PC_ID, littleEndian64(0x4000_0800n + BigInt(id) * 4n));
  }
  return vm;
}

export async function saveGuest(spec: GuestSpec, path: string, options: SaveOptions = {}): Promise<string> {
  const vm = buildGuest(spec);
  await saveSnapshot(vm, path, { threads: 0, ...options });
  vm.close();
  return path;
}

export function temporaryDirectory(): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'vmsnap-forensics-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A guest with its own page tables (4 KiB granule, 48-bit VAs): two TTBR1
 * pages mapped in reverse order onto tagged RAM, so a virtual range that
 * crosses them is not contiguous in memory, and a TTBR0 2 MiB block.
 */
export const VIRTUAL = {
  ram: 0x4000_0000n,
  /** TTBR1 page 0 -> RAM + 0x11000, page 1 -> RAM + 0x10000. */
  kernelPages: 0xffff_0000_0010_0000n,
  /** TTBR0 block -> RAM + 0x20_0000. */
  userBlock: 0x0000_aaaa_0000_0000n,
  tables: 0x4000_0000n,
} as const;

export async function saveVirtualGuest(path: string): Promise<string> {
  const vm = buildGuest({
    regions: [{ slot: 0, name: 'ram', guestAddress: VIRTUAL.ram, size: 0x40_0000n }],
    allocations: [
      { address: VIRTUAL.ram + 0x1_0000n, bytes: 0x1000, tag: 0x6 },
      { address: VIRTUAL.ram + 0x1_1000n, bytes: 0xff0, tag: 0x9 },
      { address: VIRTUAL.ram + 0x1_1ff0n, bytes: 0x10, tag: 0x2 },
      { address: VIRTUAL.ram + 0x20_0000n, bytes: 0x40, tag: 0xc },
    ],
    writes: [
      { address: VIRTUAL.ram + 0x1_1000n, bytes: new TextEncoder().encode('first virtual page') },
      { address: VIRTUAL.ram + 0x1_0000n, bytes: new TextEncoder().encode('second virtual page') },
    ],
  });
  const tables = new PageTableBuilder({ granule: 4096, vaBits: 48, tableArea: VIRTUAL.tables });
  tables.map(VIRTUAL.kernelPages, VIRTUAL.ram + 0x1_1000n, 0x1000n);
  tables.map(VIRTUAL.kernelPages + 0x1000n, VIRTUAL.ram + 0x1_0000n, 0x1000n);
  tables.map(VIRTUAL.userBlock, VIRTUAL.ram + 0x20_0000n, 0x20_0000n, 2);
  tables.writeTo(vm);
  tables.setRegisters(vm.vcpus()[0]);
  await saveSnapshot(vm, path, { threads: 0 });
  vm.close();
  return path;
}
