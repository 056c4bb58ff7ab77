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

export function encodeNotes(notes: readonly ElfNote[]): Uint8Array {
  const parts = notes.map((note) => {
    const name = Buffer.from(`${note.name}\0`, 'latin1');
    const out = Buffer.alloc(12 + align4(name.length) + align4(note.desc.length));
    out.writeUInt32LE(name.length, 0);
    out.writeUInt32LE(note.desc.length, 4);
    out.writeUInt32LE(note.type >>> 0, 8);
    name.copy(out, 12);
    out.set(note.desc, 12 + align4(name.length));
    return out;
  });
  return Buffer.concat(parts);
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
