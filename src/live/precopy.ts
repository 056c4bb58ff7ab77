/**
 * Pre-copy: the loop a live checkpoint or a migration runs while the guest
 * keeps running. Round 0 copies every page (memory and tags) with dirty
 * logging already on; each later round copies the pages the dirty log says
 * the guest wrote meanwhile; once a round would be small enough (or the
 * round budget is spent) the guest is paused, the last dirty pages and the
 * vCPU registers are copied, and only that last round is downtime.
 *
 * A page copied while the guest writes it may be torn; that is harmless,
 * because the write marked the page in the log after KVM_GET_DIRTY_LOG
 * returned, so a later round (at the latest the paused one) copies it again.
 * Tag stores mark pages too (measured on KVM: conformance row
 * dirty-log-tag-store-only), so tags need no re-read at the pause; a VMM on
 * a kernel that did not log them would set `rereadTagsAtPause`.
 *
 * Where the pages go is a `PrecopySink`: a migration stream
 * (stream-sink.ts) or a staging VM saved as one file (live-checkpoint.ts).
 */
import type { VcpuState } from '../format/registers.js';
import { readGuestTags } from '../vm/tag-copy.js';
import { dirtyBitmapBytes, isPageDirty, type MemorySlot, type Vm } from '../vm/vm.js';
import { vcpuStates } from '../writer/vcpu-state.js';
import type { PagesFrame } from './migration-frames.js';
import type { StreamLayout } from './stream-layout.js';

/** The running guest, as pre-copy needs it. */
export interface LiveGuest {
  /** Stops every vCPU and completes pending exits: after it resolves no guest code runs and registers are final. */
  pause(): void | Promise<void>;
  /** Called after each copied run while the guest runs; a guest run in this thread (the simulator) runs a slice here. */
  runSlice?(): void | Promise<void>;
}

/** Where pre-copy puts what it copies, in order: layout, pages and round ends, then the vCPUs. */
export interface PrecopySink {
  layout(layout: StreamLayout): void | Promise<void>;
  pages(frame: PagesFrame): void | Promise<void>;
  endRound(round: number, pages: number): void | Promise<void>;
  finish(vcpus: readonly VcpuState[]): void | Promise<void>;
}

export interface PrecopyOptions {
  /** Rounds copied while the guest runs, round 0 included; 0 is stop-and-copy. Default 8. */
  readonly maxRounds?: number;
  /** Pause as soon as the next round would copy this many pages or fewer. Default 16. */
  readonly stopAtPages?: number;
  /** Pages per PAGES frame at most (memory held at once). Default 1 MiB of pages. */
  readonly framePages?: number;
  /** Copy the tags of every page of tagged slots again at the pause, for a kernel that does not log tag stores. */
  readonly rereadTagsAtPause?: boolean;
  /** Called after each round. */
  readonly onRound?: (round: RoundStats) => void;
}

export interface RoundStats {
  readonly round: number;
  readonly pages: number;
  /** Memory and tag bytes copied. */
  readonly bytes: number;
  /** The round ran with the guest paused (the last one). */
  readonly paused: boolean;
  readonly milliseconds: number;
}

export interface PrecopySummary {
  readonly rounds: readonly RoundStats[];
  /** From the pause request to the vCPU state handed to the sink: how long the guest did not run. */
  readonly downtimeMilliseconds: number;
  readonly bytes: number;
}

/** Pages to copy, per slot, as dirty bitmaps. */
type PageSet = Map<number, Uint8Array>;

const DEFAULT_MAX_ROUNDS = 8;
const DEFAULT_STOP_AT_PAGES = 16;
const FRAME_BYTES = 1024 * 1024;

/** Whether the source keeps a slot's tags: as the writer decides it (isSlotTagged, else every writable slot of an MTE VM). */
function slotTagged(vm: Vm, slot: MemorySlot): boolean {
  if (!vm.mteEnabled) return false;
  return vm.isSlotTagged ? vm.isSlotTagged(slot.slot) : !slot.readOnly;
}

export function streamLayoutOf(vm: Vm): StreamLayout {
  return {
    pageSize: vm.pageSize,
    mteEnabled: vm.mteEnabled,
    backend: vm.backend,
    slots: vm.memorySlots().map((slot) => ({
      slot: slot.slot,
      name: slot.name,
      guestAddress: slot.guestAddress,
      size: slot.size,
      readOnly: slot.readOnly,
      tagged: slotTagged(vm, slot),
    })),
  };
}

