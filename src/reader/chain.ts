/**
 * Chains of snapshots: a full snapshot followed by diff snapshots, each naming
 * the one before it by snapshot id (spec/FORMAT.md, section 4.1). A chain
 * stands for the guest of its last link.
 *
 * SnapshotChain opens the links (oldest first), checks every link against
 * the one before it (parent id, page size, chunk size, regions), and reads
 * the merged guest chunk by chunk: a page comes from the newest link that
 * gives it, found newest first, so memory stays at two chunks whatever the
 * chain's length or the guest's size. It is a SnapshotReader, so every
 * forensics tool reads a chain as it reads one full file.
 *
 * mergeOntoParents merges a last link read front to back (a pipe, a
 * migration stream) onto parents opened as files.
 */
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { equalBytes } from '../format/bytes.js';
import { bitmapLength, isPagePresent } from '../format/chunk.js';
import { ramChunk, tagChunk } from '../format/chunk-objects.js';
import { GRANULE_SIZE, HEADER_LENGTH, LIMITS, SECTION, SECTION_HEADER_LENGTH } from '../format/constants.js';
import { VmsnapError } from '../format/errors.js';
import { changedPagesList, GridTable } from '../format/grid-table.js';
import { decodeHeader } from '../format/header.js';
import { decodeMetadata } from '../format/metadata.js';
import type {
  BlobSummary,
  ChangedPages,
  ChangedPagesList,
  ChunkKind,
  ChunkList,
  ChunkLocation,
  RamChunk,
  SnapshotHeader,
  SnapshotMetadata,
  SnapshotReader,
  SnapshotRegion,
  TagChunk,
  VcpuSummary,
  VmmBlob,
} from '../format/model.js';
import type { VcpuState } from '../format/registers.js';
import { checkPayload, decodeSectionHeader } from '../format/section.js';
import { unpackTags } from '../format/tag-packing.js';
import type { SnapshotEvent } from './events.js';
import { readGuestMemory, readGuestTags } from './guest-range.js';
import { type FileSnapshot, type OpenOptions, openSnapshot } from './open.js';

export type ChainErrorCode = 'missing-parent' | 'parent-mismatch' | 'chain-layout-mismatch';

/**
 * A chain does not hold together: a diff whose parent is not there
 * (missing-parent), a link whose parent id is not the snapshot id of the link
 * before it (parent-mismatch), or a link whose layout differs from its
 * parent's (chain-layout-mismatch). The message is one line naming the files.
 */
export class ChainError extends VmsnapError {
  declare readonly code: ChainErrorCode;
  constructor(code: ChainErrorCode, message: string) {
    super(code, 'invalid-input', message);
  }
}

export function snapshotIdHex(id: Uint8Array): string {
  return Buffer.from(id).toString('hex');
}

/** What a link must share with its parent for their chunks to line up. */
export interface ChainLayout {
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  readonly regions: readonly SnapshotRegion[];
}

/** Why `child` cannot follow a parent of layout `parent`, or null: page size, chunk size and every region field must be equal. */
export function layoutDifference(parent: ChainLayout, child: ChainLayout): string | null {
  if (parent.pageSize !== child.pageSize) return `page size ${child.pageSize}, the parent's is ${parent.pageSize}`;
  if (parent.pagesPerChunk !== child.pagesPerChunk)
    return `${child.pagesPerChunk} pages per chunk, the parent's has ${parent.pagesPerChunk}`;
  if (parent.regions.length !== child.regions.length) return `${child.regions.length} regions, the parent's has ${parent.regions.length}`;
  for (const [i, a] of parent.regions.entries()) {
    const b = child.regions[i];
    if (a.name !== b.name || a.guestAddress !== b.guestAddress || a.size !== b.size) {
      const describe = (r: SnapshotRegion) => `"${r.name}" at 0x${r.guestAddress.toString(16)} of ${r.size} bytes`;
      return `region ${i} ${describe(b)}, the parent's is ${describe(a)}`;
    }
    if (a.mte !== b.mte || a.readOnly !== b.readOnly || a.slot !== b.slot)
      return `region ${i} "${b.name}" differs from the parent's in mte, read_only or slot`;
  }
  return null;
}

