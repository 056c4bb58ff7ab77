/**
 * Pull: a snapshot of the store back into a snapshot file (spec/FORMAT.md),
 * written the way every output is (a temporary file beside the target,
 * fsynced and renamed; --force to replace; FIFOs and devices written
 * through). Each chunk object's plaintext already is a chunk payload: pull
 * puts it back at its place (region and first page) after it was
 * authenticated and checked, without compressing it again.
 */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { checksum } from '../format/checksum.js';
import { CODEC, NO_REGION, SECTION, SECTION_HEADER_LENGTH, TRAILER_LENGTH } from '../format/constants.js';
import { encodeHeader } from '../format/header.js';
import { encodeTrailer, IndexBuilder } from '../format/index-section.js';
import { encodeBlob, encodeMetadata, encodeVcpu } from '../format/metadata.js';
import { encodeSectionHeader } from '../format/section.js';
import { resolveOutput } from '../io/output-file.js';
import { jsonResult } from '../json.js';
import { FileOutput, type SnapshotOutput, StreamOutput } from '../writer/output.js';
import type { ChunkStore } from './chunk-store.js';
import { StoredSnapshot } from './stored-snapshot.js';

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

/** The chunk payload moved to its place in the grid: region and first page are the only position it holds. */
function placed(payload: Uint8Array, region: number, firstPage: number): Uint8Array {
  const out = payload.slice();
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(0, region, true);
  dv.setBigUint64(8, BigInt(firstPage), true);
  return out;
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
      await output.write(encodeHeader(manifest.pageSize, manifest.pagesPerChunk, CODEC.zstd));
      await write(SECTION.metadata, encodeMetadata(manifest.metadata));
      const guestBytesTotal = manifest.metadata.regions.reduce((sum, region) => sum + region.size, 0n);
      let guestBytesDone = 0n;
      let bytesFetched = 0n;
      for await (const stored of snapshot.chunks()) {
        const { grid } = stored;
        await write(grid.kind === 'ram' ? SECTION.ramChunk : SECTION.tagChunk, placed(stored.payload, grid.region, grid.firstPage), grid);
        bytesFetched += BigInt(stored.objectBytes);
        if (grid.kind === 'ram') {
          guestBytesDone += BigInt(grid.pageCount * manifest.pageSize);
          options.onProgress?.({ guestBytesDone, guestBytesTotal });
        }
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
