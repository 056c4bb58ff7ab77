/**
 * ELF note records: namesz, descsz, type, then the name (NUL-terminated) and
 * the descriptor, each padded to 4 bytes.
 */
import { ElfCoreFormatError } from './errors.js';

export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly desc: Uint8Array;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** A note whose descriptor comes in pieces (a large one is never copied into one buffer). */
export interface ElfNoteParts {
  readonly name: string;
  readonly type: number;
  readonly parts: readonly Uint8Array[];
}

/**
 * The notes as a list of buffers to write one after the other: each note's
 * header and name, its descriptor (or the descriptor's pieces) and padding.
 * Descriptors are not copied.
 */
export function encodeNoteParts(notes: readonly (ElfNote | ElfNoteParts)[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const note of notes) {
    const parts = 'parts' in note ? note.parts : [note.desc];
    const descSize = parts.reduce((n, part) => n + part.length, 0);
    const name = Buffer.from(`${note.name}\0`, 'latin1');
    const head = Buffer.alloc(12 + align4(name.length));
    head.writeUInt32LE(name.length, 0);
    head.writeUInt32LE(descSize, 4);
    head.writeUInt32LE(note.type >>> 0, 8);
    name.copy(head, 12);
    out.push(head, ...parts);
    if (align4(descSize) > descSize) out.push(new Uint8Array(align4(descSize) - descSize));
  }
  return out;
}

export function encodeNotes(notes: readonly (ElfNote | ElfNoteParts)[]): Uint8Array {
  return Buffer.concat(encodeNoteParts(notes));
}

/** Decodes the notes of one PT_NOTE segment; `fileOffset` is where it starts, for error messages. */
export function decodeNotes(bytes: Uint8Array, path: string, fileOffset: bigint): ElfNote[] {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const notes: ElfNote[] = [];
  let at = 0;
  while (at + 12 <= view.length) {
    const nameSize = view.readUInt32LE(at);
    const descSize = view.readUInt32LE(at + 4);
    const type = view.readUInt32LE(at + 8);
    const descAt = at + 12 + align4(nameSize);
    if (descAt + descSize > view.length) {
      throw new ElfCoreFormatError(path, fileOffset + BigInt(at), `note of ${descSize} bytes runs past the end of its PT_NOTE segment`);
    }
    const name = view.toString('latin1', at + 12, at + 12 + nameSize).replace(/\0+$/, '');
    notes.push({ name, type, desc: bytes.subarray(descAt, descAt + descSize) });
    at = descAt + align4(descSize);
  }
  return notes;
}
