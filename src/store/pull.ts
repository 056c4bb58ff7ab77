/**
 * Pull: a snapshot of the store back into a snapshot file (spec/FORMAT.md),
 * written the way every output is (a temporary file beside the target,
 * fsynced and renamed; --force to replace; FIFOs and devices written
 * through). Each chunk object's plaintext already is a chunk payload: pull
 * puts it back at its place (region and first page) after it was
 * authenticated and checked, without compressing it again.
 *
 * A diff is pulled as the diff file it was (spec/FORMAT.md section 4.1: its
 * DIFF section, a CHGP before each chunk, empty chunks where it gives no
 * page), not merged with its parents: pull them by their names to have the
 * chain as files, or restore STORE/NAME, which resolves the chain.
 */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { checksum } from '../format/checksum.js';
import { encodeChunkPayload } from '../format/chunk.js';
import { CODEC, NO_REGION, SECTION, SECTION_HEADER_LENGTH, TRAILER_LENGTH } from '../format/constants.js';
import { encodeChangedPages, encodeDiffSection } from '../format/diff.js';
import { encodeHeader } from '../format/header.js';
import { encodeTrailer, IndexBuilder } from '../format/index-section.js';
import { encodeBlob, encodeMetadata, encodeVcpu } from '../format/metadata.js';
import type { ChunkKind } from '../format/model.js';
import { encodeSectionHeader } from '../format/section.js';
import { resolveOutput } from '../io/output-file.js';
import { jsonResult } from '../json.js';
import { FileOutput, type SnapshotOutput, StreamOutput } from '../writer/output.js';
import type { ChunkStore } from './chunk-store.js';
import { manifestPositions } from './manifest.js';
import { checkGivenPages } from './stored-chain.js';
import { type StoredChunk, StoredSnapshot } from './stored-snapshot.js';

export interface PullOptions {
  force?: boolean;
  parallel?: number;
  threads?: number;
  onProgress?: (progress: { guestBytesDone: bigint; guestBytesTotal: bigint }) => void;
}

export interface PullSummary {
  readonly store: string;
  readonly name: string;
  readonly destination: string;
  /** For a diff (pulled as a diff file), the name of its parent in the store; null for a full snapshot. */
  readonly parent: string | null;
  readonly fileBytes: bigint;
  readonly guestBytes: bigint;
  readonly chunks: number;
  readonly bytesFetched: bigint;
  readonly durationMs: number;
}

function openOutput(destination: string | Writable, force: boolean | undefined): SnapshotOutput {
  if (typeof destination !== 'string') return new StreamOutput(destination);
  if (destination === '-') return new StreamOutput(process.stdout, 'standard output');
  const target = resolveOutput(destination, { force, streamable: true });
  if (target.kind === 'stream') {
    return new StreamOutput(createWriteStream(target.path, { flags: 'a' }), destination, true);
  }
  return new FileOutput(target.path, destination);
}

/** The payload of a chunk with no page (a diff's chunk where it gives none): raw, empty content. */
function emptyChunk(kind: ChunkKind, region: number, firstPage: number, pageCount: number, pageSize: number): Uint8Array {
  const content = new Uint8Array(kind === 'ram' ? pageCount * pageSize : (pageCount * pageSize) / 16);
  return encodeChunkPayload(kind, { region, firstPage, pageCount, pageSize }, content, { codec: null, level: 0 });
}

/**
 * The chunk payload moved to its place in the grid: region and first page are the only position it holds. In
 * place: the payload is pull's own (the object's plaintext, fetched for this position alone).
 */
function placed(payload: Uint8Array, region: number, firstPage: number): Uint8Array {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  dv.setUint32(0, region, true);
  dv.setBigUint64(8, BigInt(firstPage), true);
  return payload;
}

