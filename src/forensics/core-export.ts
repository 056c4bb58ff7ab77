/**
 * Snapshot -> ELF core: a PT_LOAD per region at its guest physical address,
 * a PT_AARCH64_MEMTAG_MTE per MTE region with the tags packed as Linux packs
 * them, the Linux notes GDB needs (PRSTATUS from the vCPU core registers,
 * AUXV with HWCAP2_MTE; for a snapshot imported from a Linux core, that
 * core's notes with its signal), and the VMSNAP note that lets import rebuild the
 * snapshot. Regions are streamed window by window; zero pages and zero tag
 * runs become holes (see elf-core-writer.ts).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { SnapshotReader, SnapshotRegion, VmmBlob } from '../format/model.js';
import { packTags } from '../format/tag-packing.js';
import { resolveOutput, TemporaryFile } from '../io/output-file.js';
import { jsonResult } from '../json.js';
import type { VcpuState } from '../vm/vm.js';
import { keptCoreNotes, linuxCoreNotes } from './core-notes.js';
import { CORE_FILE_SIZES_ANNOTATION, GUEST_BYTES_PER_TAG_BYTE, PF_R, PF_W, PF_X, PT_AARCH64_MEMTAG_MTE, PT_LOAD } from './elf-constants.js';
import { type CoreLayout, type CoreSegmentSpec, ElfCoreWriter, layoutCore } from './elf-core-writer.js';
import { decodeNotes, type ElfNote, encodeNoteParts } from './elf-notes.js';
import { PROCESS_NOTES_BLOB } from './process-notes.js';
import { pageWindows } from './region-cursor.js';
import { encodeVmsnapNote, type VmsnapState, vmsnapStateFrom, withoutHostPaths } from './vmsnap-note.js';

export interface CoreExportSummary {
  readonly path: string;
  /** The file's length. */
  readonly fileSize: bigint;
  /** Bytes the file takes on disk (holes excluded), as the file system reports. */
  readonly diskBytes: bigint;
  readonly bytesWritten: bigint;
  readonly zeroBytesSkipped: bigint;
  readonly loads: number;
  readonly memtagSegments: number;
  readonly vcpus: number;
  readonly programHeaders: number;
}

/**
 * p_filesz per region: the region's size, except for loads an imported Linux
 * core held only in part (CORE_FILE_SIZES_ANNOTATION), whose missing bytes
 * stay missing. A malformed annotation is ignored (every byte is written).
 */
export function loadFileSizes(regions: readonly SnapshotRegion[], annotations: Readonly<Record<string, string>>): Map<string, bigint> {
  const sizes = new Map(regions.map((r) => [r.name, r.size]));
  try {
    const short = JSON.parse(annotations[CORE_FILE_SIZES_ANNOTATION] ?? '{}') as Record<string, unknown>;
    for (const r of regions) {
      const value = short[r.name];
      if (typeof value === 'string' && /^\d+$/.test(value) && BigInt(value) < r.size) sizes.set(r.name, BigInt(value));
    }
  } catch {
    // Not ours to judge: an annotation is free-form text.
  }
  return sizes;
}

function segmentSpecs(regions: readonly SnapshotRegion[], pageSize: number, fileSizes: Map<string, bigint>): CoreSegmentSpec[] {
  const loads = regions.map<CoreSegmentSpec>((r) => ({
    type: PT_LOAD,
    flags: PF_R | PF_X | (r.readOnly ? 0 : PF_W),
    address: r.guestAddress,
    memSize: r.size,
    fileSize: fileSizes.get(r.name) ?? r.size,
    align: BigInt(pageSize),
  }));
  const memtags = regions
    .filter((r) => r.mte)
    .map<CoreSegmentSpec>((r) => ({
      type: PT_AARCH64_MEMTAG_MTE,
      flags: 0,
      address: r.guestAddress,
      physicalAddress: 0n,
      memSize: r.size,
      fileSize: r.size / BigInt(GUEST_BYTES_PER_TAG_BYTE),
      align: 0n,
    }));
  return [...loads, ...memtags];
}

async function writeRegion(
  reader: SnapshotReader,
  writer: ElfCoreWriter,
  region: SnapshotRegion,
  loadIndex: number,
  memtagIndex: number | null,
  fileSize: bigint,
): Promise<void> {
  const pageSize = reader.header.pageSize;
  const pages = Number(region.size / BigInt(pageSize));
  let packed = new Uint8Array(0);
  for await (const window of pageWindows(reader, region, 0, pages, { data: true, tags: memtagIndex !== null })) {
    const offset = BigInt(window.firstPage * pageSize);
    if (offset < fileSize) {
      const inFile = fileSize - offset < BigInt(window.data!.length) ? Number(fileSize - offset) : window.data!.length;
      await writer.writeSegment(loadIndex, offset, window.data!.subarray(0, inFile));
    }
    if (memtagIndex === null || !window.tags) continue;
    // One buffer for the packed tags of every window (writeSegment is done with it when it returns).
    if (packed.length < window.tags.length / 2) packed = new Uint8Array(window.tags.length / 2);
    const windowPacked = packed.subarray(0, window.tags.length / 2);
    packTags(window.tags, windowPacked, 0);
    await writer.writeSegment(memtagIndex, offset / BigInt(GUEST_BYTES_PER_TAG_BYTE), windowPacked);
  }
}

