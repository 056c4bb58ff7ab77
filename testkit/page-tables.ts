/**
 * Builds arm64 stage-1 page tables inside a simulated guest, written from the
 * architecture's definitions (Arm ARM D8.2, D8.3) and independently of the
 * walker in src/forensics, so tests can give the walker a regime it has not
 * seen: any granule (4, 16, 64 KiB), any virtual address width, both halves,
 * blocks and pages, 52-bit output addresses (FEAT_LPA with 64 KiB pages,
 * FEAT_LPA2 with TCR_EL1.DS), and broken descriptors at a chosen level.
 *
 *   const tables = new PageTableBuilder({ granule: 16384, vaBits: 47, tableArea: 0x4000_0000n });
 *   tables.map(0xffff_8000_0000_0000n, 0x4010_0000n, 0x8000n);     // TTBR1 pages
 *   tables.map(0x0000_0000_4000_0000n, 0x4000_0000n, 32n << 20n, 2); // a level-2 block
 *   tables.writeTo(vm); tables.setRegisters(vcpu);
 */

import { namedSysRegisterId } from '../src/vm/arm64-registers.js';
import type { Vcpu } from '../src/vm/vm.js';

export type TestGranule = 4096 | 16384 | 65536;

export interface PageTableOptions {
  readonly granule: TestGranule;
  /** Virtual address bits of both halves (64 - TnSZ), unless vaBits1 is given. */
  readonly vaBits: number;
  readonly vaBits1?: number;
  /** IPA where page tables are allocated, one granule each, upwards. */
  readonly tableArea: bigint;
  /** Output addresses of 52 bits: FEAT_LPA (64 KiB, IPS = 52) or FEAT_LPA2 (TCR_EL1.DS, 4/16 KiB). */
  readonly outputBits52?: boolean;
  /** TCR_EL1.TBI0 / TBI1; both default to true. */
  readonly tbi0?: boolean;
  readonly tbi1?: boolean;
  /** SCTLR_EL1.M; default true. */
  readonly mmuOn?: boolean;
}

const TG0: Record<TestGranule, bigint> = { 4096: 0n, 65536: 1n, 16384: 2n };
const TG1: Record<TestGranule, bigint> = { 16384: 1n, 4096: 2n, 65536: 3n };
/** Access flag: set on every leaf, as a kernel does. */
const AF = 1n << 10n;

export class PageTableBuilder {
  /** Every table: IPA -> its descriptors. */
  private readonly tables = new Map<bigint, BigUint64Array>();
  private nextTable: bigint;
  readonly roots: [bigint, bigint];
  private readonly shift: number;
  private readonly perLevel: number;

  constructor(readonly options: PageTableOptions) {
    this.shift = Math.log2(options.granule);
    this.perLevel = this.shift - 3;
    this.nextTable = options.tableArea;
    this.roots = [this.allocateTable(), this.allocateTable()];
  }

  private get lpa2(): boolean {
    return !!this.options.outputBits52 && this.options.granule !== 65536;
  }

  vaBitsOf(half: 0 | 1): number {
    return half === 1 ? (this.options.vaBits1 ?? this.options.vaBits) : this.options.vaBits;
  }

  /** Level of the first lookup for `vaBits` bits: the levels needed to resolve them, counted back from 3. */
  firstLevel(half: 0 | 1): number {
    return 3 - Math.ceil((this.vaBitsOf(half) - this.shift) / this.perLevel) + 1;
  }

  /** Bytes one entry at `level` maps. */
  entrySize(level: number): bigint {
    return 1n << BigInt(this.shift + (3 - level) * this.perLevel);
  }

  private allocateTable(): bigint {
    const address = this.nextTable;
    this.nextTable += BigInt(this.options.granule);
    this.tables.set(address, new BigUint64Array(this.options.granule / 8));
    return address;
  }

  /** Where the tables end: the next free IPA of the table area. */
  get tableAreaEnd(): bigint {
    return this.nextTable;
  }

  /** An output address in descriptor form: bits 51:48 moved where FEAT_LPA / FEAT_LPA2 put them. */
  encodeAddress(address: bigint): bigint {
    const high = address >> 48n;
    if (!this.options.outputBits52 || high === 0n) return address;
    if (this.lpa2) return (address & ((1n << 50n) - 1n)) | ((address >> 50n) << 8n);
    return (address & ((1n << 48n) - 1n)) | (high << 12n);
  }