export async function pullSnapshot(
  store: ChunkStore,
  name: string,
  destination: string | Writable,
  options: PullOptions = {},
): Promise<PullSummary> {
  const started = performance.now();
  const snapshot = await StoredSnapshot.open(store, name, options);
  try {
    await snapshot.checkChunksPresent();
    const output = openOutput(destination, options.force);
    try {
      const index = new IndexBuilder();
      const write = async (type: string, payload: Uint8Array, place?: { region: number; firstPage: number; pageCount: number }) => {
        const payloadChecksum = checksum(payload);
        const offset = output.position;
        await output.write(encodeSectionHeader(type, { length: payload.length, checksum: payloadChecksum }));
        await output.write(payload);
        index.add({
          type,
          region: place?.region ?? NO_REGION,
          firstPage: place?.firstPage ?? 0,
          offset,
          length: BigInt(SECTION_HEADER_LENGTH + payload.length),
          pageCount: place?.pageCount ?? 0,
          payloadChecksum,
        });
      };
      const { manifest } = snapshot;
      const { diff } = manifest;
      await output.write(encodeHeader(manifest.pageSize, manifest.pagesPerChunk, CODEC.zstd, diff ? 1 : 0));
      await write(SECTION.metadata, encodeMetadata(manifest.metadata));
      if (diff) await write(SECTION.diff, encodeDiffSection({ parentId: manifest.metadata.parentId! }));
      const guestBytesTotal = manifest.metadata.regions.reduce((sum, region) => sum + region.size, 0n);
      let guestBytesDone = 0n;
      let bytesFetched = 0n;
      // Decoded (to be checked) in reused memory: only the payload is written, and the content released at once.
      const stored = snapshot.chunks({ transient: true })[Symbol.asyncIterator]();
      // Chunk objects come in grid order: the positions a diff carries, each RAM then tags.
      const nextStored = async (): Promise<StoredChunk> => (await stored.next()).value as StoredChunk;
      for (const position of manifestPositions(manifest)) {
        const { ram, tags, changed } = position;
        if (changed) await write(SECTION.changedPages, encodeChangedPages(ram.region, ram.firstPage, ram.pageCount, changed), ram);
        for (const [grid, object] of [
          [ram, position.ramChunk],
          [tags, position.tagChunk],
        ] as const) {
          if (!grid) continue;
          const type = grid.kind === 'ram' ? SECTION.ramChunk : SECTION.tagChunk;
          if (!object) {
            await write(type, emptyChunk(grid.kind, grid.region, grid.firstPage, grid.pageCount, manifest.pageSize), grid);
            continue;
          }
          const chunk = await nextStored();
          try {
            checkGivenPages(chunk, changed, snapshot.describe(object));
          } finally {
            chunk.release?.();
          }
          await write(type, placed(chunk.payload, grid.region, grid.firstPage), grid);
          bytesFetched += BigInt(chunk.objectBytes);
        }
        guestBytesDone += BigInt(ram.pageCount * manifest.pageSize);
        options.onProgress?.({ guestBytesDone, guestBytesTotal });
      }
      for (const vcpu of manifest.vcpus) await write(SECTION.vcpu, encodeVcpu(vcpu));
      for (const blob of manifest.blobs) await write(SECTION.blob, encodeBlob(blob));
      const indexOffset = output.position;
      const payload = index.payload();
      await output.write(encodeSectionHeader(SECTION.index, payload));
      await output.write(payload);
      await output.write(encodeTrailer({ indexOffset, fileLength: output.position + BigInt(TRAILER_LENGTH) }));
      await output.commit();
      return jsonResult({
        store: store.description,
        name,
        destination: output.description,
        parent: diff?.parentName ?? null,
        fileBytes: output.position,
        guestBytes: guestBytesTotal,
        chunks: snapshot.chunkCount,
        bytesFetched,
        durationMs: performance.now() - started,
      });
    } catch (error) {
      output.abort();
      throw error;
    }
  } finally {
    await snapshot.close();
  }
}
