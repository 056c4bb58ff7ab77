/**
 * The writer: checkpoints a stopped VM into a snapshot file or stream.
 *
 * It streams. The calling thread reads one chunk of guest pages and their tags
 * at a time and hands them to the chunk executor (one worker per core); at
 * most a few chunks are in flight, so memory is bounded by the chunk size and
 * not by the guest size. Sections are written in the order chunkGrid gives.
 */

import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { checksum } from '../format/checksum.js';
import { checkRegions, chunkGrid, type GridChunk, regionPageCount } from '../format/chunk-grid.js';
import {
  CODEC,
  DIFF_FORMAT_MINOR,
  FORMAT_MINOR,
  LIMITS,
  MAX_CHUNK_CONTENT,
  MAX_ZSTD_LEVEL,
  NO_REGION,
  SECTION,
  SECTION_HEADER_LENGTH,
  TRAILER_LENGTH,
} from '../format/constants.js';
import { encodeChangedPages, encodeDiffSection } from '../format/diff.js';
import { VmsnapError } from '../format/errors.js';
import { encodeHeader } from '../format/header.js';
import { encodeTrailer, IndexBuilder } from '../format/index-section.js';
import { encodeBlob, encodeMetadata, encodeVcpu } from '../format/metadata.js';
import type { SnapshotMetadata, SnapshotRegion, VmmBlob } from '../format/model.js';
import type { VcpuState } from '../format/registers.js';
import { encodeSectionHeader } from '../format/section.js';
import { resolveOutput } from '../io/output-file.js';
import { jsonResult } from '../json.js';
import type { EncodedChunk } from '../parallel/chunk-jobs.js';
import { type ChunkExecutor, createChunkExecutor } from '../parallel/chunk-pool.js';
import { timedAsync } from '../parallel/phase-clock.js';
import { VERSION } from '../version.js';
import type { VmSource } from '../vm/vm.js';
import { InputBuffers, readChunkInput } from './chunk-input.js';
import { type DiffPlan, type DiffSnapshotOptions, parentSnapshot, planDiff, prepareDiffRange } from './diff.js';
import { FileOutput, type SnapshotOutput, StreamOutput } from './output.js';
import { SealedOutput } from './sealed-output.js';
import { vcpuStates } from './vcpu-state.js';

/** Chunks of this many guest bytes by default: small enough to pipeline, big enough for zstd. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

export interface SaveProgress {
  readonly guestBytesDone: bigint;
  readonly guestBytesTotal: bigint;
  readonly fileBytes: bigint;
}

export interface SaveOptions {
  /** Pages per chunk; default DEFAULT_CHUNK_BYTES / page size. At most 4 MiB of guest memory. */
  pagesPerChunk?: number;
  /** zstd level 1..9, or 0 for no compression. Default 1. */
  level?: number;
  blobs?: readonly VmmBlob[];
  annotations?: Readonly<Record<string, string>>;
  /** Fixed for reproducible files (test vectors); random by default. */
  snapshotId?: Uint8Array;
  /** Default: now. */
  createdMs?: bigint;
  /**
   * Recorded as META's parent_id of a full snapshot (which stays complete on
   * its own). To save a diff snapshot, give `diff` instead.
   */
  parentId?: Uint8Array | null;
  /**
   * Save a diff snapshot: only the pages whose data or tags changed since
   * `diff.parent` (computed against its content, or given as changedPages).
   * The chunk size defaults to the parent's and must equal it.
   */
  diff?: DiffSnapshotOptions;
  /** The writer's name in the metadata; default "vmsnap <version>". A VMM embedding the library names itself. */
  tool?: string;
  /**
   * Chunks compressed at once (on libuv's pool with the system libzstd, else on worker threads);
   * 0 compresses on the calling thread with the bundled zstd. Default: one per core, one more with the system libzstd.
   */
  threads?: number;
  /** Replace an existing file at the destination path; by default an existing file is refused (OutputError). */
  force?: boolean;
  /** Files the caller reads while saving: the destination may never be one of them. */
  inputs?: readonly string[];
  /** Encrypt the file with this 32-byte secret (spec/STORE.md section 8); readers then need it. */
  encryptionKey?: Uint8Array;
  onProgress?: (progress: SaveProgress) => void;
}

