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
 * A RAM chunk's present pages are copied from its packed content, so its
 * `data` is never expanded (that would be one more fresh buffer per chunk).
 */

import { isPagePresent } from '../format/chunk.js';
import type { ChunkLocation, RamChunk, SnapshotReader, TagChunk } from '../format/model.js';

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
 * granule (tags). Absent pages are written as zeros.
 */
export function copyFromChunk(chunk: RamChunk | TagChunk, from: number, to: number, out: Uint8Array, at: number, pageSize: number): void {
  if ('tags' in chunk) {
    out.set(chunk.tags.subarray(from, to), at);
    return;
  }
  const content = chunk.content;
  if (!content) {
    out.set(chunk.data.subarray(from, to), at);
    return;
  }
  // Packed content: walk runs of present and absent pages.
  let page = Math.floor(from / pageSize);
  let packed = presentBefore(chunk.present, page);
  while (from < to) {
    const present = isPagePresent(chunk.present, page);
    let last = page;
    while ((last + 1) * pageSize < to && isPagePresent(chunk.present, last + 1) === present) last++;
    const end = Math.min(to, (last + 1) * pageSize);
    if (present) {
      const source = packed * pageSize + (from - page * pageSize);
      out.set(content.subarray(source, source + (end - from)), at);
      packed += last - page + 1;
    } else out.fill(0, at, at + (end - from));
    at += end - from;
    from = end;
    page = last + 1;
  }
}
