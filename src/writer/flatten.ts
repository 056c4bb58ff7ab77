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
import type { SnapshotChain } from '../reader/chain.js';
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
    read: async (chunk: { kind: string; region: number; firstPage: number }) => {
      if (chunk.kind === 'changed') throw new TypeError('a flattened snapshot has no changed-page maps');
      return (await chain.readMerged(chunk.kind as 'ram' | 'tags', chunk.region, chunk.firstPage)).bytes;
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
