/**
 * A snapshot to read, named on the command line: a path, or "-" for standard
 * input. Restoring into a fresh simulated VM needs the snapshot's page size
 * before the VM exists, so the fixed header is read first: from a file with a
 * positional read, from a pipe by taking its first bytes and handing them
 * back in front of the rest of the stream.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { HEADER_LENGTH } from '../src/format/constants.js';
import { decodeHeader } from '../src/format/header.js';
import type { SnapshotHeader } from '../src/format/model.js';
import { CliError, EXIT } from './cli-support.js';

export interface PeekedSnapshot {
  readonly header: SnapshotHeader;
  /** What to hand to the library: the path, or a stream that still starts at byte 0. */
  readonly source: string | Readable;
  readonly description: string;
}

function readFileHead(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const head = new Uint8Array(HEADER_LENGTH);
    const length = readSync(fd, head, 0, HEADER_LENGTH, 0);
    return head.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

async function readStreamHead(stream: NodeJS.ReadableStream): Promise<{ head: Uint8Array; rest: Readable }> {
  const iterator = (stream as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const parts: Uint8Array[] = [];
  let have = 0;
  while (have < HEADER_LENGTH) {
    const next = await iterator.next();
    if (next.done) break;
    parts.push(next.value);
    have += next.value.length;
  }
  const buffered = Buffer.concat(parts);
  async function* replay(): AsyncGenerator<Uint8Array> {
    if (buffered.length) yield buffered;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  return { head: buffered.subarray(0, HEADER_LENGTH), rest: Readable.from(replay(), { objectMode: false }) };
}

/** Reads the header of `name` ("-" is standard input); a bad header throws SnapshotFormatError (exit 1). */
export async function peekSnapshot(name: string): Promise<PeekedSnapshot> {
  if (name !== '-') return { header: decodeHeader(readFileHead(name)), source: name, description: name };
  if (process.stdin.isTTY) throw new CliError('-: standard input is a terminal; pipe a snapshot into it', 'usage');
  const { head, rest } = await readStreamHead(process.stdin);
  return { header: decodeHeader(head), source: rest, description: 'standard input' };
}
