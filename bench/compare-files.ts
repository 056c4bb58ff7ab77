/** Byte-for-byte equality of two files, read a block at a time (bounded memory). */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

const BLOCK = 4 * 1024 * 1024;

function readBlock(fd: number, buffer: Uint8Array, position: number): number {
  let done = 0;
  while (done < buffer.length) {
    const n = readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export function filesEqual(a: string, b: string): boolean {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const size = fstatSync(fa).size;
    if (size !== fstatSync(fb).size) return false;
    const ba = new Uint8Array(BLOCK);
    const bb = new Uint8Array(BLOCK);
    for (let position = 0; position < size; position += BLOCK) {
      const n = readBlock(fa, ba, position);
      if (readBlock(fb, bb, position) !== n || Buffer.compare(ba.subarray(0, n), bb.subarray(0, n)) !== 0) return false;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}
