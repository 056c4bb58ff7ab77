/**
 * Restore: a snapshot into a fresh VM, in the order KVM needs
 * (shared/reference/kvm-mte-semantics.md, "Restore order that works"):
 *
 *  1. create the VM and enable MTE before any vCPU exists;
 *  2. create the memslots;
 *  3. write each chunk's RAM, then its tags with TO_GUEST (before any dirty
 *     logging; pages whose tags are all zero need no call on a fresh VM);
 *  4. create the vCPUs and set their registers.
 *
 * From a file, the header, metadata and index are all checked before the VM
 * is even created. From a pipe, the header and metadata are; the index comes
 * last and is checked when it arrives. Either way every chunk's checksums are
 * checked before that chunk is written to the guest.
 */

import type { Readable } from 'node:stream';
import { isPagePresent } from '../format/chunk.js';
import { GRANULE_SIZE } from '../format/constants.js';
import { VmsnapError } from '../format/errors.js';
import type { RamChunk, SnapshotHeader, SnapshotMetadata, TagChunk, VmmBlob } from '../format/model.js';
import { forEachRun } from '../format/page-runs.js';
import { jsonResult } from '../json.js';
import { timed } from '../parallel/phase-clock.js';
import { writeGuestTags } from '../vm/tag-copy.js';
import { memorySlotSpec, type VcpuState, type Vm, type VmFactory, type VmTarget } from '../vm/vm.js';
import { ChainError, mergeOntoParents, openChain, type SnapshotChain, snapshotIdHex } from './chain.js';
import type { SnapshotEvent, SnapshotEventSource } from './events.js';
import { openSnapshot } from './open.js';
import { readSnapshotStream } from './stream.js';

export interface RestoreProgress {
  readonly guestBytesDone: bigint;
  readonly guestBytesTotal: bigint;
}

export interface RestoreOptions {
  threads?: number;
  onProgress?: (progress: RestoreProgress) => void;
  /** From a stream: how long to wait for the next bytes before failing with code "stream-idle" (StreamReadOptions). */
  idleTimeoutMs?: number;
  /**
   * When the source is a diff snapshot: its parents, oldest (a full snapshot)
   * first, as files (findChain finds them beside a file). The source may then
   * be a file or a stream; the VM gets the chain's final state. A diff without
   * them is refused (ChainError "missing-parent").
   */
  parents?: readonly string[];
  /** The 32-byte secret of an encrypted snapshot file (spec/STORE.md section 8). */
  key?: Uint8Array;
}

export interface RestoreSummary {
  readonly guestBytes: bigint;
  readonly ramPagesWritten: number;
  /** TO_GUEST calls made, and the guest bytes they covered. */
  readonly tagCalls: number;
  readonly taggedBytes: bigint;
  readonly vcpus: number;
  readonly durationMs: number;
}

/** A restored VM and what the snapshot held beside its memory. */
export interface RestoredVm<T extends VmTarget = Vm> {
  readonly vm: T;
  readonly blobs: VmmBlob[];
  readonly vcpuStates: VcpuState[];
  readonly metadata: SnapshotMetadata;
  readonly summary: RestoreSummary;
}

/** Restore cannot go on: the target cannot hold the snapshot's pages, or the input ended before its metadata. */
export class RestoreError extends VmsnapError {
  declare readonly code: 'page-size-mismatch' | 'no-metadata';
  constructor(code: 'page-size-mismatch' | 'no-metadata', message: string) {
    super(code, code === 'page-size-mismatch' ? 'usage' : 'invalid-input', message);
  }
}

