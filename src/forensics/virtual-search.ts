/**
 * Allocations and byte searches over a guest virtual range (`tags allocs
 * --va`, `tags search --va`): the range is split into the physical pieces
 * that back it, through a vCPU's saved page tables, and the IPA scans of
 * tag-search.ts run on each piece. Results carry both addresses.
 *
 * A virtual range may be mapped only in part (a kernel's VA space is mostly
 * holes), so unmapped parts are skipped, a whole table entry's span at a time,
 * not refused. Consecutive virtual pages need not be consecutive in memory:
 * an allocation run that continues on the next virtual page is one run, and a
 * pattern that straddles two pages mapped apart is found.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader } from '../format/model.js';
import { type IpaRange, regionHolding } from './addresses.js';
import { type PatternMatch, type PatternOptions, searchBytes, type TagRunOptions, tagRuns } from './tag-search.js';
import { TranslationFaultError } from './translation-errors.js';
import type { PhysicalPiece, VirtualAddressSpace } from './virtual-addresses.js';

/** A run of equal tags seen through virtual addresses: `start` is virtual, `ipa` where it starts in memory. */
export interface VirtualTagRun {
  readonly region: string;
  readonly start: bigint;
  readonly ipa: bigint;
  readonly size: bigint;
  readonly tag: number;
}

/** A pattern match at virtual address `address`, backed by `ipa`. */
export interface VirtualPatternMatch extends PatternMatch {
  readonly ipa: bigint;
}

/** The virtual span one descriptor at `level` covers (a table entry at a level above 3 maps a block of tables). */
function entrySpan(granule: number, level: number): bigint {
  const pageBits = Math.log2(granule);
  return 1n << BigInt(pageBits + (3 - level) * (pageBits - 3));
}

/**
 * The mapped pieces of a virtual range, in virtual order, physically
 * contiguous ones merged; unmapped parts skipped. Streams: a range of any
 * size holds one piece at a time.
 */
async function* mappedPieces(space: VirtualAddressSpace, range: IpaRange): AsyncGenerator<PhysicalPiece> {
  if (!space.walker) {
    yield { virtualAddress: range.start, ipa: range.start, length: range.end - range.start };
    return;
  }
  let pending: PhysicalPiece | null = null;
  let at = range.start;
  while (at < range.end) {
    let translation: Awaited<ReturnType<VirtualAddressSpace['translate']>>;
    try {
      translation = await space.translate(at);
    } catch (error) {
      if (!(error instanceof TranslationFaultError)) throw error;
      // No walk at all (outside the VA width, walks disabled): nothing further in this range is mapped from here.
      if (error.level === null) break;
      const granule = space.regime.halves[Number((at >> 55n) & 1n)].granule;
      const span = entrySpan(granule, error.level);
      at = (at / span + 1n) * span;
      continue;
    }
    const room = translation.mappingSize - (translation.ipa - translation.mappingIpaStart);
    const take = range.end - at < room ? range.end - at : room;
    if (pending && pending.virtualAddress + pending.length === at && pending.ipa + pending.length === translation.ipa) {
      pending = { virtualAddress: pending.virtualAddress, ipa: pending.ipa, length: pending.length + take };
    } else {
      if (pending) yield pending;
      pending = { virtualAddress: at, ipa: translation.ipa, length: take };
    }
    at += take;
  }
  if (pending) yield pending;
}

/** Runs of equal allocation tags over a virtual range, in virtual order; runs clipped to the range. */
export async function* virtualTagRuns(
  reader: SnapshotReader,
  space: VirtualAddressSpace,
  range: IpaRange,
  options: Omit<TagRunOptions, 'range'> = {},
): AsyncGenerator<VirtualTagRun> {
  let held: VirtualTagRun | null = null;
  for await (const piece of mappedPieces(space, range)) {
    const pieceEnd = piece.ipa + piece.length;
    for await (const run of tagRuns(reader, { ...options, range: { start: piece.ipa, end: pieceEnd } })) {
      const start = run.start > piece.ipa ? run.start : piece.ipa;
      const end = run.start + run.size < pieceEnd ? run.start + run.size : pieceEnd;
      if (end <= start) continue;
      const va = piece.virtualAddress + (start - piece.ipa);
      if (held && held.tag === run.tag && held.start + held.size === va) {
        held = { region: held.region, start: held.start, ipa: held.ipa, size: held.size + (end - start), tag: held.tag };
        continue;
      }
      if (held) yield held;
      held = { region: run.region, start: va, ipa: start, size: end - start, tag: run.tag };
    }
  }
  if (held) yield held;
}

/** Matches that start in the last bytes of `before` and end in `after` (virtually adjacent, physically apart). */
async function* straddling(
  reader: SnapshotReader,
  pattern: Uint8Array,
  before: PhysicalPiece,
  after: PhysicalPiece,
  options: PatternOptions,
): AsyncGenerator<VirtualPatternMatch> {
  const tailLength = Math.min(pattern.length - 1, Number(before.length));
  const headLength = Math.min(pattern.length - 1, Number(after.length));
  const tailIpa = before.ipa + before.length - BigInt(tailLength);
  const tailRegion = regionHolding(reader.regions, tailIpa);
  const headRegion = regionHolding(reader.regions, after.ipa);
  if (!tailRegion || !headRegion || (options.region !== undefined && tailRegion.name !== options.region)) return;
  if (tailIpa + BigInt(tailLength) > tailRegion.guestAddress + tailRegion.size) return;
  const bytes = Buffer.concat([await reader.readMemory(tailIpa, tailLength), await reader.readMemory(after.ipa, headLength)]);
  const needle = Buffer.from(pattern);
  const alignment = BigInt(options.alignment ?? 1);
  for (let at = bytes.indexOf(needle); at >= 0 && at < tailLength; at = bytes.indexOf(needle, at + 1)) {
    if (at + pattern.length <= tailLength) continue;
    const address = before.virtualAddress + before.length - BigInt(tailLength - at);
    if (address % alignment) continue;
    const ipa = tailIpa + BigInt(at);
    const granule = ipa - (ipa % BigInt(GRANULE_SIZE));
    const tag = tailRegion.mte ? (await reader.readTags(granule, GRANULE_SIZE))[0] & 0xf : null;
    yield { region: tailRegion.name, address, ipa, tag };
  }
}

/** Every occurrence of `pattern` in a virtual range, in virtual order, with the tag of the granule it starts in. */
export async function* virtualSearchBytes(
  reader: SnapshotReader,
  space: VirtualAddressSpace,
  pattern: Uint8Array,
  range: IpaRange,
  options: Omit<PatternOptions, 'range'> = {},
): AsyncGenerator<VirtualPatternMatch> {
  let previous: PhysicalPiece | null = null;
  for await (const piece of mappedPieces(space, range)) {
    if (previous && previous.virtualAddress + previous.length === piece.virtualAddress && pattern.length > 1) {
      yield* straddling(reader, pattern, previous, piece, options);
    }
    for await (const match of searchBytes(reader, pattern, { ...options, range: { start: piece.ipa, end: piece.ipa + piece.length } })) {
      yield { ...match, address: piece.virtualAddress + (match.address - piece.ipa), ipa: match.address };
    }
    previous = piece;
  }
}
