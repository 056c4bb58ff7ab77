/**
 * The seeded workload guest as a `VmSource` that holds nothing: every read of
 * memory or tags generates the pages asked for, from (seed, region, frame)
 * alone. Saving it, or comparing a restore with it, takes memory bounded by
 * the chunk, whatever the guest's size, and no time up front; a snapshot of
 * it is byte for byte the snapshot of `createSimulatedGuest` with the same
 * options.
 */
import { GRANULE_SIZE } from '../format/constants.js';
import { SimulatedVcpu } from '../kernel-model/simulated-vcpu.js';
import {
  type CopyMteTagsRequest,
  type GuestAddress,
  type SourceSlot,
  TAGS_FROM_GUEST,
  type Vcpu,
  VmErrnoError,
  type VmSource,
} from '../vm/vm.js';
import { type GeneratedPages, generatePages, type PageBuffers } from './generate.js';
import { seedVcpuRegisters } from './vcpu-state.js';
import { planWorkload, type Workload, type WorkloadOptions, type WorkloadRegion } from './workload-layout.js';

/** Pages are generated in aligned windows of this many bytes: a chunk's memory and tags come from one generation. */
const WINDOW_BYTES = 1024 * 1024;

export interface GeneratedGuestOptions extends WorkloadOptions {
  /** vCPUs with plausible registers; default 2, as createSimulatedGuest. */
  readonly vcpus?: number;
}

export class GeneratedGuest implements VmSource {
  readonly backend = 'simulated';
  readonly workload: Workload;
  readonly pageSize: number;
  readonly mteEnabled: boolean;
  private readonly cpus: Vcpu[] = [];
  private last: { region: WorkloadRegion; pages: GeneratedPages } | undefined;
  private buffers: PageBuffers | undefined;

  constructor(options: GeneratedGuestOptions) {
    this.workload = planWorkload(options);
    this.pageSize = this.workload.pageSize;
    this.mteEnabled = this.workload.regions.some((region) => region.mte);
    for (let id = 0; id < (options.vcpus ?? 2); id++) {
      const vcpu = new SimulatedVcpu(id);
      seedVcpuRegisters(vcpu, this.workload);
      this.cpus.push(vcpu);
    }
  }

  memorySlots(): readonly SourceSlot[] {
    return this.workload.regions.map(({ slot, name, guestAddress, size, readOnly }) => ({ slot, name, guestAddress, size, readOnly }));
  }

  vcpus(): readonly Vcpu[] {
    return this.cpus;
  }

  readMemory(guestAddress: GuestAddress, destination: Uint8Array): void {
    const { region, firstPage, pageCount, skip } = this.pages('read', guestAddress, destination.length);
    const { pages, from } = this.generate(region, firstPage, pageCount);
    const start = from * this.pageSize + skip;
    destination.set(pages.data.subarray(start, start + destination.length));
  }

  /**
   * A window of pages that holds the pages asked for, and where they start in it. The last window is kept: the
   * writer asks for a chunk's tags right after its memory, and restore writes a chunk's runs of pages, then its tags.
   */
  private generate(region: WorkloadRegion, firstPage: number, pageCount: number): { pages: GeneratedPages; from: number } {
    const last = this.last;
    if (
      last?.region === region &&
      firstPage >= last.pages.firstPage &&
      firstPage + pageCount <= last.pages.firstPage + last.pages.pageCount
    ) {
      return { pages: last.pages, from: firstPage - last.pages.firstPage };
    }
    const windowPages = Math.max(1, WINDOW_BYTES / this.pageSize);
    const first = firstPage - (firstPage % windowPages);
    const end = Math.min(region.pageCount, Math.max(first + windowPages, firstPage + pageCount));
    // Generated into the same buffers every time (they never leave this class: reads copy out of them), so that
    // a pass over the guest is not a megabyte of garbage per window for the collector to catch up with (issue 10).
    const bytes = (end - first) * this.pageSize;
    if (!this.buffers || this.buffers.data.length < bytes)
      this.buffers = { data: new Uint8Array(bytes), tags: new Uint8Array(bytes / GRANULE_SIZE) };
    const pages = generatePages(this.workload, region, first, end - first, this.buffers);
    this.last = { region, pages };
    return { pages, from: firstPage - first };
  }

  /** KVM_ARM_MTE_COPY_TAGS, FROM_GUEST only: this guest cannot be written. */
  copyMteTags(request: CopyMteTagsRequest): number {
    const length = Number(request.length);
    if (request.flags !== TAGS_FROM_GUEST) throw new VmErrnoError('EINVAL', 'KVM_ARM_MTE_COPY_TAGS', 'a generated guest is read-only');
    if (request.guestIpa % BigInt(this.pageSize) !== 0n || length % this.pageSize !== 0 || length === 0) {
      throw new VmErrnoError('EINVAL', 'KVM_ARM_MTE_COPY_TAGS', 'not page aligned');
    }
    if (!request.buffer || request.buffer.length < length / GRANULE_SIZE) throw new VmErrnoError('EFAULT', 'KVM_ARM_MTE_COPY_TAGS');
    const { region, firstPage, pageCount } = this.pages('KVM_ARM_MTE_COPY_TAGS', request.guestIpa, length);
    const { pages, from } = this.generate(region, firstPage, pageCount);
    const granulesPerPage = this.pageSize / GRANULE_SIZE;
    request.buffer.set(pages.tags.subarray(from * granulesPerPage, (from + pageCount) * granulesPerPage));
    return length;
  }

  /** The whole pages that hold [guestAddress, guestAddress + length), which must lie in one region. */
  private pages(operation: string, guestAddress: GuestAddress, length: number) {
    const region = this.workload.regions.find(
      (r: WorkloadRegion) => guestAddress >= r.guestAddress && guestAddress + BigInt(length) <= r.guestAddress + r.size,
    );
    if (!region) throw new VmErrnoError('EFAULT', operation, `0x${guestAddress.toString(16)}+${length} is in no region`);
    const offset = Number(guestAddress - region.guestAddress);
    const firstPage = Math.floor(offset / this.pageSize);
    const endPage = Math.ceil((offset + length) / this.pageSize);
    return { region, firstPage, pageCount: endPage - firstPage, skip: offset - firstPage * this.pageSize };
  }
}
