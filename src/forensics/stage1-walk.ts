/**
 * The stage-1 table walk of a guest virtual address, done on a snapshot the
 * way the MMU does it on the running guest (Arm ARM D8.2): pick the half by
 * bit 55, check the address is in range for that half (top byte ignored when
 * TBI is set, so tagged pointers translate), then one descriptor per level
 * from the table base down to a block or a page. Each descriptor is read from
 * the snapshot's memory (GuestMemory: a few decoded chunks cached), so a walk
 * costs a handful of 8-byte reads and no more memory than those chunks.
 *
 * Walks are cached per leaf (the last translations used), since a scan asks
 * for many addresses in the same pages.
 */

import { hex } from './errors.js';
import type { GuestMemory } from './guest-memory.js';
import { blockAllowed, type Granule, granuleShift, type HalfRegime, type Stage1Regime, startLevel } from './stage1-config.js';
import { TranslationFaultError } from './translation-errors.js';

export type DescriptorKind = 'table' | 'block' | 'page' | 'invalid';

/** One lookup of a walk. */
export interface WalkStep {
  readonly level: number;
  /** IPA of the table read at this level. */
  readonly tableAddress: bigint;
  readonly index: number;
  /** IPA of the descriptor (table address + 8 * index). */
  readonly descriptorAddress: bigint;
  readonly descriptor: bigint;
  readonly kind: DescriptorKind;
}

export interface Translation {
  readonly virtualAddress: bigint;
  /** The address the tables translate: the virtual address with its top byte cleared or sign-extended when ignored. */
  readonly ipa: bigint;
  /** 0 for TTBR0_EL1, 1 for TTBR1_EL1. */
  readonly half: 0 | 1;
  readonly granule: Granule;
  readonly vaBits: number;
  /** Size of the block or page that maps the address, and where it starts (virtual and physical). */
  readonly mappingSize: bigint;
  readonly mappingVirtualStart: bigint;
  readonly mappingIpaStart: bigint;
  /** Bits 59:56 of the virtual address. */
  readonly logicalTag: number;
  readonly steps: readonly WalkStep[];
}

const MASK64 = (1n << 64n) - 1n;

function bits(value: bigint, high: number, low: number): bigint {
  return (value >> BigInt(low)) & ((1n << BigInt(high - low + 1)) - 1n);
}

/** The output address a table or leaf descriptor holds, aligned to `alignShift`. */
function outputAddress(regime: Stage1Regime, granule: Granule, descriptor: bigint, alignShift: number): bigint {
  const lpa2 = regime.lpa2 && granule !== 65536;
  let address = bits(descriptor, lpa2 ? 49 : 47, alignShift) << BigInt(alignShift);
  if (lpa2) address |= bits(descriptor, 9, 8) << 50n;
  else if (regime.outputBits === 52 && granule === 65536) address |= bits(descriptor, 15, 12) << 48n;
  return address;
}

/** The first table's address from TTBRn_EL1: BADDR, with bits 51:48 from TTBR bits 5:2 when output addresses are 52-bit. */
function tableBase(regime: Stage1Regime, half: HalfRegime, topIndexBits: number): bigint {
  const alignShift = Math.max(topIndexBits + 3, regime.outputBits === 52 ? 6 : 3);
  let base = bits(half.ttbr, 47, alignShift) << BigInt(alignShift);
  if (regime.outputBits === 52) base |= bits(half.ttbr, 5, 2) << 48n;
  return base;
}

export class Stage1Walker {
  private readonly leaves = new Map<string, { steps: WalkStep[]; size: bigint; vaStart: bigint; ipaStart: bigint }>();

  constructor(
    readonly regime: Stage1Regime,
    private readonly memory: GuestMemory,
    private readonly cachedLeaves = 4096,
  ) {}

