/**
 * A read-only `Vm` over an ELF core, so import is "save this VM": the
 * writer reads memory, tags (through KVM_ARM_MTE_COPY_TAGS semantics, from
 * the kernel model in src/kernel-model) and vCPU registers as from any backend.
 *
 * Regions come from the VMSNAP note when the core is one of ours (names,
 * slots, flags, every register), else from the PT_LOADs of a Linux process
 * core: one region per load ("load<N>"), MTE where a memtag segment covers
 * it, registers from the PRSTATUS/FPREGSET notes; a load NT_FILE names as a
 * file mapping is named after the file. Loads with no bytes in the file and
 * no tags (p_filesz 0: guard pages, PROT_NONE reservations, MADV_DONTDUMP)
 * hold nothing and are left out unless asked for.
 */

import { PAGE_SIZES } from '../format/constants.js';
import { KernelModelVm } from '../kernel-model/kernel-model-vm.js';
import { DEFAULT_IPA_BITS, MAX_USER_MEMSLOTS } from '../kernel-model/memslot-table.js';
import { memorySlotSpec, type Vcpu, type VcpuState, VmErrnoError } from '../vm/vm.js';
import { hwcap2FromNotes, vcpusFromNotes } from './core-notes.js';
import { type CoreRegionSource, CoreSlotStorageFactory } from './core-slot-storage.js';
import { AT_PAGESZ, HWCAP2_MTE, NT_AUXV, NT_FILE, PF_W } from './elf-constants.js';
import type { ElfCore, ElfSegment } from './elf-core-reader.js';
import { ElfCoreFormatError, hex } from './errors.js';
import { decodeFileNote } from './process-notes.js';
import { decodeVmsnapNote, type VmsnapRegionInfo, type VmsnapState } from './vmsnap-note.js';

/** A vCPU whose registers are the core's; setting one is refused. */
class CoreVcpu implements Vcpu {
  private readonly values: Map<bigint, Uint8Array>;
  constructor(
    readonly id: number,
    state: VcpuState,
  ) {
    this.values = new Map(state.registers.map((r) => [r.id, r.value]));
  }
  registerIds(): bigint[] {
    return [...this.values.keys()];
  }
  getRegister(id: bigint): Uint8Array {
    const value = this.values.get(id);
    if (!value) throw new VmErrnoError('ENOENT', 'KVM_GET_ONE_REG', `register 0x${id.toString(16)} is not in the core`);
    return value.slice();
  }
  setRegister(): void {
    throw new VmErrnoError('EPERM', 'KVM_SET_ONE_REG', 'a VM over an ELF core is read-only');
  }
}

export class CoreVm extends KernelModelVm {
  private readonly coreVcpus: CoreVcpu[];
  constructor(core: ElfCore, sources: readonly CoreRegionSource[], pageSize: number, ipaBits: number, vcpus: readonly VcpuState[]) {
    super('elf-core', new CoreSlotStorageFactory(core, sources), { pageSize, ipaBits });
    this.coreVcpus = vcpus.map((v) => new CoreVcpu(v.id, v));
  }
  override vcpus(): readonly Vcpu[] {
    return this.coreVcpus;
  }
  override createVcpu(): Vcpu {
    throw new VmErrnoError('EPERM', 'KVM_CREATE_VCPU', 'a VM over an ELF core is read-only');
  }
  /** A region keeps tags only where the core has a memtag segment for it. */
  isSlotTagged(slot: number): boolean {
    return this.slotStorages().find((entry) => entry.info.slot === slot)?.storage.tagAccess !== 'none';
  }
}

export interface CoreVmOptions {
  /** Page size for a core without a VMSNAP note; default AT_PAGESZ from NT_AUXV, else 4096. */
  readonly pageSize?: number;
  /** Keep PT_LOADs that hold no bytes and no tags (default: leave them out). */
  readonly keepEmptyLoads?: boolean;
}

export interface OpenedCoreVm {
  readonly vm: CoreVm;
  /** The VMSNAP note's state (blobs, annotations, identity), or null for a Linux process core. */
  readonly state: VmsnapState | null;
  readonly regions: readonly VmsnapRegionInfo[];
  readonly skippedLoads: ElfSegment[];
}

function auxvPageSize(core: ElfCore): number | null {
  const auxv = core.notes.find((n) => n.type === NT_AUXV);
  if (!auxv) return null;
  const view = Buffer.from(auxv.desc.buffer, auxv.desc.byteOffset, auxv.desc.length);
  for (let at = 0; at + 16 <= view.length; at += 16)
    if (view.readBigUInt64LE(at) === AT_PAGESZ) return Number(view.readBigUInt64LE(at + 8));
  return null;
}

function inside(memtag: ElfSegment, load: ElfSegment): boolean {
  return memtag.address >= load.address && memtag.address + memtag.memSize <= load.address + load.memSize;
}

/** The memtag segment that lies inside `load` (usually all of it; a tagged range may end mid-page). */
function memtagFor(core: ElfCore, load: ElfSegment): ElfSegment | undefined {
  const within = core.memtags.filter((m) => inside(m, load));
  if (within.length > 1) {
    throw new ElfCoreFormatError(
      core.path,
      within[1].offset,
      `PT_LOAD ${load.index} [${hex(load.address)}, +${hex(load.memSize)}) has ${within.length} memtag segments; one is expected`,
    );
  }
  return within[0];
}

