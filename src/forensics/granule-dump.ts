/**
 * Granule dumps: the allocation tag of every 16-byte granule of a guest
 * range, next to its data when asked, like GDB's `x/…m`.
 *
 * The range is widened to whole granules and read in windows, so a dump of
 * any length runs in bounded memory.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader } from '../format/model.js';
import { regionPieces } from './addresses.js';
import { ForensicsArgumentError } from './errors.js';
import type { VirtualAddressSpace } from './virtual-addresses.js';

const GRANULE = BigInt(GRANULE_SIZE);
/** Bytes read per window (a multiple of the granule size). */
const WINDOW_BYTES = 64 * 1024;

export interface GranuleLine {
  /** The granule's address as asked: an IPA, or a virtual address when dumped through page tables. */
  readonly address: bigint;
  /** Where it is in guest memory. */
  readonly ipa: bigint;
  /** The allocation tag 0..15, or null in a region without saved tags. */
  readonly tag: number | null;
  /** The granule's 16 bytes, when data was asked for. */
  readonly data: Uint8Array | null;
}

export interface DumpOptions {
  readonly data?: boolean;
  /** `guestAddress` is a virtual address of this address space (translated page by page). */
  readonly space?: VirtualAddressSpace;
}

/**
 * The granules of [guestAddress, guestAddress + length), widened to granule
 * bounds. The range may cross from one region into an adjacent one; with
 * `options.space` it is virtual, and each page goes where the tables map it.
 */
export async function* dumpGranules(
  reader: SnapshotReader,
  guestAddress: bigint,
  length: bigint,
  options: DumpOptions = {},
): AsyncGenerator<GranuleLine> {
  if (length <= 0n) throw new ForensicsArgumentError(`dump length must be positive (got ${length})`);
  const start = guestAddress - (guestAddress % GRANULE);
  const end = ((guestAddress + length + GRANULE - 1n) / GRANULE) * GRANULE;
  const physical = options.space
    ? await options.space.pieces(start, end - start)
    : [{ virtualAddress: start, ipa: start, length: end - start }];
  // Every piece is checked before the first line is printed: a dump is all there or refused.
  const pieces = physical.map((p) => ({ shift: p.virtualAddress - p.ipa, regions: regionPieces(reader.regions, p.ipa, p.length) }));
  for (const { shift, regions } of pieces) {
    for (const { region, start: from, end: to } of regions) {
      for (let window = from; window < to; window += BigInt(WINDOW_BYTES)) {
        const bytes = Number(to - window < BigInt(WINDOW_BYTES) ? to - window : BigInt(WINDOW_BYTES));
        const tags = region.mte ? await reader.readTags(window, bytes) : null;
        const data = options.data ? await reader.readMemory(window, bytes) : null;
        for (let g = 0; g < bytes / GRANULE_SIZE; g++) {
          const ipa = window + BigInt(g * GRANULE_SIZE);
          yield {
            address: ipa + shift,
            ipa,
            tag: tags ? tags[g] & 0xf : null,
            data: data ? data.subarray(g * GRANULE_SIZE, (g + 1) * GRANULE_SIZE) : null,
          };
        }
      }
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
