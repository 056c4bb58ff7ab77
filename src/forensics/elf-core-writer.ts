/**
 * Writes an ELF core file: header, program headers and notes up front, then
 * segment contents at positions fixed in advance, so a caller can stream each
 * segment chunk by chunk. All-zero pages are never written: they stay holes
 * of a sparse file (the final ftruncate gives the file its full length), so a
 * mostly empty 4 GiB guest costs disk only for the pages it uses.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { isAllZero } from '../format/bytes.js';
import {
  EI_PAD_END,
  ELF_HEADER_SIZE,
  ELFCLASS64,
  ELFDATA2LSB,
  EM_AARCH64,
  ET_CORE,
  EV_CURRENT,
  PN_XNUM,
  PROGRAM_HEADER_SIZE,
  PT_NOTE,
  SECTION_HEADER_SIZE,
} from './elf-constants.js';

/** A segment to write: what its program header says, except the file offset that layout picks. */
export interface CoreSegmentSpec {
  readonly type: number;
  readonly flags: number;
  readonly address: bigint;
  readonly memSize: bigint;
  readonly fileSize: bigint;
  /** p_align, and the alignment of the data in the file (0: none). */
  readonly align: bigint;
  /** p_paddr; defaults to the address (memtag segments want 0). */
  readonly physicalAddress?: bigint;
}

export interface PlacedSegment extends CoreSegmentSpec {
  readonly offset: bigint;
}

export interface CoreLayout {
  /** Program headers in order: the PT_NOTE first, then the given segments. */
  readonly segments: PlacedSegment[];
  readonly notesOffset: bigint;
  readonly notesSize: bigint;
  /** Offset of the PN_XNUM section header, or null when e_phnum holds the count. */
  readonly sectionHeaderOffset: bigint | null;
  readonly fileSize: bigint;
}

function alignUp(value: bigint, align: bigint): bigint {
  return align > 1n ? ((value + align - 1n) / align) * align : value;
}

export function layoutCore(notesSize: number, specs: readonly CoreSegmentSpec[]): CoreLayout {
  const count = specs.length + 1;
  const notesOffset = BigInt(ELF_HEADER_SIZE + count * PROGRAM_HEADER_SIZE);
  let at = notesOffset + BigInt(notesSize);
  const segments: PlacedSegment[] = [
    { type: PT_NOTE, flags: 0, address: 0n, memSize: 0n, fileSize: BigInt(notesSize), align: 0n, offset: notesOffset },
  ];
  for (const spec of specs) {
    const offset = spec.fileSize > 0n ? alignUp(at, spec.align) : at;
    segments.push({ ...spec, offset });
    at = offset + spec.fileSize;
  }
  const sectionHeaderOffset = count >= PN_XNUM ? alignUp(at, 8n) : null;
  const fileSize = sectionHeaderOffset === null ? at : sectionHeaderOffset + BigInt(SECTION_HEADER_SIZE);
  return { segments, notesOffset, notesSize: BigInt(notesSize), sectionHeaderOffset, fileSize };
}

function elfHeader(layout: CoreLayout): Buffer {
  const h = Buffer.alloc(ELF_HEADER_SIZE);
  h.set([0x7f, 0x45, 0x4c, 0x46, ELFCLASS64, ELFDATA2LSB, EV_CURRENT], 0);
  h.fill(0, 7, EI_PAD_END);
  h.writeUInt16LE(ET_CORE, 16);
  h.writeUInt16LE(EM_AARCH64, 18);
  h.writeUInt32LE(EV_CURRENT, 20);
  h.writeBigUInt64LE(BigInt(ELF_HEADER_SIZE), 32);
  h.writeUInt16LE(ELF_HEADER_SIZE, 52);
  h.writeUInt16LE(PROGRAM_HEADER_SIZE, 54);
  const count = layout.segments.length;
  h.writeUInt16LE(layout.sectionHeaderOffset === null ? count : PN_XNUM, 56);
  if (layout.sectionHeaderOffset !== null) {
    // Extended numbering as Linux writes it: one SHT_NULL section header whose sh_info is the count.
    h.writeBigUInt64LE(layout.sectionHeaderOffset, 40);
    h.writeUInt16LE(SECTION_HEADER_SIZE, 58);
    h.writeUInt16LE(1, 60);
  }
  return h;
}