export interface SaveSummary {
  readonly destination: string;
  /** The new snapshot's id: a diff of it names it as its parent. */
  readonly snapshotId: Uint8Array;
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  /** A diff: its parent's snapshot id, and the pages it gives (changed since the parent); null and the guest's pages otherwise. */
  readonly parentId: Uint8Array | null;
  readonly changedPages: bigint | null;
  readonly fileBytes: bigint;
  readonly guestBytes: bigint;
  readonly regions: readonly SnapshotRegion[];
  readonly chunks: number;
  /** Bytes of the file taken by TAGC sections. */
  readonly tagBytes: bigint;
  readonly vcpus: number;
  readonly durationMs: number;
}

/** A save option is out of range (pages per chunk, compression level). */
export class SaveError extends VmsnapError {
  constructor(message: string) {
    super('bad-save-option', 'usage', message);
  }
}

/** The sections of a file but its vCPUs: META, DIFF, the grid's chunks (and changed-page maps), the blobs. */
function sectionsBeforeVcpus(
  regions: readonly SnapshotRegion[],
  pageSize: number,
  pagesPerChunk: number,
  blobs: number,
  diff: boolean,
): number {
  const perChunk = (region: SnapshotRegion) => (region.mte ? 2 : 1) + (diff ? 1 : 0);
  const chunks = regions.reduce((n, region) => n + Math.ceil(regionPageCount(region, pageSize) / pagesPerChunk) * perChunk(region), 0);
  return 1 + (diff ? 1 : 0) + chunks + blobs;
}

/** Refuses, before anything is written, a file the readers would refuse (spec/FORMAT.md, limits). */
function checkWithinLimits(
  regions: readonly SnapshotRegion[],
  pageSize: number,
  pagesPerChunk: number,
  blobs: readonly VmmBlob[],
  diff: boolean,
): void {
  const sections = sectionsBeforeVcpus(regions, pageSize, pagesPerChunk, blobs.length, diff);
  if (sections > LIMITS.sections) {
    throw new SaveError(`${sections} sections pass the format's ${LIMITS.sections}: give a larger chunk size (pages per chunk)`);
  }
  const large = blobs.find((blob) => blob.data.length > LIMITS.blob);
  if (large) throw new SaveError(`blob ${large.name} holds ${large.data.length} bytes, more than the format's ${LIMITS.blob}`);
  const total = blobs.reduce((sum, blob) => sum + blob.data.length, 0);
  if (blobs.length > LIMITS.blobs || total > LIMITS.blobTotal) {
    throw new SaveError(`${blobs.length} blobs of ${total} bytes pass the format's ${LIMITS.blobs} blobs of ${LIMITS.blobTotal} bytes`);
  }
}

/** The regions a VM's memslots become: tags are saved for the tagged slots of an MTE VM, never for read-only ones. */
export function regionsOf(vm: VmSource): SnapshotRegion[] {
  const slots = [...vm.memorySlots()].sort((a, b) => (a.guestAddress < b.guestAddress ? -1 : 1));
  // A read-only slot's tags cannot be restored (TO_GUEST on it is EFAULT) and the guest cannot store tags there.
  return slots.map((slot, index) => ({
    index,
    name: slot.name,
    guestAddress: slot.guestAddress,
    size: slot.size,
    mte: vm.mteEnabled && !slot.readOnly && (vm.isSlotTagged?.(slot.slot) ?? true),
    readOnly: slot.readOnly,
    slot: slot.slot,
  }));
}

function chooseChunking(vm: VmSource, options: SaveOptions): { pagesPerChunk: number; level: number } {
  const pagesPerChunk =
    options.pagesPerChunk ??
    (options.diff && parentSnapshot(options.diff.parent).pagesPerChunk) ??
    Math.max(1, DEFAULT_CHUNK_BYTES / vm.pageSize);
  if (!Number.isInteger(pagesPerChunk) || pagesPerChunk < 1 || pagesPerChunk * vm.pageSize > MAX_CHUNK_CONTENT) {
    throw new SaveError(
      `pages per chunk must be 1..${MAX_CHUNK_CONTENT / vm.pageSize} for ${vm.pageSize}-byte pages, got ${pagesPerChunk}`,
    );
  }
  const level = options.level ?? 1;
  if (!Number.isInteger(level) || level < 0 || level > MAX_ZSTD_LEVEL)
    throw new SaveError(`compression level must be 0..${MAX_ZSTD_LEVEL}, got ${level}`);
  return { pagesPerChunk, level };
}

