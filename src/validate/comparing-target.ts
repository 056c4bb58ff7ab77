/**
 * A restore target that keeps nothing: every page and tag that restore
 * writes is compared on the spot with the same range of an expected guest (a
 * `VmSource`, such as the workload guest generated on demand), and the pages
 * restore leaves alone must be zero there. Restoring into it proves a
 * snapshot reproduces a guest, page for page and granule for granule, in
 * memory bounded by the chunk size instead of the guest size.
 */
import { equalBytes, isAllZero } from '../format/bytes.js';
import { GRANULE_SIZE } from '../format/constants.js';
import { forEachRun } from '../format/page-runs.js';
import { jsonResult } from '../json.js';
import { readGuestTags } from '../vm/tag-copy.js';
import {
  type CopyMteTagsRequest,
  type GuestAddress,
  type MemorySlotSpec,
  type SourceSlot,
  TAGS_TO_GUEST,
  type VcpuTarget,
  VmErrnoError,
  type VmFactory,
  type VmSource,
  type VmTarget,
} from '../vm/vm.js';
import type { VmComparison, VmDifference } from './compare.js';

/** Pages of one slot that restore wrote: data, and tags. */
interface SlotRecord {
  readonly slot: SourceSlot;
  readonly dataWritten: Uint8Array;
  readonly tagsWritten: Uint8Array;
}

const STEP_BYTES = 1024 * 1024;

export class ComparingTarget implements VmTarget {
  readonly backend = 'comparison';
  readonly pageSize: number;
  private readonly slots: SlotRecord[] = [];
  private readonly differences: VmDifference[] = [];
  private readonly registers = new Map<number, Map<bigint, Uint8Array>>();
  private mteEnabled = false;

  constructor(
    private readonly expected: VmSource,
    private readonly limit = 10,
  ) {
    this.pageSize = expected.pageSize;
  }

  /**
   * Buffers for the expected bytes, reused from call to call (each is done with before the call returns): a
   * fresh one per write was a chunk of garbage per chunk restored, and the collector let tens of MiB of it pile up.
   */
  private readonly scratchBuffers = [new Uint8Array(0), new Uint8Array(0)];

  private scratch(which: 0 | 1, length: number): Uint8Array {
    if (this.scratchBuffers[which].length < length) this.scratchBuffers[which] = new Uint8Array(length);
    return this.scratchBuffers[which].subarray(0, length);
  }

  private note(difference: VmDifference): void {
    if (this.differences.length < this.limit) this.differences.push(difference);
  }

  enableMte(): void {
    this.mteEnabled = true;
  }

  addMemorySlot(spec: MemorySlotSpec): void {
    const match = this.expected.memorySlots().find((s) => s.slot === spec.slot);
    const same =
      match &&
      match.name === spec.name &&
      match.guestAddress === spec.guestAddress &&
      match.size === spec.size &&
      match.readOnly === (spec.readOnly ?? false);
    if (!same) {
      this.note({ kind: 'layout', message: `memory slot ${spec.slot} (${spec.name}) differs from the expected guest's` });
      return;
    }
    const pages = Number(spec.size / BigInt(this.pageSize));
    this.slots.push({ slot: match, dataWritten: new Uint8Array(Math.ceil(pages / 8)), tagsWritten: new Uint8Array(Math.ceil(pages / 8)) });
  }

  private record(operation: string, guestAddress: GuestAddress, length: number): { record: SlotRecord; firstPage: number } {
    const record = this.slots.find(
      (r) => guestAddress >= r.slot.guestAddress && guestAddress + BigInt(length) <= r.slot.guestAddress + r.slot.size,
    );
    if (!record) throw new VmErrnoError('EFAULT', operation, `0x${guestAddress.toString(16)} is in no slot`);
    return { record, firstPage: Number((guestAddress - record.slot.guestAddress) / BigInt(this.pageSize)) };
  }

  writeMemory(guestAddress: GuestAddress, source: Uint8Array): void {
    const { record, firstPage } = this.record('write', guestAddress, source.length);
    const expected = this.scratch(0, source.length);
    this.expected.readMemory(guestAddress, expected);
    this.compareBytes('data', guestAddress, expected, source, 1);
    markPages(record.dataWritten, firstPage, Math.ceil(source.length / this.pageSize));
  }

  copyMteTags(request: CopyMteTagsRequest): number {
    if (request.flags !== TAGS_TO_GUEST || !request.buffer) throw new VmErrnoError('EINVAL', 'KVM_ARM_MTE_COPY_TAGS');
    const length = Number(request.length);
    const { record, firstPage } = this.record('KVM_ARM_MTE_COPY_TAGS', request.guestIpa, length);
    const actual = request.buffer.subarray(0, length / GRANULE_SIZE);
    if (!this.expected.mteEnabled) {
      this.note({ kind: 'tag', guestAddress: request.guestIpa, message: 'tags restored into a guest that has no MTE' });
    } else {
      const expected = this.scratch(0, actual.length);
      readGuestTags(this.expected, request.guestIpa, expected);
      const masked = this.scratch(1, actual.length);
      for (let i = 0; i < actual.length; i++) masked[i] = actual[i] & 0xf;
      this.compareBytes('tag', request.guestIpa, expected, masked, GRANULE_SIZE);
    }
    markPages(record.tagsWritten, firstPage, length / this.pageSize);
    return length;
  }

