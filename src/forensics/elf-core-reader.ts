/**
 * Reads AArch64 ELF core files: ours and the ones Linux writes for processes
 * (many PT_LOADs, some with p_filesz 0 or shorter than p_memsz, memtag
 * segments after the loads, PN_XNUM extended numbering).
 *
 * Only the headers and notes are read at open; segment contents are read on
 * demand with positional reads, so a core of any size is served in bounded
 * memory. Bytes of a PT_LOAD past its p_filesz read as zero, as GDB shows
 * them; so do tags of a memtag segment with p_filesz 0.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { GRANULE_SIZE } from '../format/constants.js';
import { unpackTags } from '../format/tag-packing.js';
import {
  ELF_HEADER_SIZE,
  ELFCLASS64,
  ELFDATA2LSB,
  EM_AARCH64,
  ET_CORE,
  GUEST_BYTES_PER_TAG_BYTE,
  MAX_NOTES_BYTES,
  PN_XNUM,
  PROGRAM_HEADER_SIZE,
  PT_AARCH64_MEMTAG_MTE,
  PT_LOAD,
  PT_NOTE,
  SECTION_HEADER_SIZE,
} from './elf-constants.js';
import { decodeNotes, type ElfNote } from './elf-notes.js';
import { ElfCoreFormatError, hex } from './errors.js';

export interface ElfSegment {
  /** Position in the program header table. */
  readonly index: number;
  readonly type: number;
  readonly flags: number;
  readonly offset: bigint;
  readonly address: bigint;
  readonly physicalAddress: bigint;
  readonly fileSize: bigint;
  readonly memSize: bigint;
  readonly align: bigint;
}