/** Writes sections and remembers where each one went, for the index. */
class SectionWriter {
  readonly index: IndexBuilder;
  tagBytes = 0n;

  constructor(
    private readonly output: SnapshotOutput,
    expectedSections: number,
  ) {
    this.index = new IndexBuilder(expectedSections);
  }

  async write(type: string, payload: Uint8Array | EncodedChunk, chunk?: GridChunk): Promise<void> {
    // A stream keeps what it is given until it is flushed: a payload in reused memory goes to it as a copy.
    const bytes =
      payload instanceof Uint8Array ? payload : payload.scratch && this.output.keepsBytes ? payload.payload.slice() : payload.payload;
    const payloadChecksum = payload instanceof Uint8Array ? checksum(payload) : payload.payloadChecksum;
    const header = encodeSectionHeader(type, { length: bytes.length, checksum: payloadChecksum });
    const offset = this.output.position;
    const length = BigInt(SECTION_HEADER_LENGTH + bytes.length);
    await this.output.write(header);
    await this.output.write(bytes);
    if (type === SECTION.tagChunk) this.tagBytes += length;
    this.index.add({
      type,
      region: chunk?.region ?? NO_REGION,
      firstPage: chunk?.firstPage ?? 0,
      offset,
      length,
      pageCount: chunk?.pageCount ?? 0,
      payloadChecksum,
    });
  }
}

function sectionType(kind: GridChunk['kind']): string {
  return kind === 'ram' ? SECTION.ramChunk : kind === 'tags' ? SECTION.tagChunk : SECTION.changedPages;
}

/**
 * Where a full chunk's input comes from: a VM (its RAM, its tags through
 * KVM_ARM_MTE_COPY_TAGS) or, to flatten a chain, the chain's merged chunks.
 */
export interface GuestInput {
  readonly pageSize: number;
  /**
   * RAM chunks the writer keeps in flight per zstd call (default 2, 1 in a
   * diff): a VM's read holds one input buffer each, where a chain's merge
   * (flatten) or a diff's comparison also holds the decoded chunks of the
   * snapshots it reads (two per call took a 16 GiB flatten from 112 to 132
   * MiB peak RSS, a 1 GiB diff save from 91 to 114).
   */
  readonly ramChunksPerCall?: number;
  /** RAM bytes of the chunk's pages, or their tags one byte per granule. */
  read(chunk: GridChunk, buffers: InputBuffers): Promise<Uint8Array>;
  vcpus(): Promise<VcpuState[]>;
}

function vmInput(vm: VmSource, regions: readonly SnapshotRegion[], readsOnCallingThread: boolean): GuestInput {
  return {
    pageSize: vm.pageSize,
    read: (chunk, buffers) => readChunkInput(vm, regions[chunk.region], chunk, buffers, readsOnCallingThread),
    vcpus: async () => vcpuStates(vm),
  };
}

/** The diff's plan, and the VM it reads: a diff is computed while its pages are read. */
interface DiffWrite {
  readonly plan: DiffPlan;
  readonly vm: VmSource;
  /** As readChunkInput's `onCallingThread`. */
  readonly readsOnCallingThread: boolean;
}

