/**
 * Granule dumps: the allocation tag of every 16-byte granule of a guest
 * range, next to its data when asked, like GDB's `x/…m`.
 *
 * The range is widened to whole granules and read in windows, so a dump of
 * any length runs in bounded memory.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader } from '../format/model.js';
import { regionHoldingRange } from './addresses.js';
import { ForensicsArgumentError } from './errors.js';

const GRANULE = BigInt(GRANULE_SIZE);
/** Bytes read per window (a multiple of the granule size). */
const WINDOW_BYTES = 64 * 1024;

export interface GranuleLine {
  readonly address: bigint;
  /** The allocation tag 0..15, or null in a region without saved tags. */
  readonly tag: number | null;
  /** The granule's 16 bytes, when data was asked for. */
  readonly data: Uint8Array | null;
}

export interface DumpOptions {
  readonly data?: boolean;
}

/** The granules of [guestAddress, guestAddress + length), widened to granule bounds; the range must lie in one region. */
export async function* dumpGranules(
  reader: SnapshotReader,
  guestAddress: bigint,
  length: bigint,
  options: DumpOptions = {},
): AsyncGenerator<GranuleLine> {
  if (length <= 0n) throw new ForensicsArgumentError(`dump length must be positive (got ${length})`);
  const start = guestAddress - (guestAddress % GRANULE);
  const end = ((guestAddress + length + GRANULE - 1n) / GRANULE) * GRANULE;
  const region = regionHoldingRange(reader.regions, start, end - start);
  for (let window = start; window < end; window += BigInt(WINDOW_BYTES)) {
    const bytes = Number(end - window < BigInt(WINDOW_BYTES) ? end - window : BigInt(WINDOW_BYTES));
    const tags = region.mte ? await reader.readTags(window, bytes) : null;
    const data = options.data ? await reader.readMemory(window, bytes) : null;
    for (let g = 0; g < bytes / GRANULE_SIZE; g++) {
      yield {
        address: window + BigInt(g * GRANULE_SIZE),
        tag: tags ? tags[g] & 0xf : null,
        data: data ? data.subarray(g * GRANULE_SIZE, (g + 1) * GRANULE_SIZE) : null,
      };
    }
  }
}

function address16(address: bigint): string {
  return `0x${address.toString(16).padStart(16, '0')}`;
}

function tagText(tag: number | null): string {
  return tag === null ? '-' : tag.toString(16);
}

/** One text line per granule: address, tag, 16 bytes in hex and as ASCII. */
export function formatDataLine(line: GranuleLine): string {
  const bytes = line.data ?? new Uint8Array(0);
  const hexBytes = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
  const ascii = Array.from(bytes, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
  return `${address16(line.address)}  tag ${tagText(line.tag)}  ${hexBytes}  |${ascii}|`;
}

/** Tags only: sixteen granules (256 bytes) per text line, one hex digit per granule. */
export async function* formatTagLines(lines: AsyncIterable<GranuleLine>): AsyncGenerator<string> {
  let row: string[] = [];
  let rowAddress = 0n;
  for await (const line of lines) {
    if (row.length === 0) rowAddress = line.address;
    row.push(tagText(line.tag));
    if (row.length === 16) {
      yield `${address16(rowAddress)}:  ${row.join(' ')}`;
      row = [];
    }
  }
  if (row.length) yield `${address16(rowAddress)}:  ${row.join(' ')}`;
}