function createTarget<T extends VmTarget>(factory: VmFactory<T>, header: SnapshotHeader, metadata: SnapshotMetadata): T {
  const vm = factory.createVm({ pageSize: header.pageSize, metadata });
  try {
    if (header.pageSize % vm.pageSize !== 0) {
      throw new RestoreError(
        'page-size-mismatch',
        `the snapshot has ${header.pageSize}-byte pages; a host with ${vm.pageSize}-byte pages cannot place them ` +
          `(it needs a page size that divides ${header.pageSize})`,
      );
    }
    if (metadata.regions.some((region) => region.mte)) vm.enableMte();
    for (const region of metadata.regions) {
      vm.addMemorySlot(memorySlotSpec(region));
    }
    return vm;
  } catch (error) {
    vm.close();
    throw error;
  }
}

class RestoreTarget<T extends VmTarget> {
  ramPagesWritten = 0;
  tagCalls = 0;
  taggedBytes = 0n;
  vcpus = 0;

  constructor(
    readonly vm: T,
    readonly header: SnapshotHeader,
    readonly metadata: SnapshotMetadata,
  ) {}

  private chunkAddress(chunk: RamChunk | TagChunk): bigint {
    return this.metadata.regions[chunk.region].guestAddress + BigInt(chunk.firstPage) * BigInt(this.header.pageSize);
  }

  writeRam(chunk: RamChunk): void {
    const base = this.chunkAddress(chunk);
    const pageSize = this.header.pageSize;
    // Absent pages are zero, as a fresh VM's memory is: only present pages are written, from the present pages
    // packed in order when the reader kept them so (no expansion), else from the expanded chunk.
    let packed = 0;
    forEachRun(
      chunk.pageCount,
      (page) => isPagePresent(chunk.present, page),
      (firstPage, pages) => {
        const bytes = chunk.content
          ? chunk.content.subarray(packed * pageSize, (packed + pages) * pageSize)
          : chunk.data.subarray(firstPage * pageSize, (firstPage + pages) * pageSize);
        this.vm.writeMemory(base + BigInt(firstPage * pageSize), bytes);
        this.ramPagesWritten += pages;
        packed += pages;
      },
    );
  }

  writeTags(chunk: TagChunk): void {
    const base = this.chunkAddress(chunk);
    const granulesPerPage = this.header.pageSize / GRANULE_SIZE;
    // Snapshot pages are whole host pages (the host page size divides the snapshot's), so every run is host-page aligned.
    forEachRun(
      chunk.pageCount,
      (page) => isPagePresent(chunk.present, page),
      (firstPage, pages) => {
        writeGuestTags(
          this.vm,
          base + BigInt(firstPage * this.header.pageSize),
          chunk.tags.subarray(firstPage * granulesPerPage, (firstPage + pages) * granulesPerPage),
        );
        this.tagCalls++;
        this.taggedBytes += BigInt(pages * this.header.pageSize);
      },
    );
  }

  setVcpu(state: VcpuState): void {
    const vcpu = this.vm.createVcpu(state.id);
    for (const register of state.registers) vcpu.setRegister(register.id, register.value);
    this.vcpus++;
  }
}

function isEventSource(source: unknown): source is SnapshotEventSource {
  return typeof source === 'object' && source !== null && typeof (source as SnapshotEventSource).events === 'function';
}

function eventsFrom(
  source: string | Readable | NodeJS.ReadableStream | SnapshotEventSource,
  options: { threads?: number; idleTimeoutMs?: number; key?: Uint8Array; transient: boolean },
): { events: AsyncIterable<SnapshotEvent>; close(): Promise<void> } {
  const { threads, idleTimeoutMs, key } = options;
  if (isEventSource(source)) return { events: source.events(), close: () => source.close() };
  if (typeof source === 'string' && source !== '-') {
    const opened = openSnapshot(source, { threads, key });
    return {
      events: (async function* () {
        const snapshot = await opened;
        yield* snapshot.events(undefined, { transient: options.transient });
      })(),
      close: async () => (await opened.catch(() => null))?.close(),
    };
  }
  const stream = source === '-' ? process.stdin : (source as Readable | NodeJS.ReadableStream);
  return { events: readSnapshotStream(stream, { threads, idleTimeoutMs, key, transient: options.transient }), close: async () => {} };
}