async function writeChunks(
  guest: GuestInput,
  regions: readonly SnapshotRegion[],
  pagesPerChunk: number,
  level: number,
  sections: SectionWriter,
  executor: ChunkExecutor,
  progress: (chunk: GridChunk) => void,
  diff: DiffWrite | null,
): Promise<number> {
  // Enough RAM chunks in flight to keep every call busy while the oldest result is written; they hold the memory.
  // Tag chunks (1/16 of the bytes) and changed-page maps ride along uncounted: a save from raw files went from 1.04x
  // to 0.95x the time of zstd -1 -T2 with reads on the calling thread (readChunkInput) and this window.
  const perCall = diff ? 1 : (guest.ramChunksPerCall ?? 2);
  const maxRamInFlight = Math.max(2, executor.threads * perCall + 1);
  const inFlight: Array<{ chunk: GridChunk; result: Promise<EncodedChunk | Uint8Array> }> = [];
  let ramInFlight = 0;
  const buffers = new InputBuffers(executor);
  let count = 0;
  const drainOne = async () => {
    const { chunk, result } = inFlight.shift()!;
    if (chunk.kind === 'ram') ramInFlight--;
    const encoded = await timedAsync('waiting on results', result);
    await timedAsync('writing', sections.write(sectionType(chunk.kind), encoded, chunk));
    if (!(encoded instanceof Uint8Array)) {
      buffers.giveBack(encoded.input);
      if (encoded.scratch) executor.release(encoded.scratch);
    }
    progress(chunk);
  };
  // In a diff, the RAM and tags of a range are read (and compared) once, for its changed-page map and its two chunks.
  let range: ReturnType<typeof prepareDiffRange> | undefined;
  for (const chunk of chunkGrid(regions, guest.pageSize, pagesPerChunk, diff !== null)) {
    let result: Promise<EncodedChunk | Uint8Array>;
    if (chunk.kind === 'changed') {
      const inputs = timedAsync(
        'reading',
        prepareDiffRange(diff!.vm, regions[chunk.region], chunk, diff!.plan, buffers, diff!.readsOnCallingThread),
      );
      range = inputs;
      result = inputs.then((prepared) => encodeChangedPages(chunk.region, chunk.firstPage, chunk.pageCount, prepared.changed));
    } else {
      const kind = chunk.kind;
      const job = { region: chunk.region, firstPage: chunk.firstPage, pageCount: chunk.pageCount, pageSize: guest.pageSize };
      const input = range
        ? range.then((prepared) => (kind === 'ram' ? prepared.ram : prepared.tags!))
        : timedAsync('reading', guest.read(chunk, buffers));
      // The input buffer is read into afresh for a later chunk (or was made for this one): the job may pack pages inside it.
      result = input.then(
        (bytes) =>
          executor.run({
            op: 'encode',
            kind,
            range: job,
            input: bytes,
            level,
            inputIsScratch: true,
            payloadIsScratch: true,
          }) as Promise<EncodedChunk>,
      );
    }
    result.catch(() => {}); // Observed in order by drainOne; avoids an unhandled rejection meanwhile.
    inFlight.push({ chunk, result });
    if (chunk.kind !== 'changed') count++;
    if (chunk.kind === 'ram') ramInFlight++;
    while (ramInFlight >= maxRamInFlight) await drainOne();
  }
  while (inFlight.length) await drainOne();
  buffers.dispose();
  return count;
}

function openOutput(
  destination: string | Writable | NodeJS.WritableStream,
  options: Pick<SaveOptions, 'force' | 'inputs'>,
): SnapshotOutput {
  if (typeof destination !== 'string') return new StreamOutput(destination);
  if (destination === '-') return new StreamOutput(process.stdout, 'standard output');
  const target = resolveOutput(destination, { force: options.force, inputs: options.inputs, streamable: true });
  // A FIFO or device is written through, never replaced ('a' opens it without O_TRUNC).
  if (target.kind === 'stream') return new StreamOutput(createWriteStream(target.path, { flags: 'a' }), destination, true);
  return new FileOutput(target.path, destination);
}

/**
 * Saves `vm` (stopped: its memory, tags and registers must not change while
 * this runs) to a file path, '-' for standard output, or a writable stream.
 */
