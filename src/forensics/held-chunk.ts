/**
 * Chunks a forensics reader holds while it copies pages out of them.
 *
 * A file reader can decode a chunk into memory it reuses
 * (`readTransientChunk`, the path restore and verify take). Decoding each
 * chunk into fresh buffers instead piles them up as external memory, which V8
 * frees only once tens of MiB have accumulated: a 1 GiB scan or search peaked
 * near 150 MiB that way. So the forensics readers hold a chunk only while they
 * need it, give it back (`release`) when they move on, and copy out the bytes
 * they keep, never a view: after `release` the memory holds another chunk.
 * A RAM chunk's present pages are copied from its packed content, and a tag
 * chunk's tags unpacked from its packed tags, so neither `data` nor `tags` is
 * ever expanded (that would be one more fresh buffer per chunk).
 */

import { isPagePresent } from '../format/chunk.js';
import { GRANULE_SIZE } from '../format/constants.js';
import type { ChunkLocation, RamChunk, SnapshotReader, TagChunk } from '../format/model.js';
import { unpackTags } from '../format/tag-packing.js';

/** A decoded chunk and what gives its memory back; the chunk must not be read after `release`. */
export interface HeldChunk {
  readonly chunk: RamChunk | TagChunk;
  release(): void;
}

/** A reader that can decode into memory it reuses (a file's reader: src/reader/open.ts). */
interface TransientReader {
  readTransientChunk(location: ChunkLocation): Promise<HeldChunk>;
}

function isTransientReader(reader: SnapshotReader): reader is SnapshotReader & TransientReader {
  return typeof (reader as Partial<TransientReader>).readTransientChunk === 'function';
}

/** The chunk at `location`, in reused memory when the reader has it; otherwise its own (release then does nothing). */
export async function holdChunk(reader: SnapshotReader, location: ChunkLocation): Promise<HeldChunk> {
  if (isTransientReader(reader)) return reader.readTransientChunk(location);
  const chunk = location.kind === 'ram' ? await reader.readRamChunk(location) : await reader.readTagChunk(location);
  return { chunk, release: () => {} };
}

/** Present pages among the first `page` pages of a bitmap. */
function presentBefore(bitmap: Uint8Array, page: number): number {
  let count = 0;
  for (let i = 0; i < page; i++) if (isPagePresent(bitmap, i)) count++;
  return count;
}

/**
 * Copies units [from, to) of a chunk into `out` at `at`, where a unit is a
 * byte of guest data from the chunk's first page (RAM) or a tag byte, one per
 * granule (tags). Absent pages are written as zeros. Packed chunks (present
 * pages only, tags two per byte) are copied and unpacked from there: their
 * expanded `data` or `tags` is never made.
 */
export function copyFromChunk(chunk: RamChunk | TagChunk, from: number, to: number, out: Uint8Array, at: number, pageSize: number): void {
  if ('tags' in chunk) {
    const packed = chunk.packedTags;
    if (!packed) out.set(chunk.tags.subarray(from, to), at);
    else
      copyPacked(chunk.present, pageSize / GRANULE_SIZE, from, to, out, at, (unit, length, into) =>
        unpackTags(packed, unit, into.subarray(0, length)),
      );
    return;
  }
  const content = chunk.content;
  if (!content) out.set(chunk.data.subarray(from, to), at);
  else copyPacked(chunk.present, pageSize, from, to, out, at, (unit, length, into) => into.set(content.subarray(unit, unit + length)));
}

/**
 * Walks units [from, to) of a chunk whose present pages are stored packed, in
 * runs of present and absent pages: `copy(unit, length, into)` copies `length`
 * units from unit `unit` of the packed pages into `into`; absent pages are zeros.
 */
function copyPacked(
  present: Uint8Array,
  unitsPerPage: number,
  from: number,
  to: number,
  out: Uint8Array,
  at: number,
  copy: (unit: number, length: number, into: Uint8Array) => void,
): void {
  let page = Math.floor(from / unitsPerPage);
  let packed = presentBefore(present, page);
  while (from < to) {
    const isPresent = isPagePresent(present, page);
    let last = page;
    while ((last + 1) * unitsPerPage < to && isPagePresent(present, last + 1) === isPresent) last++;
    const end = Math.min(to, (last + 1) * unitsPerPage);
    if (isPresent) {
      copy(packed * unitsPerPage + (from - page * unitsPerPage), end - from, out.subarray(at));
      packed += last - page + 1;
    } else out.fill(0, at, at + (end - from));
    at += end - from;
    from = end;
    page = last + 1;
  }
}