function layoutOf(header: SnapshotHeader, metadata: SnapshotMetadata): ChainLayout {
  return { pageSize: header.pageSize, pagesPerChunk: header.pagesPerChunk, regions: metadata.regions };
}

/** One link as the chain checks it: its name, what it is and what it names as its parent. */
interface LinkFacts {
  readonly name: string;
  readonly header: SnapshotHeader;
  readonly metadata: SnapshotMetadata;
  /** The DIFF section's parent, or null for a full snapshot. */
  readonly diffParent: Uint8Array | null;
}

/** Throws a ChainError unless `child` is a diff whose parent is `parent`, with the same layout. */
function checkLink(parent: LinkFacts, child: LinkFacts): void {
  if (!child.diffParent) {
    throw new ChainError('parent-mismatch', `${child.name} is a full snapshot, not a diff of ${parent.name}`);
  }
  if (!equalBytes(child.diffParent, parent.metadata.snapshotId)) {
    throw new ChainError(
      'parent-mismatch',
      `${child.name} is a diff of snapshot ${snapshotIdHex(child.diffParent)}, ` +
        `but ${parent.name} is snapshot ${snapshotIdHex(parent.metadata.snapshotId)}`,
    );
  }
  const difference = layoutDifference(layoutOf(parent.header, parent.metadata), layoutOf(child.header, child.metadata));
  if (difference) throw new ChainError('chain-layout-mismatch', `${child.name} cannot follow ${parent.name}: it has ${difference}`);
}

function facts(link: FileSnapshot): LinkFacts {
  return { name: link.path, header: link.header, metadata: link.metadata, diffParent: link.diff?.parentId ?? null };
}

/** One chunk's pages, merged from the links: what a full snapshot's chunk would hold. */
export interface MergedChunk {
  readonly present: Uint8Array;
  readonly bytes: Uint8Array;
}

/**
 * Copies pages `pages` (a bitmap) of a link's decoded chunk into `into`,
 * `unit` output bytes per page, with their present bits. A chunk whose
 * present pages the reader kept packed (RAM `content`, tags `packedTags` two
 * per byte) is copied and unpacked from them, never expanded: no buffer of the
 * chunk's size is made for it. A page `pages` names that the chunk does not
 * store is zero.
 */
export function copyPages(into: MergedChunk, from: RamChunk | TagChunk, pages: Uint8Array, pageCount: number, unit: number): void {
  const packedTags = 'tags' in from ? from.packedTags : undefined;
  const packed = 'tags' in from ? undefined : from.content;
  const source = packed ?? (packedTags ? undefined : 'tags' in from ? from.tags : from.data);
  // The page's place among the stored pages when packed, else the page itself.
  let stored = 0;
  for (let page = 0; page < pageCount; page++) {
    const present = isPagePresent(from.present, page);
    const at = packed || packedTags ? stored : page;
    if (present) stored++;
    if (!isPagePresent(pages, page)) continue;
    const target = into.bytes.subarray(page * unit, (page + 1) * unit);
    if (!present) {
      target.fill(0);
      into.present[page >>> 3] &= ~(1 << (page & 7));
      continue;
    }
    if (packedTags) unpackTags(packedTags, at * unit, target);
    else target.set(source!.subarray(at * unit, (at + 1) * unit));
    into.present[page >>> 3] |= 1 << (page & 7);
  }
}

/** Spare merged-chunk buffers kept per length: more than a chain reader ever has in flight. */
const MAX_SPARE_MERGED = 4;

/**
 * Buffers for merged chunks, reused once their reader is done with them: a
 * fresh one per chunk is external memory V8 frees only after some 64 MiB of
 * it piled up (issue 10), so a whole-guest read would peak that much higher.
 */
export class MergedBuffers {
  private readonly spare = new Map<number, Uint8Array[]>();

  /** A buffer of `length` bytes, zero-filled as a fresh one would be. */
  take(length: number): Uint8Array {
    return this.spare.get(length)?.pop()?.fill(0) ?? new Uint8Array(length);
  }

  giveBack(bytes: Uint8Array): void {
    const list = this.spare.get(bytes.length) ?? [];
    if (list.length >= MAX_SPARE_MERGED) return;
    list.push(bytes);
    this.spare.set(bytes.length, list);
  }
}

