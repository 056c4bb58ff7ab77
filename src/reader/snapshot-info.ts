/**
 * A summary of a snapshot for people and scripts (`vmsnap info`): regions and
 * their IPA ranges, chunk counts and bytes, the compression ratio, tag bytes
 * as a share of RAM, vCPUs, blobs and annotations. It reads no chunk and no
 * blob (what it says of vCPUs and blobs was found when the file was opened),
 * so it takes the same time for any guest size.
 */
import { CODEC } from '../format/constants.js';
import type { SnapshotReader } from '../format/model.js';
import { jsonResult } from '../json.js';

/** The last millisecond a JavaScript Date can hold (ECMA-262, 21.4.1.1). */
const MAX_DATE_MS = 8_640_000_000_000_000n;

function isoTime(ms: bigint): string | null {
  return ms <= MAX_DATE_MS ? new Date(Number(ms)).toISOString() : null;
}

export interface RegionInfo {
  index: number;
  name: string;
  slot: number;
  guestAddress: bigint;
  guestEnd: bigint;
  size: bigint;
  mte: boolean;
  readOnly: boolean;
  ramChunks: number;
  tagChunks: number;
  /** File bytes of this region's RAMC and TAGC sections, headers included. */
  ramBytes: bigint;
  tagBytes: bigint;
}

export interface SnapshotInfo {
  file: string;
  fileBytes: bigint;
  format: { version: string; pageSize: number; granuleSize: number; tagBits: number; codec: string; pagesPerChunk: number };
  snapshotId: string;
  parentId: string | null;
  /** A diff snapshot: the pages it gives (changed since its parent) of the guest's pages; null for a full snapshot. */
  diff: { changedPages: bigint; guestPages: bigint } | null;
  /** Milliseconds since the Unix epoch, as the file records them. */
  createdMs: bigint;
  /** The same as an ISO 8601 time, or null past the year 275760 (a JavaScript Date's end). */
  created: string | null;
  tool: string;
  regions: RegionInfo[];
  totals: {
    guestBytes: bigint;
    ramChunks: number;
    tagChunks: number;
    ramBytes: bigint;
    tagBytes: bigint;
    /** Guest bytes per file byte. */
    compressionRatio: number;
    /** Tag section bytes over guest RAM bytes, in percent. */
    tagPercentOfRam: number;
  };
  vcpus: Array<{ id: number; registers: number }>;
  blobs: Array<{ name: string; bytes: number }>;
  annotations: Record<string, string>;
}

/** What `reader`'s snapshot holds, from its header, metadata and index, and the vCPU and blob sections opening it found. */
export async function describeSnapshot(reader: SnapshotReader): Promise<SnapshotInfo> {
  const regions: RegionInfo[] = reader.regions.map((region) => ({
    index: region.index,
    name: region.name,
    slot: region.slot,
    guestAddress: region.guestAddress,
    guestEnd: region.guestAddress + region.size,
    size: region.size,
    mte: region.mte,
    readOnly: region.readOnly,
    ramChunks: 0,
    tagChunks: 0,
    ramBytes: 0n,
    tagBytes: 0n,
  }));
  for (const chunk of reader.chunks) {
    const region = regions[chunk.region];
    if (chunk.kind === 'ram') {
      region.ramChunks++;
      region.ramBytes += chunk.length;
    } else {
      region.tagChunks++;
      region.tagBytes += chunk.length;
    }
  }
  const sum = (pick: (r: RegionInfo) => bigint) => regions.reduce((total, r) => total + pick(r), 0n);
  const guestBytes = sum((r) => r.size);
  const tagBytes = sum((r) => r.tagBytes);
  const { header, metadata } = reader;
  return jsonResult({
    file: reader.path,
    fileBytes: reader.fileSize,
    format: {
      version: `${header.major}.${header.minor}`,
      pageSize: header.pageSize,
      granuleSize: header.granuleSize,
      tagBits: header.tagBits,
      codec: header.codec === CODEC.zstd ? 'zstd' : header.codec === CODEC.none ? 'none' : `unknown (${header.codec})`,
      pagesPerChunk: header.pagesPerChunk,
    },
    snapshotId: Buffer.from(metadata.snapshotId).toString('hex'),
    parentId: metadata.parentId ? Buffer.from(metadata.parentId).toString('hex') : null,
    diff: reader.diff ? { changedPages: reader.diff.changedPages, guestPages: guestBytes / BigInt(header.pageSize) } : null,
    createdMs: metadata.createdMs,
    created: isoTime(metadata.createdMs),
    tool: metadata.tool,
    regions,
    totals: {
      guestBytes,
      ramChunks: regions.reduce((n, r) => n + r.ramChunks, 0),
      tagChunks: regions.reduce((n, r) => n + r.tagChunks, 0),
      ramBytes: sum((r) => r.ramBytes),
      tagBytes,
      compressionRatio: Number(guestBytes) / Number(reader.fileSize),
      tagPercentOfRam: guestBytes === 0n ? 0 : (Number(tagBytes) / Number(guestBytes)) * 100,
    },
    vcpus: reader.vcpuSummaries.map((vcpu) => ({ id: vcpu.id, registers: vcpu.registers })),
    blobs: reader.blobSummaries.map((blob) => ({ name: blob.name, bytes: blob.bytes })),
    annotations: { ...metadata.annotations },
  });
}