export interface CoreExportOptions {
  /** Replace an existing file at the destination. */
  readonly force?: boolean;
  /** Files the caller reads besides the snapshot: the destination may never be one of them. */
  readonly inputs?: readonly string[];
  /** Keep host file paths in the annotations the VMSNAP note carries (default: only their file names). */
  readonly keepHostPaths?: boolean;
}

/**
 * Writes the snapshot as an ELF core to `destination`: a path (a new file, or
 * an existing one with `force`, replaced only once the core is complete; a
 * FIFO or device is written through) or a stream. A core places segments at
 * fixed offsets with holes between, so it is always built in a file first: for
 * a stream, a temporary file in the system's temporary directory.
 */
export async function exportCore(
  reader: SnapshotReader,
  destination: string | NodeJS.WritableStream,
  options: CoreExportOptions = {},
): Promise<CoreExportSummary> {
  const inputs = [reader.path, ...(options.inputs ?? [])];
  const target = typeof destination === 'string' ? resolveOutput(destination, { force: options.force, inputs, streamable: true }) : null;
  const file = new TemporaryFile(target?.kind === 'file' ? target.path : join(tmpdir(), 'vmsnap-export.core'));
  try {
    const written = await writeCore(reader, file.path, !!options.keepHostPaths);
    if (target?.kind === 'file') file.commit();
    else {
      const stream = target ? createWriteStream(target.path, { flags: 'a' }) : (destination as NodeJS.WritableStream);
      await pipeline(createReadStream(file.path), stream, { end: target !== null });
      file.abort();
    }
    return jsonResult({ path: typeof destination === 'string' ? destination : '-', ...written });
  } catch (error) {
    file.abort();
    throw error;
  }
}

function withoutPaths(state: VmsnapState, keepHostPaths: boolean): VmsnapState {
  return keepHostPaths ? state : { ...state, annotations: withoutHostPaths(state.annotations) };
}

/**
 * The Linux notes: those of the core the snapshot was imported from, when it
 * kept them (the signal and siginfo GDB reports, mappings, auxv, regsets),
 * else the synthetic ones of a guest (PRSTATUS/FPREGSET per vCPU, no signal).
 */
function linuxNotes(reader: SnapshotReader, vcpus: VcpuState[], blobs: readonly VmmBlob[]): ElfNote[] {
  const kept = blobs.find((b) => b.name === PROCESS_NOTES_BLOB);
  if (!kept) return linuxCoreNotes(vcpus, reader.header.pageSize, 'vmsnap-guest');
  const notes = decodeNotes(kept.data, `${reader.path} (blob ${PROCESS_NOTES_BLOB})`, 0n);
  return keptCoreNotes(
    notes,
    vcpus,
    reader.regions.some((r) => r.mte),
  );
}

/**
 * Creates the core file with its headers and notes. The vCPUs, blobs and
 * notes live only in here: they are let go before the regions are written.
 */
async function createCore(
  reader: SnapshotReader,
  path: string,
  keepHostPaths: boolean,
): Promise<{ writer: ElfCoreWriter; layout: CoreLayout; vcpus: number }> {
  const vcpus = await reader.vcpus();
  const blobs = await reader.blobs();
  const notes = encodeNoteParts([
    ...linuxNotes(reader, vcpus, blobs),
    encodeVmsnapNote(withoutPaths(vmsnapStateFrom(reader.metadata, reader.header, vcpus, blobs), keepHostPaths)),
  ]);
  const notesSize = notes.reduce((n, part) => n + part.length, 0);
  const fileSizes = loadFileSizes(reader.regions, reader.metadata.annotations);
  const layout = layoutCore(notesSize, segmentSpecs(reader.regions, reader.header.pageSize, fileSizes));
  return { writer: await ElfCoreWriter.create(path, layout, notes, reader.header.pageSize), layout, vcpus: vcpus.length };
}

async function writeCore(reader: SnapshotReader, path: string, keepHostPaths: boolean): Promise<Omit<CoreExportSummary, 'path'>> {
  const { writer, layout, vcpus } = await createCore(reader, path, keepHostPaths);
  const fileSizes = loadFileSizes(reader.regions, reader.metadata.annotations);
  try {
    let nextMemtag = 1 + reader.regions.length;
    for (const [i, region] of reader.regions.entries()) {
      await writeRegion(reader, writer, region, 1 + i, region.mte ? nextMemtag++ : null, fileSizes.get(region.name) ?? region.size);
    }
  } catch (error) {
    await writer.abort();
    throw error;
  }
  const written = await writer.finish();
  const info = await stat(path, { bigint: true });
  return {
    fileSize: written.fileSize,
    diskBytes: info.blocks * 512n,
    bytesWritten: written.bytesWritten,
    zeroBytesSkipped: written.zeroBytesSkipped,
    loads: reader.regions.length,
    memtagSegments: reader.regions.filter((r) => r.mte).length,
    vcpus,
    programHeaders: layout.segments.length,
  };
}