/** A chain opened as files, oldest first; see the module comment. */
export class SnapshotChain implements SnapshotReader {
  readonly path: string;
  readonly header: SnapshotHeader;
  readonly metadata: SnapshotMetadata;
  readonly regions: readonly SnapshotRegion[];
  readonly chunks: ChunkList;
  readonly fileSize: bigint;
  readonly vcpuSummaries: readonly VcpuSummary[];
  readonly blobSummaries: readonly BlobSummary[];
  /** The merged view is a full guest: not a diff. */
  readonly diff = null;
  readonly changedPageMaps: ChangedPagesList = changedPagesList(new GridTable(1, 0));

  constructor(
    /** The links, oldest (the full snapshot) first. */
    readonly links: readonly FileSnapshot[],
  ) {
    const last = links[links.length - 1];
    this.path = last.path;
    this.header = last.header;
    this.metadata = last.metadata;
    this.regions = last.regions;
    this.chunks = last.chunks;
    this.fileSize = last.fileSize;
    this.vcpuSummaries = last.vcpuSummaries;
    this.blobSummaries = last.blobSummaries;
  }

  get last(): FileSnapshot {
    return this.links[this.links.length - 1];
  }

  /**
   * The guest's RAM (one byte per byte) or tags (one byte per granule) of
   * one grid chunk, merged: each page from the newest link that gives it.
   * `into`, if given, is the chunk's buffer to fill (a caller that reads the
   * whole guest passes the same few buffers round, so memory stays flat).
   */
  async readMerged(
    kind: ChunkKind,
    region: number,
    firstPage: number,
    into?: Uint8Array,
  ): Promise<MergedChunk & { location: ChunkLocation }> {
    // A chunk's position is the same in every link: the grid's (checked when each was opened), as the layouts are equal.
    const index = this.last.chunkTable.positionOf(kind, region, firstPage);
    if (index < 0) throw new RangeError(`no ${kind} chunk at region ${region} page ${firstPage}`);
    const location = this.last.chunkTable.chunkAt(index);
    const { pageCount } = location;
    const unit = kind === 'ram' ? this.header.pageSize : this.header.pageSize / GRANULE_SIZE;
    if (into && into.length !== pageCount * unit) throw new RangeError(`readMerged: ${into.length} bytes given for ${pageCount * unit}`);
    // A buffer handed in is reused from an earlier chunk: cleared, as a fresh one would be.
    const bytes = into ? into.fill(0) : new Uint8Array(pageCount * unit);
    const merged: MergedChunk = { present: new Uint8Array(bitmapLength(pageCount)), bytes };
    // Pages still to find, newest link first: a link's given pages hide the same pages of every older link.
    const wanted = new Uint8Array(bitmapLength(pageCount)).fill(0xff);
    for (let i = this.links.length - 1; i >= 0; i--) {
      const link = this.links[i];
      const at = link.chunkTable.chunkAt(index);
      let pages = wanted;
      if (link.diff) {
        const map = link.changedPagesOf(at);
        if (map.changedCount === 0) continue;
        const { changed } = await link.readChangedPages(map);
        pages = wanted.map((bits, b) => bits & changed[b]);
        if (pages.every((bits) => bits === 0)) continue;
      }
      // Read into the link's reused memory: the pages are copied out before it is released, so nothing keeps a view of it.
      const { chunk, release } = await link.readTransientChunk(at);
      try {
        copyPages(merged, chunk, pages, pageCount, unit);
      } finally {
        release();
      }
      for (let b = 0; b < wanted.length; b++) wanted[b] &= ~pages[b];
      if (!link.diff) break;
    }
    return { present: merged.present, bytes: merged.bytes, location };
  }

  async readChunk(location: ChunkLocation): Promise<RamChunk | TagChunk> {
    const merged = await this.readMerged(location.kind, location.region, location.firstPage);
    const { present, bytes } = merged;
    return location.kind === 'ram' ? ramChunk(merged.location, present, bytes) : tagChunk(merged.location, present, bytes);
  }

  async readRamChunk(location: ChunkLocation): Promise<RamChunk> {
    if (location.kind !== 'ram') throw new TypeError('readRamChunk takes a RAM chunk');
    return (await this.readChunk(location)) as RamChunk;
  }

  async readTagChunk(location: ChunkLocation): Promise<TagChunk> {
    if (location.kind !== 'tags') throw new TypeError('readTagChunk takes a tag chunk');
    return (await this.readChunk(location)) as TagChunk;
  }

