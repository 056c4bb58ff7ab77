/**
 * Test vectors: spec/vectors/NAME.json describes a snapshot's exact content
 * (spec/vectors/README.md); NAME.vmsnap is that snapshot as vmsnap writes it.
 * `vectorVm` builds the guest a JSON describes, `expectedPage` gives the bytes
 * and tags of any page, for comparing with what a reader decodes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SimulatedVm } from '../../src/backends/simulated/simulated-vm.js';
import { writeGuestTags } from '../../src/vm/tag-copy.js';
import type { Vcpu, Vm } from '../../src/vm/vm.js';

export const VECTOR_DIR = new URL('../../spec/vectors/', import.meta.url).pathname;

export interface VectorPage {
  page: number;
  data?: { hex: string; repeat: boolean };
  /** One hex digit per granule. */
  tags?: string;
}

export interface VectorRegion {
  name: string;
  guest_address: string;
  size: string;
  mte: boolean;
  read_only: boolean;
  slot: number;
  pages: VectorPage[];
}

export interface Vector {
  description: string;
  /** A diff vector (format 1.1): the vector of its parent; the JSON is the chain's content. */
  parent?: string;
  page_size: number;
  pages_per_chunk: number;
  level: number;
  snapshot_id: string;
  created_ms: string;
  tool: string;
  annotations: Record<string, string>;
  regions: VectorRegion[];
  vcpus: Array<{ id: number; registers: Array<[string, string]> }>;
  blobs: Array<{ name: string; data: string }>;
}

export function vectorNames(): string[] {
  return readdirSync(VECTOR_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

export function loadVector(name: string): Vector {
  return JSON.parse(readFileSync(join(VECTOR_DIR, `${name}.json`), 'utf8')) as Vector;
}

export function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

export function expectedPage(vector: Vector, region: VectorRegion, page: number): { data: Uint8Array; tags: Uint8Array } {
  const data = new Uint8Array(vector.page_size);
  const tags = new Uint8Array(vector.page_size / 16);
  const entry = region.pages.find((p) => p.page === page);
  if (entry?.data) {
    const pattern = hexBytes(entry.data.hex);
    if (entry.data.repeat)
      for (let i = 0; i < data.length; i += pattern.length) data.set(pattern.subarray(0, Math.min(pattern.length, data.length - i)), i);
    else data.set(pattern);
  }
  if (entry?.tags) for (let g = 0; g < tags.length; g++) tags[g] = parseInt(entry.tags[g], 16);
  return { data, tags };
}

class VectorVcpu implements Vcpu {
  constructor(
    readonly id: number,
    private readonly registers: Map<bigint, Uint8Array>,
  ) {}
  registerIds(): bigint[] {
    return [...this.registers.keys()];
  }
  getRegister(id: bigint): Uint8Array {
    return this.registers.get(id)!;
  }
  setRegister(id: bigint, value: Uint8Array): void {
    this.registers.set(id, value);
  }
}

/** The guest a vector describes: a simulated VM whose vCPUs hold exactly the vector's registers. */
export function vectorVm(vector: Vector): Vm {
  const vm = new SimulatedVm({ pageSize: vector.page_size });
  if (vector.regions.some((r) => r.mte)) vm.enableMte();
  for (const region of vector.regions) {
    const guestAddress = BigInt(region.guest_address);
    vm.addMemorySlot({ slot: region.slot, name: region.name, guestAddress, size: BigInt(region.size), readOnly: region.read_only });
    for (const entry of region.pages) {
      const { data, tags } = expectedPage(vector, region, entry.page);
      const at = guestAddress + BigInt(entry.page * vector.page_size);
      vm.writeMemory(at, data);
      if (entry.tags) writeGuestTags(vm, at, tags);
    }
  }
  const vcpus = vector.vcpus.map((v) => new VectorVcpu(v.id, new Map(v.registers.map(([id, value]) => [BigInt(id), hexBytes(value)]))));
  const tagged = new Set(vector.regions.filter((r) => r.mte).map((r) => r.slot));
  return Object.assign(Object.create(vm), { vcpus: () => vcpus, isSlotTagged: (slot: number) => tagged.has(slot) });
}