export async function precopy(vm: Vm, guest: LiveGuest, sink: PrecopySink, options: PrecopyOptions = {}): Promise<PrecopySummary> {
  const maxRounds = options.maxRounds ?? DEFAULT_MAX_ROUNDS;
  const stopAtPages = options.stopAtPages ?? DEFAULT_STOP_AT_PAGES;
  const copier = new RoundCopier(vm, sink, options.framePages ?? Math.max(1, FRAME_BYTES / vm.pageSize));
  const slots = vm.memorySlots();
  await sink.layout(streamLayoutOf(vm));
  for (const slot of slots) vm.setDirtyLogging(slot.slot, true);
  const rounds: RoundStats[] = [];
  const record = (stats: RoundStats): void => {
    rounds.push(stats);
    options.onRound?.(stats);
  };
  try {
    let pending = allPages(vm, slots);
    for (let round = 0; ; round++) {
      if (round >= maxRounds || (round > 0 && countPages(pending) <= stopAtPages)) {
        const pausedAt = performance.now();
        await guest.pause();
        if (round > 0) pending = union(pending, dirtyPages(vm, slots));
        if (options.rereadTagsAtPause) copier.rereadTags(slots, pending);
        record(await copier.copyRound(round, pending, true, null));
        await sink.finish(vcpuStates(vm));
        const downtimeMilliseconds = performance.now() - pausedAt;
        return { rounds, downtimeMilliseconds, bytes: rounds.reduce((sum, r) => sum + r.bytes, 0) };
      }
      record(await copier.copyRound(round, pending, false, guest));
      pending = dirtyPages(vm, slots);
    }
  } finally {
    for (const slot of slots) vm.setDirtyLogging(slot.slot, false);
  }
}

function allPages(vm: Vm, slots: readonly MemorySlot[]): PageSet {
  const set: PageSet = new Map();
  for (const slot of slots) {
    const pages = Number(slot.size / BigInt(vm.pageSize));
    const bits = new Uint8Array(dirtyBitmapBytes(pages));
    for (let page = 0; page < pages; page++) bits[page >> 3] |= 1 << (page & 7);
    set.set(slot.slot, bits);
  }
  return set;
}

function dirtyPages(vm: Vm, slots: readonly MemorySlot[]): PageSet {
  return new Map(slots.map((slot) => [slot.slot, vm.getDirtyLog(slot.slot)]));
}

function union(a: PageSet, b: PageSet): PageSet {
  const result: PageSet = new Map();
  for (const [slot, bits] of a) {
    const other = b.get(slot);
    result.set(slot, other ? bits.map((byte, i) => byte | (other[i] ?? 0)) : bits);
  }
  return result;
}

function countPages(set: PageSet): number {
  let count = 0;
  for (const bits of set.values()) for (const byte of bits) for (let b = byte; b; b &= b - 1) count++;
  return count;
}

/** Copies the runs of a page set into PAGES frames; owns the per-round accounting. */
class RoundCopier {
  /** Slots whose tags must be copied at the pause whatever the log says (rereadTagsAtPause). */
  private readonly forceTags = new Set<number>();

  constructor(
    private readonly vm: Vm,
    private readonly sink: PrecopySink,
    private readonly framePages: number,
  ) {}

  /** Marks every page of every tagged slot for the paused round. */
  rereadTags(slots: readonly MemorySlot[], pending: PageSet): void {
    for (const slot of slots) {
      if (!slotTagged(this.vm, slot)) continue;
      const pages = Number(slot.size / BigInt(this.vm.pageSize));
      const bits = pending.get(slot.slot) ?? new Uint8Array(dirtyBitmapBytes(pages));
      for (let page = 0; page < pages; page++) bits[page >> 3] |= 1 << (page & 7);
      pending.set(slot.slot, bits);
      this.forceTags.add(slot.slot);
    }
  }

  async copyRound(round: number, pending: PageSet, paused: boolean, guest: LiveGuest | null): Promise<RoundStats> {
    const started = performance.now();
    let pages = 0;
    let bytes = 0;
    for (const slot of this.vm.memorySlots()) {
      const bits = pending.get(slot.slot);
      if (!bits) continue;
      const tagged = slotTagged(this.vm, slot);
      const slotPages = Number(slot.size / BigInt(this.vm.pageSize));
      for (const [first, count] of runs(bits, slotPages, this.framePages)) {
        const frame = this.readRun(slot, round, first, count, tagged);
        await this.sink.pages(frame);
        pages += count;
        bytes += frame.memory.length + (frame.tags?.length ?? 0);
        if (guest?.runSlice) await guest.runSlice();
      }
    }
    await this.sink.endRound(round, pages);
    return { round, pages, bytes, paused, milliseconds: performance.now() - started };
  }

  private readRun(slot: MemorySlot, round: number, firstPage: number, pageCount: number, tagged: boolean): PagesFrame {
    const address = slot.guestAddress + BigInt(firstPage * this.vm.pageSize);
    const memory = new Uint8Array(pageCount * this.vm.pageSize);
    this.vm.readMemory(address, memory);
    let tags: Uint8Array | null = null;
    if (tagged) {
      tags = new Uint8Array(memory.length / 16);
      readGuestTags(this.vm, address, tags);
    }
    return { slot: slot.slot, round, firstPage, pageCount, memory, tags };
  }
}

/** Runs of consecutive set pages, each at most `limit` pages: [first, count]. */
function* runs(bits: Uint8Array, pages: number, limit: number): Generator<[number, number]> {
  let page = 0;
  while (page < pages) {
    if (!isPageDirty(bits, page)) {
      page++;
      continue;
    }
    const first = page;
    while (page < pages && page - first < limit && isPageDirty(bits, page)) page++;
    yield [first, page - first];
  }
}