  private compareBytes(kind: 'data' | 'tag', guestAddress: GuestAddress, expected: Uint8Array, actual: Uint8Array, unit: number): void {
    if (equalBytes(expected, actual)) return;
    const at = expected.findIndex((value, i) => value !== actual[i]);
    const what = kind === 'data' ? 'byte' : 'allocation tag';
    this.note({ kind, guestAddress: guestAddress + BigInt(at * unit), message: `${what} differs: ${expected[at]} vs ${actual[at]}` });
  }

  createVcpu(id: number): VcpuTarget {
    const values = new Map<bigint, Uint8Array>();
    this.registers.set(id, values);
    return { id, setRegister: (register, value) => void values.set(register, Uint8Array.from(value)) };
  }

  close(): void {}

  /**
   * The comparison, once restore has returned: pages restore did not write
   * must be zero in the expected guest (and their tags too); vCPUs are
   * compared register by register, unless the snapshot held none (raw files).
   */
  finish(onProgress?: (bytesDone: bigint, bytesTotal: bigint) => void): VmComparison {
    const expectedSlots = this.expected.memorySlots();
    if (this.slots.length !== expectedSlots.length)
      this.note({ kind: 'layout', message: `${this.slots.length} memory slots vs ${expectedSlots.length}` });
    const withTags = this.mteEnabled && this.expected.mteEnabled;
    let pagesCompared = 0;
    let granulesCompared = 0;
    const bytesTotal = this.slots.reduce((sum, r) => sum + r.slot.size, 0n);
    let bytesDone = 0n;
    for (const record of this.slots) {
      this.checkUnwritten(record, withTags && !record.slot.readOnly, (bytes) => {
        bytesDone += BigInt(bytes);
        onProgress?.(bytesDone, bytesTotal);
      });
      pagesCompared += Number(record.slot.size / BigInt(this.pageSize));
      if (withTags && !record.slot.readOnly) granulesCompared += Number(record.slot.size / BigInt(GRANULE_SIZE));
    }
    this.compareVcpus();
    return jsonResult({ equal: this.differences.length === 0, pagesCompared, granulesCompared, differences: [...this.differences] });
  }

  /** Pages restore left alone hold zeros in a fresh VM: the expected guest must have zeros there too. */
  private checkUnwritten(record: SlotRecord, withTags: boolean, progress: (bytes: number) => void): void {
    const pagesPerStep = STEP_BYTES / this.pageSize;
    const pages = Number(record.slot.size / BigInt(this.pageSize));
    for (let first = 0; first < pages; first += pagesPerStep) {
      const count = Math.min(pagesPerStep, pages - first);
      const address = record.slot.guestAddress + BigInt(first * this.pageSize);
      // Only the runs of pages restore left alone are read from the expected guest.
      forEachRun(
        count,
        (page) => !isMarked(record.dataWritten, first + page),
        (runFirst, pages) => {
          const data = this.scratch(0, pages * this.pageSize);
          this.expected.readMemory(address + BigInt(runFirst * this.pageSize), data);
          this.checkZeros('data', address + BigInt(runFirst * this.pageSize), data, this.pageSize, 1);
        },
      );
      if (withTags) {
        forEachRun(
          count,
          (page) => !isMarked(record.tagsWritten, first + page),
          (runFirst, pages) => {
            const tags = this.scratch(0, (pages * this.pageSize) / GRANULE_SIZE);
            readGuestTags(this.expected, address + BigInt(runFirst * this.pageSize), tags);
            this.checkZeros('tag', address + BigInt(runFirst * this.pageSize), tags, this.pageSize / GRANULE_SIZE, GRANULE_SIZE);
          },
        );
      }
      progress(count * this.pageSize);
    }
  }

  /** `values` (pages restore did not write, from `address` on) must be all zero. */
  private checkZeros(kind: 'data' | 'tag', address: GuestAddress, values: Uint8Array, perPage: number, unit: number): void {
    if (isAllZero(values)) return;
    const at = values.findIndex((value) => value !== 0);
    const where = address + BigInt(Math.floor(at / perPage) * this.pageSize + (at % perPage) * unit);
    this.note({
      kind,
      guestAddress: where,
      message: `${kind === 'data' ? 'byte' : 'allocation tag'} differs: ${values[at]} vs 0 (not restored)`,
    });
  }

  private compareVcpus(): void {
    // Raw files keep no registers: a snapshot of them restores memory and tags only.
    if (this.registers.size === 0) return;
    const expected = this.expected.vcpus();
    if (expected.length !== this.registers.size) {
      this.note({ kind: 'vcpu', message: `${expected.length} vCPUs vs ${this.registers.size}` });
      return;
    }
    for (const vcpu of expected) {
      const actual = this.registers.get(vcpu.id);
      for (const id of vcpu.registerIds()) {
        const value = actual?.get(id);
        if (!value || !equalBytes(vcpu.getRegister(id), value))
          this.note({ kind: 'vcpu', message: `vCPU ${vcpu.id} register 0x${id.toString(16)} differs` });
      }
    }
  }
}

function markPages(bitmap: Uint8Array, first: number, count: number): void {
  for (let page = first; page < first + count; page++) bitmap[page >> 3] |= 1 << (page & 7);
}

function isMarked(bitmap: Uint8Array, page: number): boolean {
  return (bitmap[page >> 3] & (1 << (page & 7))) !== 0;
}

/** A factory for restoreSnapshot whose one VM compares with `expected`. */
export function comparingFactory(expected: VmSource, limit?: number): VmFactory<ComparingTarget> {
  return { backend: 'comparison', createVm: () => new ComparingTarget(expected, limit) };
}