function describeSource(source: string | Readable | NodeJS.ReadableStream | SnapshotEventSource): string {
  return typeof source !== 'string' ? 'the stream' : source === '-' ? 'standard input' : source;
}

/** The source's events, merged onto its parents when there are any; a diff without parents is refused at its DIFF section. */
async function* chainEvents(
  source: string | Readable | NodeJS.ReadableStream | SnapshotEventSource,
  events: AsyncIterable<SnapshotEvent>,
  parents: SnapshotChain | undefined,
): AsyncGenerator<SnapshotEvent> {
  if (parents) {
    yield* mergeOntoParents(parents, events, describeSource(source));
    return;
  }
  for await (const event of events) {
    if (event.type === 'diff') {
      throw new ChainError(
        'missing-parent',
        `${describeSource(source)} is a diff of snapshot ${snapshotIdHex(event.parentId)}: restore it with its parents (the chain)`,
      );
    }
    yield event;
  }
}

/**
 * Restores a snapshot (a path, '-' for standard input, a stream, or another
 * source of events such as a snapshot in a chunk store) into a new
 * VM from `factory`. On any error the new VM is closed and the error thrown:
 * a half-restored VM is never handed out.
 */
export async function restoreSnapshot<T extends VmTarget = Vm>(
  source: string | Readable | NodeJS.ReadableStream | SnapshotEventSource,
  factory: VmFactory<T>,
  options: RestoreOptions = {},
): Promise<RestoredVm<T>> {
  const started = performance.now();
  const parents = options.parents?.length ? await openChain(options.parents, { threads: options.threads }) : undefined;
  // Read into reused memory: a chain merge copies each diff chunk's pages out before it releases it.
  const { events: sourceEvents, close: closeSource } = eventsFrom(source, { ...options, transient: true });
  const events = chainEvents(source, sourceEvents, parents);
  const close = async () => {
    await closeSource();
    await parents?.close();
  };
  let target: RestoreTarget<T> | undefined;
  const blobs: VmmBlob[] = [];
  const vcpuStates: VcpuState[] = [];
  try {
    let guestBytesTotal = 0n;
    let guestBytesDone = 0n;
    for await (const event of events) {
      if (event.type === 'start') {
        target = new RestoreTarget(createTarget(factory, event.header, event.metadata), event.header, event.metadata);
        guestBytesTotal = event.metadata.regions.reduce((sum, region) => sum + region.size, 0n);
      } else if (event.type === 'chunk') {
        if ('data' in event.chunk) {
          const chunk = event.chunk;
          timed('writing', () => target!.writeRam(chunk));
          // Memory a transient source reuses goes back to it once the pages are written.
          event.release?.();
          guestBytesDone += BigInt(event.chunk.pageCount * target!.header.pageSize);
          options.onProgress?.({ guestBytesDone, guestBytesTotal });
        } else {
          const chunk = event.chunk;
          timed('writing', () => target!.writeTags(chunk));
          event.release?.();
        }
      } else if (event.type === 'vcpu') vcpuStates.push(event.vcpu);
      else if (event.type === 'blob') blobs.push(event.blob);
    }
    if (!target) throw new RestoreError('no-metadata', 'the snapshot ended before its metadata');
    // vCPUs last: a pipe's index is checked at its very end, so nothing runs before the whole file proved good.
    for (const state of vcpuStates) target.setVcpu(state);
    return {
      vm: target.vm,
      blobs,
      vcpuStates,
      metadata: target.metadata,
      summary: jsonResult({
        guestBytes: guestBytesTotal,
        ramPagesWritten: target.ramPagesWritten,
        tagCalls: target.tagCalls,
        taggedBytes: target.taggedBytes,
        vcpus: target.vcpus,
        durationMs: performance.now() - started,
      }),
    };
  } catch (error) {
    target?.vm.close();
    throw error;
  } finally {
    await close();
  }
}