  readChangedPages(): Promise<ChangedPages> {
    return Promise.reject(new TypeError('a chain is read merged: it has no changed-page maps (read a link of it instead)'));
  }

  readMemory(guestAddress: bigint, length: number): Promise<Uint8Array> {
    return readGuestMemory(this, guestAddress, length);
  }

  readTags(guestAddress: bigint, length: number): Promise<Uint8Array> {
    return readGuestTags(this, guestAddress, length);
  }

  /** The final state's vCPUs and blobs: a diff holds them whole, so they are the last link's. */
  vcpus(): Promise<VcpuState[]> {
    return this.last.vcpus();
  }

  blobs(): Promise<VmmBlob[]> {
    return this.last.blobs();
  }

  /** The merged guest as the events of one full snapshot: start, every chunk merged, vCPUs, blobs. */
  async *events(): AsyncGenerator<SnapshotEvent> {
    yield { type: 'start', header: this.header, metadata: this.metadata };
    const table = this.last.chunkTable;
    for (let i = 0; i < table.length; i++) yield { type: 'chunk', chunk: await this.readChunk(table.chunkAt(i)) };
    for (const vcpu of await this.vcpus()) yield { type: 'vcpu', vcpu };
    for (const blob of await this.blobs()) yield { type: 'blob', blob };
  }

  async close(): Promise<void> {
    for (const link of this.links) await link.close();
  }
}

/**
 * Opens a chain: `paths` oldest first, the first a full snapshot, each next
 * one a diff of the one before it. Every file is opened and checked
 * (openSnapshot), then every link against its parent.
 */
export async function openChain(paths: readonly string[], options: OpenOptions = {}): Promise<SnapshotChain> {
  if (paths.length === 0) throw new TypeError('a chain has at least one snapshot');
  const links: FileSnapshot[] = [];
  try {
    for (const path of paths) links.push(await openSnapshot(path, options));
    const first = links[0];
    if (first.diff) {
      throw new ChainError(
        'missing-parent',
        `${first.path} is a diff of snapshot ${snapshotIdHex(first.diff.parentId)}, which is not in the chain ` +
          '(a chain starts with a full snapshot)',
      );
    }
    for (let i = 1; i < links.length; i++) checkLink(facts(links[i - 1]), facts(links[i]));
    return new SnapshotChain(links);
  } catch (error) {
    for (const link of links) await link.close();
    throw error;
  }
}

/**
 * The events of a full snapshot of the guest that `events` (a last link read
 * front to back: a file's events or a pipe's) stands for on top of `parents`.
 * The last link must be a diff of the parents' last snapshot, with their
 * layout; chunks are merged as they arrive, each with the parents' same chunk.
 * `events` may be transient (each chunk is copied from and released at once);
 * every merged chunk event carries `release`, which hands its buffer back for
 * a later chunk: a consumer that calls it keeps memory at a few chunks, one
 * that does not leaves each to the garbage collector.
 */
export async function* mergeOntoParents(
  parents: SnapshotChain,
  events: AsyncIterable<SnapshotEvent>,
  name: string,
): AsyncGenerator<SnapshotEvent> {
  let start: Extract<SnapshotEvent, { type: 'start' }> | undefined;
  let checked = false;
  let changed: ChangedPages | undefined;
  const buffers = new MergedBuffers();
  const parentFacts: LinkFacts = { ...facts(parents.last), name: parents.last.path };
  for await (const event of events) {
    if (event.type === 'start') {
      start = event;
      continue;
    }
    if (!checked) {
      checked = true;
      const diffParent = event.type === 'diff' ? event.parentId : null;
      checkLink(parentFacts, { name, header: start!.header, metadata: start!.metadata, diffParent });
      yield start!;
      if (event.type === 'diff') continue;
    }
    if (event.type === 'changed') {
      changed = event.pages;
      continue;
    }
    if (event.type !== 'chunk') {
      yield event;
      continue;
    }
    const chunk = event.chunk;
    const unit = chunk.kind === 'ram' ? parents.header.pageSize : parents.header.pageSize / GRANULE_SIZE;
    let merged: MergedChunk;
    try {
      merged = await parents.readMerged(chunk.kind, chunk.region, chunk.firstPage, buffers.take(chunk.pageCount * unit));
      copyPages(merged, chunk, changed!.changed, chunk.pageCount, unit);
    } finally {
      // The diff's pages are copied (or the merge failed): memory its reader reuses goes back to it now.
      event.release?.();
    }
    // The location alone: the merged pages replace the diff's (and any packed content it kept).
    const { bytes, present } = merged;
    let released = false;
    const release = () => {
      if (!released) buffers.giveBack(bytes);
      released = true;
    };
    yield { type: 'chunk', chunk: chunk.kind === 'ram' ? ramChunk(chunk, present, bytes) : tagChunk(chunk, present, bytes), release };
  }
  // A stream that ended right after META: nothing merged, and no link to check.
  if (start && !checked) {
    checkLink(parentFacts, { name, header: start.header, metadata: start.metadata, diffParent: null });
  }
}