  private decodeTableAddress(descriptor: bigint): bigint {
    if (!this.options.outputBits52) return descriptor & ((1n << 48n) - 1n) & ~(BigInt(this.options.granule) - 1n);
    if (this.lpa2) {
      return (descriptor & ((1n << 50n) - 1n) & ~(BigInt(this.options.granule) - 1n)) | (((descriptor >> 8n) & 3n) << 50n);
    }
    return (descriptor & ((1n << 48n) - 1n) & ~0xffffn) | (((descriptor >> 12n) & 0xfn) << 48n);
  }

  private half(va: bigint): 0 | 1 {
    return ((va >> 55n) & 1n) === 1n ? 1 : 0;
  }

  private index(va: bigint, level: number, half: 0 | 1): number {
    const low = this.shift + (3 - level) * this.perLevel;
    const top = level === this.firstLevel(half) ? this.vaBitsOf(half) : low + this.perLevel;
    return Number((va >> BigInt(low)) & ((1n << BigInt(top - low)) - 1n));
  }

  /** The table at `level` that holds `va`'s entry, creating the tables above it as needed. */
  private tableFor(va: bigint, level: number): bigint {
    const half = this.half(va);
    let table = this.roots[half];
    for (let l = this.firstLevel(half); l < level; l++) {
      const entries = this.tables.get(table)!;
      const i = this.index(va, l, half);
      if ((entries[i] & 3n) !== 3n) entries[i] = this.encodeAddress(this.allocateTable()) | 3n;
      table = this.decodeTableAddress(entries[i]);
    }
    return table;
  }

  /** Maps [va, va + size) to [ipa, ...) with leaves at `leafLevel` (3: pages; lower: blocks). */
  map(va: bigint, ipa: bigint, size: bigint, leafLevel = 3): void {
    const step = this.entrySize(leafLevel);
    if (va % step || ipa % step || size % step) throw new RangeError(`map: ${va}, ${ipa}, ${size} not aligned to level ${leafLevel}`);
    for (let at = 0n; at < size; at += step) {
      const table = this.tableFor(va + at, leafLevel);
      const kind = leafLevel === 3 ? 3n : 1n;
      this.tables.get(table)![this.index(va + at, leafLevel, this.half(va))] = this.encodeAddress(ipa + at) | AF | kind;
    }
  }

  /** Overwrites the descriptor of `va` at `level` (the tables above must exist): to make a fault. */
  setDescriptor(va: bigint, level: number, descriptor: bigint): void {
    const table = this.tableFor(va, level);
    this.tables.get(table)![this.index(va, level, this.half(va))] = descriptor;
  }

  writeTo(vm: { writeMemory(ipa: bigint, bytes: Uint8Array): void }): void {
    for (const [address, entries] of this.tables) vm.writeMemory(address, new Uint8Array(entries.buffer.slice(0)));
  }

  ttbr(half: 0 | 1): bigint {
    const root = this.roots[half];
    if (!this.options.outputBits52) return root;
    // BADDR[51:48] in TTBR bits 5:2 whenever output addresses are 52-bit.
    return (root & ((1n << 48n) - 1n)) | ((root >> 48n) << 2n);
  }

  tcr(): bigint {
    const o = this.options;
    const ips = o.outputBits52 ? 6n : 5n;
    return (
      BigInt(64 - this.vaBitsOf(0)) |
      (TG0[o.granule] << 14n) |
      (BigInt(64 - this.vaBitsOf(1)) << 16n) |
      (TG1[o.granule] << 30n) |
      (ips << 32n) |
      ((o.tbi0 ?? true) ? 1n << 37n : 0n) |
      ((o.tbi1 ?? true) ? 1n << 38n : 0n) |
      (this.lpa2 ? 1n << 59n : 0n)
    );
  }

  registers(): { TTBR0_EL1: bigint; TTBR1_EL1: bigint; TCR_EL1: bigint; SCTLR_EL1: bigint } {
    return {
      TTBR0_EL1: this.ttbr(0),
      TTBR1_EL1: this.ttbr(1),
      TCR_EL1: this.tcr(),
      SCTLR_EL1: (this.options.mmuOn ?? true) ? 0x30d5_d99dn : 0x30d5_d99cn,
    };
  }

  setRegisters(vcpu: Vcpu): void {
    for (const [name, value] of Object.entries(this.registers()) as [keyof ReturnType<PageTableBuilder['registers']>, bigint][]) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, value, true);
      vcpu.setRegister(namedSysRegisterId(name), bytes);
    }
  }
}
