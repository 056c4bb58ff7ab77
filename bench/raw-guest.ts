/**
 * Writes a generated guest (src/workload) as the raw files a VMM
 * would dump: a RAM image with the regions one after another, a tag file in
 * the byte layout (one tag per granule, at RAM offset / 16), and the layout
 * JSON. Pages are generated a chunk at a time, so memory stays bounded
 * whatever the guest size. Every byte is written (no holes), as a plain dump
 * of guest memory is, so that cp and zstd see the same files vmsnap does.
 */
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { formatRawLayout, type RawLayout, resolveRawLayout, tagFileOffset } from '../src/backends/raw-files/raw-files-vm.js';
import { generateRegionChunks } from '../src/workload/generate.js';
import { planWorkload, type Workload } from '../src/workload/workload-layout.js';

export interface RawGuestFiles {
  readonly ram: string;
  readonly tags: string;
  readonly layout: string;
  readonly ramBytes: bigint;
  readonly tagFileBytes: bigint;
}

const PAGES_PER_STEP = 1024;

function layoutOf(workload: Workload): RawLayout {
  // Regions in address order, as the writer lists them, so a restore lays the files out the same way.
  const regions = [...workload.regions].sort((a, b) => (a.guestAddress < b.guestAddress ? -1 : 1));
  return resolveRawLayout({
    pageSize: workload.pageSize,
    tagLayout: 'byte',
    regions: regions.map((r) => ({
      name: r.name,
      slot: r.slot,
      guestAddress: r.guestAddress,
      size: r.size,
      mte: r.mte,
      readOnly: r.readOnly,
    })),
  });
}

function writeAll(fd: number, bytes: Uint8Array, position: bigint): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, Number(position) + done);
}

export function writeRawGuest(directory: string, options: { sizeMiB: number; seed: number; pageSize: number }): RawGuestFiles {
  const workload = planWorkload({ sizeMiB: options.sizeMiB, seed: options.seed, pageSize: options.pageSize });
  const layout = layoutOf(workload);
  const files = { ram: `${directory}/guest.ram`, tags: `${directory}/guest.tags`, layout: `${directory}/guest.layout.json` };
  const ramFd = openSync(files.ram, 'w');
  const tagFd = openSync(files.tags, 'w');
  let ramBytes = 0n;
  let tagFileBytes = 0n;
  try {
    for (const region of layout.regions) {
      for (const chunk of generateRegionChunks(workload, region.name, PAGES_PER_STEP)) {
        const offset = region.fileOffset + BigInt(chunk.firstPage) * BigInt(workload.pageSize);
        writeAll(ramFd, chunk.data, offset);
        // Untagged regions still occupy their place in the tag file (zeros), so offsets stay RAM offset / 16.
        writeAll(tagFd, chunk.tags, tagFileOffset(layout.tagLayout, offset));
        ramBytes += BigInt(chunk.data.length);
        tagFileBytes += BigInt(chunk.tags.length);
      }
    }
  } finally {
    closeSync(ramFd);
    closeSync(tagFd);
  }
  writeFileSync(files.layout, formatRawLayout(layout));
  return { ...files, ramBytes, tagFileBytes };
}
