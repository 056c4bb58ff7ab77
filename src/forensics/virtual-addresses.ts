/**
 * A snapshot's guest as one of its vCPUs sees it: virtual addresses turned
 * into IPAs through that vCPU's saved page tables, and virtual ranges split
 * into the physical pieces that back them (consecutive virtual pages need
 * not be consecutive in guest memory). With the MMU off, a virtual address
 * is its IPA.
 */

import type { SnapshotReader } from '../format/model.js';
import { ForensicsArgumentError } from './errors.js';
import { GuestMemory } from './guest-memory.js';
import { type Stage1Regime, stage1RegimeOf } from './stage1-config.js';
import { Stage1Walker, type Translation } from './stage1-walk.js';
import { NoPageTablesError } from './translation-errors.js';

/** A piece of a virtual range that one mapping backs. */
export interface PhysicalPiece {
  readonly virtualAddress: bigint;
  readonly ipa: bigint;
  readonly length: bigint;
}

export class VirtualAddressSpace {
  readonly walker: Stage1Walker | null;

  constructor(
    readonly vcpu: number,
    readonly regime: Stage1Regime,
    readonly memory: GuestMemory,
  ) {
    this.walker = regime.mmuOn ? new Stage1Walker(regime, memory) : null;
  }

  /** The walk of `va`; with the MMU off, an identity translation without steps. */
  async translate(va: bigint): Promise<Translation> {
    if (this.walker) return this.walker.translate(va);
    return {
      virtualAddress: va,
      ipa: va,
      half: 0,
      granule: this.regime.halves[0].granule,
      vaBits: 64,
      mappingSize: 1n,
      mappingVirtualStart: va,
      mappingIpaStart: va,
      logicalTag: Number((va >> 56n) & 0xfn),
      steps: [],
    };
  }

  /**
   * `va` without its tag: the top byte made what its half expects (all ones
   * for TTBR1, zeros for TTBR0) when that half ignores it; unchanged when
   * the top byte is part of the address (the walk then judges it).
   */
  untagged(va: bigint): bigint {
    const half = this.regime.halves[Number((va >> 55n) & 1n)];
    if (this.walker && !half.topByteIgnored) return va;
    return half.half === 1 && this.walker ? va | (0xffn << 56n) : va & ((1n << 56n) - 1n);
  }

  /** The IPA of `va`. */
  async ipaOf(va: bigint): Promise<bigint> {
    return (await this.translate(va)).ipa;
  }

  /** [va, va + length) as physical pieces, in virtual order; faults name the first unmapped address. */
  async pieces(va: bigint, length: bigint): Promise<PhysicalPiece[]> {
    if (!this.walker) return [{ virtualAddress: va, ipa: va, length }];
    const out: PhysicalPiece[] = [];
    let at = va;
    const end = va + length;
    while (at < end) {
      const t = await this.walker.translate(at);
      const offsetInMapping = t.ipa - t.mappingIpaStart;
      const room = t.mappingSize - offsetInMapping;
      const take = end - at < room ? end - at : room;
      const last = out[out.length - 1];
      if (last && last.ipa + last.length === t.ipa) out[out.length - 1] = { ...last, length: last.length + take };
      else out.push({ virtualAddress: at, ipa: t.ipa, length: take });
      at += take;
    }
    return out;
  }
}

/** The address space of vCPU `vcpu` (default the first) of an open snapshot. */
export async function virtualAddressSpace(
  reader: SnapshotReader,
  vcpu = 0,
  memory = new GuestMemory(reader),
): Promise<VirtualAddressSpace> {
  const vcpus = await reader.vcpus();
  if (!vcpus.length) throw new NoPageTablesError(vcpu, 'the snapshot has no vCPUs, so no page-table registers');
  const state = vcpus.find((v) => v.id === vcpu);
  if (!state) throw new ForensicsArgumentError(`no vCPU ${vcpu}; the snapshot has vCPUs ${vcpus.map((v) => v.id).join(', ')}`);
  return new VirtualAddressSpace(vcpu, stage1RegimeOf(state), memory);
}