export class ElfCore {
  readonly loads: ElfSegment[];
  readonly memtags: ElfSegment[];

  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly fileSize: bigint,
    readonly segments: ElfSegment[],
    readonly notes: ElfNote[],
    /** e_ident[EI_OSABI], for reports. */
    readonly osAbi: number,
  ) {
    this.loads = segments.filter((s) => s.type === PT_LOAD);
    this.memtags = segments.filter((s) => s.type === PT_AARCH64_MEMTAG_MTE);
  }

  static open(path: string): ElfCore {
    const fd = openSync(path, 'r');
    try {
      const fileSize = BigInt(fstatSync(fd).size);
      const header = readExact(fd, path, 0n, ELF_HEADER_SIZE, fileSize, 'ELF header');
      checkIdent(header, path);
      const segments = readProgramHeaders(fd, path, header, fileSize);
      const notes = segments.filter((s) => s.type === PT_NOTE).flatMap((s) => readNotes(fd, path, s, fileSize));
      return new ElfCore(path, fd, fileSize, segments, notes, header[7]);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /** The memtag segment covering `address`, if any. */
  memtagAt(address: bigint): ElfSegment | undefined {
    return this.memtags.find((s) => address >= s.address && address < s.address + s.memSize);
  }

  /** Reads guest bytes at `offsetInSegment` of a PT_LOAD; past p_filesz they are zero. */
  readLoad(segment: ElfSegment, offsetInSegment: bigint, destination: Uint8Array): void {
    destination.fill(0);
    const inFile = segment.fileSize - offsetInSegment;
    if (inFile <= 0n) return;
    const length = Number(inFile < BigInt(destination.length) ? inFile : BigInt(destination.length));
    readInto(this.fd, this.path, segment.offset + offsetInSegment, destination.subarray(0, length));
  }

  /** One tag per byte for `destination.length` granules from granule `firstGranule` of a memtag segment. */
  readTags(segment: ElfSegment, firstGranule: number, destination: Uint8Array): void {
    if (segment.fileSize === 0n) {
      destination.fill(0);
      return;
    }
    const firstByte = Math.floor(firstGranule / 2);
    const packed = new Uint8Array(Math.ceil((firstGranule + destination.length) / 2) - firstByte);
    readInto(this.fd, this.path, segment.offset + BigInt(firstByte), packed);
    unpackTags(packed, firstGranule - firstByte * 2, destination);
  }

  close(): void {
    closeSync(this.fd);
  }
}

function readInto(fd: number, path: string, position: bigint, destination: Uint8Array): void {
  let done = 0;
  while (done < destination.length) {
    const n = readSync(fd, destination, done, destination.length - done, Number(position) + done);
    if (n === 0) throw new ElfCoreFormatError(path, position + BigInt(done), 'file ends inside a segment (truncated core?)');
    done += n;
  }
}

function readExact(fd: number, path: string, position: bigint, length: number, fileSize: bigint, what: string): Buffer {
  if (position + BigInt(length) > fileSize) {
    throw new ElfCoreFormatError(path, position, `${what} (${length} bytes) runs past the end of the ${fileSize}-byte file`);
  }
  const out = Buffer.alloc(length);
  readInto(fd, path, position, out);
  return out;
}

function checkIdent(header: Buffer, path: string): void {
  if (header.readUInt32BE(0) !== 0x7f454c46) throw new ElfCoreFormatError(path, 0, 'not an ELF file (bad magic)');
  if (header[4] !== ELFCLASS64) throw new ElfCoreFormatError(path, 4, `ELF class ${header[4]}: only ELFCLASS64 cores are read`);
  if (header[5] !== ELFDATA2LSB) throw new ElfCoreFormatError(path, 5, 'big-endian ELF: only little-endian AArch64 cores are read');
  const type = header.readUInt16LE(16);
  if (type !== ET_CORE) throw new ElfCoreFormatError(path, 16, `e_type ${type} is not ET_CORE (4)`);
  const machine = header.readUInt16LE(18);
  if (machine !== EM_AARCH64) throw new ElfCoreFormatError(path, 18, `e_machine ${machine} is not EM_AARCH64 (183)`);
}

/** e_phnum, or with PN_XNUM the count in section header 0's sh_info. */
function programHeaderCount(fd: number, path: string, header: Buffer, fileSize: bigint): number {
  const phnum = header.readUInt16LE(56);
  if (phnum !== PN_XNUM) return phnum;
  const shoff = header.readBigUInt64LE(40);
  if (shoff === 0n) throw new ElfCoreFormatError(path, 40, 'e_phnum is PN_XNUM but there is no section header 0 with the real count');
  const section0 = readExact(fd, path, shoff, SECTION_HEADER_SIZE, fileSize, 'section header 0 (PN_XNUM)');
  return section0.readUInt32LE(44);
}

function readProgramHeaders(fd: number, path: string, header: Buffer, fileSize: bigint): ElfSegment[] {
  const phoff = header.readBigUInt64LE(32);
  const entrySize = header.readUInt16LE(54);
  if (entrySize !== PROGRAM_HEADER_SIZE) throw new ElfCoreFormatError(path, 54, `e_phentsize ${entrySize} is not ${PROGRAM_HEADER_SIZE}`);
  const count = programHeaderCount(fd, path, header, fileSize);
  const table = readExact(fd, path, phoff, count * PROGRAM_HEADER_SIZE, fileSize, `program header table of ${count} entries`);
  const segments: ElfSegment[] = [];
  for (let index = 0; index < count; index++) {
    const at = index * PROGRAM_HEADER_SIZE;
    const segment: ElfSegment = {
      index,
      type: table.readUInt32LE(at),
      flags: table.readUInt32LE(at + 4),
      offset: table.readBigUInt64LE(at + 8),
      address: table.readBigUInt64LE(at + 16),
      physicalAddress: table.readBigUInt64LE(at + 24),
      fileSize: table.readBigUInt64LE(at + 32),
      memSize: table.readBigUInt64LE(at + 40),
      align: table.readBigUInt64LE(at + 48),
    };
    checkSegment(segment, path, phoff + BigInt(at), fileSize);
    segments.push(segment);
  }
  return segments;
}

function checkSegment(s: ElfSegment, path: string, headerOffset: bigint, fileSize: bigint): void {
  const where = `program header ${s.index} (type ${hex(s.type)}, address ${hex(s.address)})`;
  if (s.offset + s.fileSize > fileSize) {
    throw new ElfCoreFormatError(
      path,
      headerOffset,
      `${where}: data [${hex(s.offset)}, ${hex(s.offset + s.fileSize)}) runs past the end of the ${fileSize}-byte file`,
    );
  }
  if (s.type === PT_LOAD && s.fileSize > s.memSize)
    throw new ElfCoreFormatError(path, headerOffset, `${where}: p_filesz ${s.fileSize} exceeds p_memsz ${s.memSize}`);
  if (s.type !== PT_AARCH64_MEMTAG_MTE) return;
  if (s.memSize === 0n || s.memSize % BigInt(GRANULE_SIZE) !== 0n) {
    throw new ElfCoreFormatError(path, headerOffset, `${where}: memtag p_memsz ${s.memSize} is not a positive multiple of ${GRANULE_SIZE}`);
  }
  // Two tags per byte: an odd number of granules takes a last half byte, so the size rounds up (Linux writes it so).
  const tagBytes = (s.memSize + BigInt(GUEST_BYTES_PER_TAG_BYTE) - 1n) / BigInt(GUEST_BYTES_PER_TAG_BYTE);
  if (s.fileSize !== 0n && s.fileSize !== tagBytes) {
    throw new ElfCoreFormatError(
      path,
      headerOffset,
      `${where}: memtag p_filesz ${s.fileSize} is not p_memsz / 32 rounded up (${tagBytes})`,
    );
  }
}

function readNotes(fd: number, path: string, segment: ElfSegment, fileSize: bigint): ElfNote[] {
  if (segment.fileSize > BigInt(MAX_NOTES_BYTES)) {
    throw new ElfCoreFormatError(path, segment.offset, `PT_NOTE of ${segment.fileSize} bytes exceeds the ${MAX_NOTES_BYTES}-byte limit`);
  }
  const bytes = readExact(fd, path, segment.offset, Number(segment.fileSize), fileSize, 'PT_NOTE segment');
  return decodeNotes(bytes, path, segment.offset);
}