/**
 * A region name for each PT_LOAD that NT_FILE lists as a file mapping: the
 * file's name and the mapping's offset in it ("libc.so.6+0x17d000", as
 * /proc/PID/maps would place it), unique among the regions; other loads
 * (heap, stack, anonymous memory) stay "load<N>".
 */
function mappingNames(core: ElfCore): Map<bigint, string> {
  const file = core.notes.find((n) => n.type === NT_FILE && n.name === 'CORE');
  const names = new Map<bigint, string>();
  if (!file) return names;
  const used = new Set<string>();
  for (const mapping of decodeFileNote(file.desc)) {
    const load = core.loads.find((l) => l.address === mapping.start && l.address + l.memSize === mapping.end);
    if (!load || names.has(load.address)) continue;
    const base = `${(mapping.path.split('/').pop() || mapping.path).slice(0, MAX_FILE_NAME)}+0x${mapping.fileOffset.toString(16)}`;
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}#${n}`;
    used.add(name);
    names.set(load.address, name);
  }
  return names;
}

/** The longest file name kept in a region name: with "+0x<offset>#<n>" it stays under the format's 256 characters. */
const MAX_FILE_NAME = 200;

function linuxRegions(core: ElfCore, keepEmpty: boolean): { regions: VmsnapRegionInfo[]; skipped: ElfSegment[] } {
  const regions: VmsnapRegionInfo[] = [];
  const skipped: ElfSegment[] = [];
  const names = mappingNames(core);
  core.loads.forEach((load, i) => {
    // A memtag segment with p_filesz 0 (a PROT_MTE mapping the kernel did not dump: MADV_DONTDUMP) says the
    // mapping is tagged but holds no tag: the region is kept without tags, as GDB sees it, not with invented zeros.
    const memtag = memtagFor(core, load);
    const tags = memtag && memtag.fileSize > 0n ? memtag : undefined;
    if (load.memSize === 0n || (!keepEmpty && load.fileSize === 0n && !tags)) {
      skipped.push(load);
      return;
    }
    // A snapshot's read-only regions carry no tags (they could not be restored into a read-only memslot),
    // so a tagged mapping is kept writable: its tags matter more than its write bit.
    regions.push({
      name: names.get(load.address) ?? `load${i}`,
      slot: regions.length,
      guestAddress: load.address,
      size: load.memSize,
      mte: tags !== undefined,
      readOnly: (load.flags & PF_W) === 0 && tags === undefined,
    });
  });
  return { regions, skipped };
}

function checkRegion(core: ElfCore, region: VmsnapRegionInfo, pageSize: number): void {
  const page = BigInt(pageSize);
  if (region.guestAddress % page !== 0n || region.size % page !== 0n) {
    throw new ElfCoreFormatError(
      core.path,
      0,
      `region ${region.name} [${hex(region.guestAddress)}, +${hex(region.size)}) ` +
        `is not aligned to the ${pageSize}-byte page; try --page-size 4096`,
    );
  }
}

function bitsFor(end: bigint): number {
  return Math.max(DEFAULT_IPA_BITS, end.toString(2).length);
}

/** Every memtag segment must lie inside a PT_LOAD: tags at addresses no load covers would be dropped unseen. */
function checkMemtagsCovered(core: ElfCore): void {
  for (const memtag of core.memtags) {
    if (core.loads.some((load) => inside(memtag, load))) continue;
    throw new ElfCoreFormatError(
      core.path,
      memtag.offset,
      `memtag segment ${memtag.index} [${hex(memtag.address)}, +${hex(memtag.memSize)}) matches no PT_LOAD: its tags belong to no memory`,
    );
  }
}

export function openCoreVm(core: ElfCore, options: CoreVmOptions = {}): OpenedCoreVm {
  checkMemtagsCovered(core);
  const state = decodeVmsnapNote(core.notes, core.path);
  const pageSize = state?.pageSize ?? options.pageSize ?? auxvPageSize(core) ?? 4096;
  if (!PAGE_SIZES.includes(pageSize))
    throw new ElfCoreFormatError(core.path, 0, `page size ${pageSize} is not one of ${PAGE_SIZES.join(', ')}`);
  const { regions, skipped } = state ? { regions: state.regions, skipped: [] } : linuxRegions(core, options.keepEmptyLoads ?? false);
  if (regions.length > MAX_USER_MEMSLOTS)
    throw new ElfCoreFormatError(core.path, 0, `${regions.length} regions exceed KVM's ${MAX_USER_MEMSLOTS} memslots`);
  const sources = regions.map((region) => {
    checkRegion(core, region, pageSize);
    const load = core.loads.find((l) => l.address === region.guestAddress && l.memSize === region.size);
    if (!load)
      throw new ElfCoreFormatError(
        core.path,
        0,
        `the VMSNAP note names region ${region.name} at ${hex(region.guestAddress)}, but no PT_LOAD matches it`,
      );
    return { load, memtag: region.mte ? memtagFor(core, load) : undefined };
  });
  const maxEnd = regions.reduce((m, r) => (r.guestAddress + r.size > m ? r.guestAddress + r.size : m), 0n);
  const vcpus = state?.vcpus ?? vcpusFromNotes(core.notes);
  const vm = new CoreVm(core, sources, pageSize, bitsFor(maxEnd), vcpus);
  const hasTags = regions.some((r) => r.mte) || ((hwcap2FromNotes(core.notes) ?? 0n) & HWCAP2_MTE) !== 0n;
  if (hasTags) vm.enableMte();
  for (const region of regions) vm.addMemorySlot(memorySlotSpec(region));
  return { vm, state, regions, skippedLoads: skipped };
}
