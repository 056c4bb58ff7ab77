/**
 * `vmsnap info FILE`: what a snapshot holds, from its header, metadata and
 * index alone (no chunk is decompressed, so it is instant on any size):
 * regions and their IPA ranges, chunk counts, the compression ratio, tag
 * bytes as a share of RAM, vCPUs, blobs and annotations.
 */
import type { Command } from 'commander';
import { CODEC } from '../../src/format/constants.js';
import type { SnapshotReader } from '../../src/format/model.js';
import { openSnapshot } from '../../src/reader/open.js';
import { CliError, EXIT } from '../cli-support.js';
import { helpAfter, printJson, printLine } from '../help.js';
import { formatBytes, hex, percent } from '../units.js';

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
  created: string;
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
  return {
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
    created: new Date(Number(metadata.createdMs)).toISOString(),
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
    vcpus: (await reader.vcpus()).map((vcpu) => ({ id: vcpu.id, registers: vcpu.registers.length })),
    blobs: (await reader.blobs()).map((blob) => ({ name: blob.name, bytes: blob.data.length })),
    annotations: { ...metadata.annotations },
  };
}

function printInfo(info: SnapshotInfo): void {
  const f = info.format;
  printLine(`${info.file}: vmsnap format ${f.version}, ${formatBytes(info.fileBytes)} (${info.fileBytes} bytes)`);
  printLine(`  pages ${f.pageSize} bytes, ${f.pagesPerChunk} per chunk; MTE granule ${f.granuleSize} bytes, ${f.tagBits}-bit tags; codec ${f.codec}`);
  printLine(`  snapshot ${info.snapshotId}${info.parentId ? `, parent ${info.parentId}` : ''}, created ${info.created} by ${info.tool}`);
  printLine(`regions (${info.regions.length}):`);
  for (const r of info.regions) {
    const flags = [r.mte ? 'mte' : 'no tags', r.readOnly ? 'read-only' : ''].filter(Boolean).join(', ');
    printLine(`  ${r.index} ${r.name} (slot ${r.slot}): IPA ${hex(r.guestAddress)}-${hex(r.guestEnd)} ${formatBytes(r.size)}, ${flags}`);
    printLine(`      ${r.ramChunks} RAM chunks ${formatBytes(r.ramBytes)}, ${r.tagChunks} tag chunks ${formatBytes(r.tagBytes)}`);
  }
  const t = info.totals;
  printLine(`totals: ${formatBytes(t.guestBytes)} of guest memory in ${t.ramChunks + t.tagChunks} chunks (${t.ramChunks} RAM, ${t.tagChunks} tag)`);
  printLine(`  compression ${t.compressionRatio.toFixed(2)}:1; RAM sections ${formatBytes(t.ramBytes)}, tag sections ${formatBytes(t.tagBytes)} = ${percent(t.tagBytes, t.guestBytes)} of RAM`);
  printLine(`vCPUs (${info.vcpus.length}): ${info.vcpus.map((v) => `${v.id} (${v.registers} registers)`).join(', ') || 'none'}`);
  printLine(`blobs (${info.blobs.length}): ${info.blobs.map((b) => `${b.name} (${formatBytes(b.bytes)})`).join(', ') || 'none'}`);
  const annotations = Object.entries(info.annotations);
  printLine(`annotations (${annotations.length}):`);
  for (const [key, value] of annotations) printLine(`  ${key}=${value}`);
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('Show what a snapshot holds: format, regions with IPA ranges, chunks, compression, tag share, vCPUs, blobs, annotations')
    .argument('<file>', 'snapshot file (random access: not "-")')
    .option('--json', 'machine-readable output on standard output')
    .addHelpText('after', helpAfter(['vmsnap info guest.vmsnap', 'vmsnap info guest.vmsnap --json | jq .totals']))
    .action(
      async (file: string, options: { json?: boolean }) => {
        // The summary needs the index, which a pipe delivers last; `vmsnap verify -` reads a pipe.
        if (file === '-') throw new CliError('info needs a file it can seek in; for a pipe use `vmsnap verify -`', 'usage');
        const reader = await openSnapshot(file, { threads: 0 });
        try {
          const info = await describeSnapshot(reader);
          if (options.json) printJson(info);
          else printInfo(info);
        } finally {
          await reader.close();
        }
      },
    );
}