function programHeaders(layout: CoreLayout): Buffer {
  const out = Buffer.alloc(layout.segments.length * PROGRAM_HEADER_SIZE);
  layout.segments.forEach((s, i) => {
    const at = i * PROGRAM_HEADER_SIZE;
    out.writeUInt32LE(s.type >>> 0, at);
    out.writeUInt32LE(s.flags, at + 4);
    out.writeBigUInt64LE(s.offset, at + 8);
    out.writeBigUInt64LE(s.address, at + 16);
    out.writeBigUInt64LE(s.physicalAddress ?? s.address, at + 24);
    out.writeBigUInt64LE(s.fileSize, at + 32);
    out.writeBigUInt64LE(s.memSize, at + 40);
    out.writeBigUInt64LE(s.align, at + 48);
  });
  return out;
}

function extendedNumberingHeader(layout: CoreLayout): Buffer {
  const sh = Buffer.alloc(SECTION_HEADER_SIZE);
  sh.writeUInt32LE(layout.segments.length, 44); // sh_info
  return sh;
}

export interface CoreWriteSummary {
  readonly fileSize: bigint;
  /** Bytes actually written; the rest of fileSize are holes. */
  readonly bytesWritten: bigint;
  readonly zeroBytesSkipped: bigint;
}

export class ElfCoreWriter {
  private bytesWritten = 0n;
  private zeroBytesSkipped = 0n;

  private constructor(
    private readonly file: FileHandle,
    readonly layout: CoreLayout,
    private readonly holeUnit: number,
  ) {}

  /**
   * Creates (truncates) the file and writes header, program headers and notes
   * (one buffer, or the pieces encodeNoteParts gives). `holeUnit` is the
   * zero-skip unit (the page size).
   */
  static async create(
    path: string,
    layout: CoreLayout,
    notes: Uint8Array | readonly Uint8Array[],
    holeUnit: number,
  ): Promise<ElfCoreWriter> {
    const file = await open(path, 'w');
    const writer = new ElfCoreWriter(file, layout, holeUnit);
    await writer.writeAt(0n, elfHeader(layout));
    await writer.writeAt(BigInt(ELF_HEADER_SIZE), programHeaders(layout));
    let at = layout.notesOffset;
    for (const part of notes instanceof Uint8Array ? [notes] : notes) {
      await writer.writeAt(at, part);
      at += BigInt(part.length);
    }
    if (layout.sectionHeaderOffset !== null) await writer.writeAt(layout.sectionHeaderOffset, extendedNumberingHeader(layout));
    return writer;
  }

  private async writeAt(position: bigint, bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.file.write(bytes, done, bytes.length - done, Number(position) + done);
      done += bytesWritten;
    }
    this.bytesWritten += BigInt(bytes.length);
  }

  /** Writes `bytes` at `offsetInSegment` of segment `index` (0 is the PT_NOTE), leaving all-zero units as holes. */
  async writeSegment(index: number, offsetInSegment: bigint, bytes: Uint8Array): Promise<void> {
    const segment = this.layout.segments[index];
    if (offsetInSegment + BigInt(bytes.length) > segment.fileSize) {
      throw new RangeError(
        `segment ${index}: write of ${bytes.length} bytes at ${offsetInSegment} passes its file size ${segment.fileSize}`,
      );
    }
    let runStart = -1;
    for (let at = 0; at < bytes.length; at += this.holeUnit) {
      const unit = bytes.subarray(at, Math.min(bytes.length, at + this.holeUnit));
      if (!isAllZero(unit)) {
        if (runStart < 0) runStart = at;
        continue;
      }
      this.zeroBytesSkipped += BigInt(unit.length);
      if (runStart >= 0) await this.writeAt(segment.offset + offsetInSegment + BigInt(runStart), bytes.subarray(runStart, at));
      runStart = -1;
    }
    if (runStart >= 0) await this.writeAt(segment.offset + offsetInSegment + BigInt(runStart), bytes.subarray(runStart));
  }

  /** Gives the file its full length (the tail may be a hole) and closes it. */
  async finish(): Promise<CoreWriteSummary> {
    await this.file.truncate(Number(this.layout.fileSize));
    await this.file.close();
    return { fileSize: this.layout.fileSize, bytesWritten: this.bytesWritten, zeroBytesSkipped: this.zeroBytesSkipped };
  }

  async abort(): Promise<void> {
    await this.file.close();
  }
}