export async function saveSnapshot(
  vm: VmSource,
  destination: string | Writable | NodeJS.WritableStream,
  options: SaveOptions = {},
): Promise<SaveSummary> {
  const { pagesPerChunk, level } = chooseChunking(vm, options);
  const regions = regionsOf(vm);
  checkRegions(regions, vm.pageSize);
  checkWithinLimits(regions, vm.pageSize, pagesPerChunk, options.blobs ?? [], options.diff !== undefined);
  const diff = options.diff ? planDiff(options.diff, { pageSize: vm.pageSize, pagesPerChunk, regions }) : null;
  const metadata: SnapshotMetadata = {
    snapshotId: options.snapshotId ?? randomBytes(16),
    parentId: diff ? diff.parentId : (options.parentId ?? null),
    createdMs: options.createdMs ?? BigInt(Date.now()),
    tool: options.tool ?? `vmsnap ${VERSION}`,
    regions,
    annotations: { backend: vm.backend, ...options.annotations },
  };
  // Compressing, the pool is busy with zstd calls: reads run on the calling thread (readChunkInput).
  const readsOnCallingThread = level > 0;
  return writeSnapshot(vmInput(vm, regions, readsOnCallingThread), metadata, destination, {
    ...options,
    pagesPerChunk,
    level,
    diff: diff && { plan: diff, vm, readsOnCallingThread },
  });
}

export interface WriteOptions extends Omit<SaveOptions, 'diff'> {
  readonly pagesPerChunk: number;
  readonly level: number;
  readonly diff: DiffWrite | null;
}

/**
 * Writes a snapshot of `metadata` (complete: ids, times, annotations as they
 * go in the file) from `guest`: saveSnapshot's writer, and flatten's.
 */
export async function writeSnapshot(
  guest: GuestInput,
  metadata: SnapshotMetadata,
  destination: string | Writable | NodeJS.WritableStream,
  options: WriteOptions,
): Promise<SaveSummary> {
  const started = performance.now();
  const { pagesPerChunk, level, regions, pageSize } = { ...options, regions: metadata.regions, pageSize: guest.pageSize };
  const diff = options.diff?.plan ?? null;
  const guestBytesTotal = regions.reduce((sum, region) => sum + region.size, 0n);
  const plainOutput = openOutput(destination, options);
  const output = options.encryptionKey ? new SealedOutput(plainOutput, options.encryptionKey) : plainOutput;
  const executor = createChunkExecutor(options.threads);
  try {
    // Room for every section's index entry at once, a few vCPUs included (more grow it).
    const expected = sectionsBeforeVcpus(regions, pageSize, pagesPerChunk, options.blobs?.length ?? 0, diff !== null) + 8;
    const sections = new SectionWriter(output, expected);
    const codec = level > 0 ? CODEC.zstd : CODEC.none;
    await output.write(encodeHeader(pageSize, pagesPerChunk, codec, diff ? DIFF_FORMAT_MINOR : FORMAT_MINOR));
    await sections.write(SECTION.metadata, encodeMetadata(metadata));
    if (diff) await sections.write(SECTION.diff, encodeDiffSection({ parentId: diff.parentId }));
    let guestBytesDone = 0n;
    const track = (chunk: GridChunk) => {
      if (chunk.kind !== 'ram') return;
      guestBytesDone += BigInt(chunk.pageCount * pageSize);
      options.onProgress?.({ guestBytesDone, guestBytesTotal, fileBytes: output.position });
    };
    const chunks = await writeChunks(guest, regions, pagesPerChunk, level, sections, executor, track, options.diff);
    const vcpus = await guest.vcpus();
    for (const vcpu of vcpus) await sections.write(SECTION.vcpu, encodeVcpu(vcpu));
    for (const blob of options.blobs ?? []) await sections.write(SECTION.blob, encodeBlob(blob));
    const indexOffset = output.position;
    const index = sections.index.payload();
    await output.write(encodeSectionHeader(SECTION.index, index));
    await output.write(index);
    await output.write(encodeTrailer({ indexOffset, fileLength: output.position + BigInt(TRAILER_LENGTH) }));
    await output.commit();
    return jsonResult({
      destination: output.description,
      snapshotId: metadata.snapshotId,
      pageSize,
      pagesPerChunk,
      parentId: diff ? diff.parentId : null,
      changedPages: diff ? diff.changedPages : null,
      // What the file holds: with encryption, the container's bytes.
      fileBytes: plainOutput.position,
      guestBytes: guestBytesTotal,
      regions,
      chunks,
      tagBytes: sections.tagBytes,
      vcpus: vcpus.length,
      durationMs: performance.now() - started,
    });
  } catch (error) {
    output.abort();
    throw error;
  } finally {
    await executor.close();
  }
}