  /** The half an address belongs to and the address the tables see; faults when it is out of range for its half. */
  private place(va: bigint): { half: HalfRegime; address: bigint } {
    const halfIndex = Number(bits(va, 55, 55)) as 0 | 1;
    const half = this.regime.halves[halfIndex];
    const checkedHigh = half.topByteIgnored ? 55 : 63;
    const expected = halfIndex === 1 ? (1n << BigInt(checkedHigh - half.vaBits + 1)) - 1n : 0n;
    if (bits(va, checkedHigh, half.vaBits) !== expected) {
      throw new TranslationFaultError(
        va,
        startLevel(half),
        'translation',
        `bits ${checkedHigh}:${half.vaBits} must all be ${halfIndex} for a ${half.vaBits}-bit TTBR${halfIndex}_EL1 address` +
          (half.topByteIgnored ? '' : ` (TCR_EL1.TBI${halfIndex} is clear: the top byte is part of the address)`),
      );
    }
    if (half.disabled) {
      throw new TranslationFaultError(va, null, 'walk-disabled', `TCR_EL1.EPD${halfIndex} disables walks from TTBR${halfIndex}_EL1`);
    }
    return { half, address: bits(va, half.vaBits - 1, 0) };
  }

  async translate(va: bigint): Promise<Translation> {
    if (va < 0n || va > MASK64) throw new RangeError(`virtual address ${va} is not a 64-bit value`);
    const { half, address } = this.place(va);
    const shift = granuleShift(half.granule);
    const key = `${half.half}:${address >> BigInt(shift)}`;
    let leaf = this.leaves.get(key);
    if (!leaf) {
      leaf = await this.walk(va, half, address);
      this.leaves.set(key, leaf);
      if (this.leaves.size > this.cachedLeaves) this.leaves.delete(this.leaves.keys().next().value as string);
    }
    const offset = address - leaf.vaStart;
    const signExtension = half.half === 1 ? MASK64 ^ ((1n << BigInt(half.vaBits)) - 1n) : 0n;
    return {
      virtualAddress: va,
      ipa: leaf.ipaStart + offset,
      half: half.half,
      granule: half.granule,
      vaBits: half.vaBits,
      mappingSize: leaf.size,
      mappingVirtualStart: leaf.vaStart | signExtension,
      mappingIpaStart: leaf.ipaStart,
      logicalTag: Number(bits(va, 59, 56)),
      steps: leaf.steps,
    };
  }

  private async walk(va: bigint, half: HalfRegime, address: bigint) {
    const regime = this.regime;
    const shift = granuleShift(half.granule);
    const perLevel = shift - 3;
    const first = startLevel(half);
    const topIndexBits = half.vaBits - shift - (3 - first) * perLevel;
    let table = tableBase(regime, half, topIndexBits);
    const steps: WalkStep[] = [];
    for (let level = first; level <= 3; level++) {
      const low = shift + (3 - level) * perLevel;
      const width = level === first ? topIndexBits : perLevel;
      const index = Number(bits(address, low + width - 1, low));
      const descriptorAddress = table + BigInt(index * 8);
      if (!this.memory.regionAt(descriptorAddress)) {
        throw new TranslationFaultError(
          va,
          level,
          'table-outside-memory',
          `the level ${level} table at IPA ${hex(table)} (descriptor ${index} at ${hex(descriptorAddress)}) ` +
            'is in no region of the snapshot',
        );
      }
      const descriptor = await this.memory.readU64(descriptorAddress);
      const type = Number(descriptor & 3n);
      const leafOrTable: DescriptorKind = type === 3 ? (level === 3 ? 'page' : 'table') : type === 1 ? 'block' : 'invalid';
      const step: WalkStep = { level, tableAddress: table, index, descriptorAddress, descriptor, kind: leafOrTable };
      steps.push(step);
      const fault = (why: string) =>
        new TranslationFaultError(
          va,
          level,
          'translation',
          `descriptor ${hex(descriptor)} at IPA ${hex(descriptorAddress)} ` +
            `(index ${index} of the level ${level} table at ${hex(table)}) ${why}`,
        );
      if ((descriptor & 1n) === 0n) throw fault('is invalid (bit 0 clear)');
      if (leafOrTable === 'table') {
        table = outputAddress(regime, half.granule, descriptor, shift);
        continue;
      }
      if (leafOrTable === 'block' && (level === 3 || !blockAllowed(regime, half.granule, level))) {
        throw fault(
          level === 3
            ? 'is reserved (0b01 at level 3)'
            : `is a block, which a ${half.granule / 1024} KiB granule does not allow at level ${level}`,
        );
      }
      const size = 1n << BigInt(low);
      const ipaStart = outputAddress(regime, half.granule, descriptor, low);
      return { steps, size, vaStart: address - (address % size), ipaStart };
    }
    throw new Error('unreachable: level 3 always ends the walk');
  }
}