/** What a snapshot file says about itself in its first sections: its id and, for a diff, its parent. */
export interface SnapshotIdentity {
  readonly path: string;
  readonly snapshotId: Uint8Array;
  /** The DIFF section's parent id; null for a full snapshot. */
  readonly diffParent: Uint8Array | null;
}

function readAt(fd: number, offset: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, bytes, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return bytes.subarray(0, done);
}

/**
 * Reads the header, META and the section after it (DIFF or not) of a
 * snapshot file, and nothing else: enough to find a chain's links among
 * files. The chain is checked in full when it is opened.
 */
export function readSnapshotIdentity(path: string): SnapshotIdentity {
  const fd = openSync(path, 'r');
  try {
    decodeHeader(readAt(fd, 0, HEADER_LENGTH));
    const meta = decodeSectionHeader(readAt(fd, HEADER_LENGTH, SECTION_HEADER_LENGTH), BigInt(HEADER_LENGTH));
    if (meta.type !== SECTION.metadata || meta.payloadLength > BigInt(LIMITS.metadata)) {
      throw new ChainError('missing-parent', `${path} does not start with a META section`);
    }
    const payloadAt = HEADER_LENGTH + SECTION_HEADER_LENGTH;
    const payload = readAt(fd, payloadAt, Number(meta.payloadLength));
    checkPayload(meta, payload);
    const metadata = decodeMetadata(payload, BigInt(payloadAt));
    const nextAt = payloadAt + payload.length;
    const next = readAt(fd, nextAt, SECTION_HEADER_LENGTH);
    const isDiff = next.length === SECTION_HEADER_LENGTH && decodeSectionHeader(next, BigInt(nextAt)).type === SECTION.diff;
    return { path, snapshotId: metadata.snapshotId, diffParent: isDiff ? metadata.parentId : null };
  } finally {
    closeSync(fd);
  }
}

/**
 * The chain that ends in `last`, oldest first, its parents found by snapshot
 * id among the *.vmsnap files of `last`'s directory (only their first
 * sections are read). A parent not found there is a ChainError naming it.
 */
export function findChain(last: string): string[] {
  const chain = [last];
  let identity = readSnapshotIdentity(last);
  let candidates: Map<string, string> | undefined;
  while (identity.diffParent) {
    candidates ??= scanDirectory(dirname(last));
    const parentId = snapshotIdHex(identity.diffParent);
    const parent = candidates.get(parentId);
    if (!parent || chain.includes(parent)) {
      throw new ChainError(
        'missing-parent',
        `${identity.path} is a diff of snapshot ${parentId}, which no *.vmsnap file in ${dirname(last) || '.'} is ` +
          '(name the chain with --chain)',
      );
    }
    chain.unshift(parent);
    identity = readSnapshotIdentity(parent);
  }
  return chain;
}

/** snapshot id (hex) -> path of the *.vmsnap files of `directory`; files that are not snapshots are passed over. */
function scanDirectory(directory: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const entry of readdirSync(directory || '.').sort()) {
    if (!entry.endsWith('.vmsnap')) continue;
    const path = join(directory, entry);
    try {
      const identity = readSnapshotIdentity(path);
      const id = snapshotIdHex(identity.snapshotId);
      if (!found.has(id)) found.set(id, path);
    } catch (error) {
      if (!(error instanceof VmsnapError) && (error as NodeJS.ErrnoException).code === undefined) throw error;
    }
  }
  return found;
}
