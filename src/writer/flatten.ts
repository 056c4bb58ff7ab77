/**
 * Flatten: a chain (a full snapshot and its diffs) merged into one full
 * snapshot of its final state.
 *
 * The result is byte for byte the file a direct full save of that state
 * would have been, given the same options: everything the file records is
 * taken from the last link (snapshot id, created time, tool, annotations,
 * regions, page size, pages per chunk, vCPUs, blobs), META's parent_id is nil
 * as in any full save, and the chunks go through the same encoder. What the
 * file does not record is the zstd level (the header says only "zstd"), so
 * flatten takes it as an option, default 1 as save's: give the level the
 * saves used. Memory: the chain's merged chunks, a few at a time.
 */
import type { Writable } from 'node:stream';
import type { GridChunk } from '../format/chunk-grid.js';
import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotChain } from '../reader/chain.js';
import type { InputBuffers } from './chunk-input.js';
import { type SaveOptions, type SaveSummary, writeSnapshot } from './save.js';

export type FlattenOptions = Pick<SaveOptions, 'level' | 'threads' | 'force' | 'inputs' | 'onProgress'>;

export async function flattenChain(
  chain: SnapshotChain,
  destination: string | Writable | NodeJS.WritableStream,
  options: FlattenOptions = {},
): Promise<SaveSummary> {
  const blobs = await chain.blobs();
  const guest = {
    pageSize: chain.header.pageSize,
    // Each merge in flight holds its links' decoded chunks too (GuestInput.ramChunksPerCall).
    ramChunksPerCall: 1,
    // Into the writer's own input buffers: it hands every chunk's input back to them once encoded, so a fresh
    // buffer per chunk would pile up there, the whole guest by the end (issue 10: 391 MiB for 256 MiB).
    read: async (chunk: GridChunk, buffers: InputBuffers) => {
      if (chunk.kind === 'changed') throw new TypeError('a flattened snapshot has no changed-page maps');
      const unit = chunk.kind === 'ram' ? guest.pageSize : guest.pageSize / GRANULE_SIZE;
      const into = buffers.take(chunk.pageCount * unit);
      return (await chain.readMerged(chunk.kind, chunk.region, chunk.firstPage, into)).bytes;
    },
    vcpus: () => chain.vcpus(),
  };
  return writeSnapshot(guest, { ...chain.metadata, parentId: null }, destination, {
    ...options,
    blobs,
    pagesPerChunk: chain.header.pagesPerChunk,
    level: options.level ?? 1,
    diff: null,
  });
}
