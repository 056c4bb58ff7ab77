/**
 * Manifests (spec/STORE.md, "Manifests"): what a snapshot in the store is
 * besides its chunks. The plaintext is a MessagePack map holding the
 * snapshot's header fields, its META, VCPU and BLOB payloads exactly as
 * spec/FORMAT.md defines them, and the name of every chunk of its grid in
 * grid order. It is sealed with AES-256-GCM under the tenant's manifest key
 * and a random nonce; the associated data binds the snapshot's name, so a
 * manifest copied or renamed to another name, or another tenant's, does not
 * open.
 *
 * A diff snapshot (spec/FORMAT.md section 4.1) is stored as a version-2
 * manifest: it names its parent in the store, holds the changed-page map of
 * every chunk position of the grid, and names only the chunks of the
 * positions where it gives pages; restore finds the rest in its parents. A
 * full snapshot is still written as version 1, byte for byte as before.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { bitmapLength, popcount } from '../format/chunk.js';
import { chunkGrid, type DataGridChunk } from '../format/chunk-grid.js';
import { decodeBlob, decodeMetadata, decodeVcpu, encodeBlob, encodeMetadata, encodeVcpu, packValue } from '../format/metadata.js';
import type { SnapshotHeader, SnapshotMetadata, VmmBlob } from '../format/model.js';
import { decodeMessagePack, type MessagePackValue } from '../format/msgpack.js';
import type { VcpuState } from '../vm/vm.js';
import { StoreError } from './errors.js';
import type { TenantKeys } from './tenant-keys.js';

export const MANIFEST_MAGIC = 'VMSM';
/** The object framing's version (byte 4 of the object): the same for every manifest. */
export const MANIFEST_VERSION = 1;
/** The plaintext's `version`: 1 for a full snapshot, 2 for a diff. */
export const DIFF_MANIFEST_VERSION = 2;
/** Longest chain restore follows: far more than any real chain, few enough that a loop of names is caught fast. */
export const MAX_CHAIN_LINKS = 4096;
const PREFIX_LENGTH = 8;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
export const NAME_LENGTH = 32;

export interface Manifest {
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  readonly metadata: SnapshotMetadata;
  readonly vcpus: readonly VcpuState[];
  readonly blobs: readonly VmmBlob[];
  /**
   * One 32-byte chunk name per grid chunk, in grid order; in a diff, only the
   * chunks of the positions whose changed-page map is not empty.
   */
  readonly chunkNames: readonly Uint8Array[];
  /** Bytes of the snapshot file this came from (or would be, saved straight to the store). */
  readonly fileBytes: bigint;
  /** What makes it a diff: its parent in the store and its changed-page maps; absent (or null) for a full snapshot. */
  readonly diff?: ManifestDiff | null;
}

export interface ManifestDiff {
  /** The parent's snapshot name in the same store; its snapshot id is META's parent_id. */
  readonly parentName: string;
  /** One changed-page bitmap per chunk position (each RAM chunk of the grid), in grid order. */
  readonly changed: readonly Uint8Array[];
}

export type NamedGridChunk = DataGridChunk & { readonly name: Uint8Array };

/** Field by field, not spread and extended: see src/format/chunk-objects.ts. */
function namedGridChunk(grid: DataGridChunk, name: Uint8Array): NamedGridChunk {
  return { kind: grid.kind, region: grid.region, firstPage: grid.firstPage, pageCount: grid.pageCount, name };
}

/** One position of the grid (a RAM chunk's pages and, in an MTE region, their tags), as a manifest stores it. */
export interface ChunkPosition {
  readonly ram: DataGridChunk;
  readonly tags: DataGridChunk | null;
  /** A diff's pages given at this position (a CHGP bitmap); null in a full snapshot, which gives every page. */
  readonly changed: Uint8Array | null;
  /** The chunk objects; null where a diff gives no page of this position. */
  readonly ramChunk: NamedGridChunk | null;
  readonly tagChunk: NamedGridChunk | null;
}

/** Every position of the manifest's grid, in grid order, with its chunk objects and (in a diff) its changed pages. */
export function manifestPositions(manifest: Manifest): ChunkPosition[] {
  const positions: ChunkPosition[] = [];
  let name = 0;
  let at = 0;
  const named = (grid: DataGridChunk | null, carried: boolean): NamedGridChunk | null =>
    grid && carried ? namedGridChunk(grid, manifest.chunkNames[name++]) : null;
  const grid = [...chunkGrid(manifest.metadata.regions, manifest.pageSize, manifest.pagesPerChunk)];
  for (let i = 0; i < grid.length; i++) {
    const ram = grid[i];
    const tags = grid[i + 1]?.kind === 'tags' ? grid[++i] : null;
    const changed = manifest.diff ? manifest.diff.changed[at++] : null;
    const carried = changed === null || popcount(changed) > 0;
    positions.push({ ram, tags, changed, ramChunk: named(ram, carried), tagChunk: named(tags, carried) });
  }
  return positions;
}

/** The chunk objects a manifest names, with their place in the grid, in grid (restore) order. */
export function manifestChunks(manifest: Manifest): NamedGridChunk[] {
  return manifestPositions(manifest).flatMap((p) => [p.ramChunk, p.tagChunk].filter((c): c is NamedGridChunk => c !== null));
}

export function encodeManifest(manifest: Manifest): Uint8Array {
  const diff = manifest.diff
    ? { parent: manifest.diff.parentName, changed: Buffer.concat(manifest.diff.changed.map((bits) => Buffer.from(bits))) }
    : {};
  return packValue({
    version: manifest.diff ? DIFF_MANIFEST_VERSION : MANIFEST_VERSION,
    page_size: manifest.pageSize,
    pages_per_chunk: manifest.pagesPerChunk,
    file_bytes: manifest.fileBytes,
    meta: encodeMetadata(manifest.metadata),
    vcpus: manifest.vcpus.map(encodeVcpu),
    blobs: manifest.blobs.map(encodeBlob),
    chunks: Buffer.concat(manifest.chunkNames),
    ...diff,
  });
}

/** A version-2 manifest's `parent` and `changed`, checked against its grid; the number of chunks it must name. */
function decodeDiff(
  map: ReadonlyMap<string, MessagePackValue>,
  manifest: Manifest,
  where: string,
): { diff: ManifestDiff; chunkCount: number } {
  const parent = field(map, 'parent', where);
  const changed = field(map, 'changed', where);
  if (typeof parent !== 'string' || parent.length === 0 || parent.length > 200)
    throw new StoreError('bad-manifest', `${where}: "parent" is not a snapshot name`);
  if (!(changed instanceof Uint8Array)) throw new StoreError('bad-manifest', `${where}: "changed" is not a byte string`);
  if (!manifest.metadata.parentId) throw new StoreError('bad-manifest', `${where}: a diff manifest whose META has no parent_id`);
  const maps: Uint8Array[] = [];
  let offset = 0;
  let chunkCount = 0;
  const positions = manifestPositions({ ...manifest, diff: null, chunkNames: [] });
  for (const position of positions) {
    const { pageCount } = position.ram;
    const bits = changed.subarray(offset, offset + bitmapLength(pageCount));
    if (bits.length < bitmapLength(pageCount)) break;
    if (pageCount % 8 && bits[bits.length - 1] >> (pageCount % 8))
      throw new StoreError(
        'bad-manifest',
        `${where}: changed-page map of region ${position.ram.region} page ${position.ram.firstPage} has bits past its pages`,
      );
    maps.push(bits);
    offset += bits.length;
    if (popcount(bits) > 0) chunkCount += position.tags ? 2 : 1;
  }
  if (offset !== changed.length || maps.length !== positions.length)
    throw new StoreError(
      'bad-manifest',
      `${where}: "changed" holds ${changed.length} bytes, not one changed-page map per chunk of the grid`,
    );
  return { diff: { parentName: parent, changed: maps }, chunkCount };
}

function field(map: ReadonlyMap<string, MessagePackValue>, key: string, where: string): MessagePackValue {
  if (!map.has(key)) throw new StoreError('bad-manifest', `${where}: manifest has no "${key}"`);
  return map.get(key)!;
}

function small(value: MessagePackValue, key: string, where: string): number {
  if (typeof value !== 'bigint' || value < 0n || value > 0xffff_ffffn)
    throw new StoreError('bad-manifest', `${where}: "${key}" is not a 32-bit unsigned integer`);
  return Number(value);
}

function binaries(value: MessagePackValue, key: string, where: string): Uint8Array[] {
  if (!Array.isArray(value) || value.some((item) => !(item instanceof Uint8Array)))
    throw new StoreError('bad-manifest', `${where}: "${key}" is not an array of byte strings`);
  return value as Uint8Array[];
}

export function decodeManifest(plaintext: Uint8Array, where: string): Manifest {
  let map: MessagePackValue;
  try {
    map = decodeMessagePack(plaintext);
  } catch (error) {
    throw new StoreError('bad-manifest', `${where}: manifest is not valid MessagePack (${(error as Error).message})`);
  }
  if (!(map instanceof Map)) throw new StoreError('bad-manifest', `${where}: manifest is not a MessagePack map`);
  const version = small(field(map, 'version', where), 'version', where);
  if (version !== MANIFEST_VERSION && version !== DIFF_MANIFEST_VERSION)
    throw new StoreError('bad-manifest', `${where}: manifest version ${version}, this reader knows 1 and 2`);
  if (version === MANIFEST_VERSION && (map.has('parent') || map.has('changed')))
    throw new StoreError('bad-manifest', `${where}: a version-1 manifest (a full snapshot) with "parent" or "changed"`);
  const meta = field(map, 'meta', where);
  const chunks = field(map, 'chunks', where);
  const fileBytes = field(map, 'file_bytes', where);
  if (!(meta instanceof Uint8Array) || !(chunks instanceof Uint8Array) || typeof fileBytes !== 'bigint')
    throw new StoreError('bad-manifest', `${where}: "meta", "chunks" or "file_bytes" has the wrong type`);
  try {
    const manifest: Manifest = {
      pageSize: small(field(map, 'page_size', where), 'page_size', where),
      pagesPerChunk: small(field(map, 'pages_per_chunk', where), 'pages_per_chunk', where),
      metadata: decodeMetadata(meta, 0n),
      vcpus: binaries(field(map, 'vcpus', where), 'vcpus', where).map((payload) => decodeVcpu(payload, 0n)),
      blobs: binaries(field(map, 'blobs', where), 'blobs', where).map((payload) => decodeBlob(payload, 0n)),
      chunkNames: [],
      fileBytes,
    };
    const decodedDiff = version === DIFF_MANIFEST_VERSION ? decodeDiff(map, manifest, where) : null;
    const count = decodedDiff
      ? decodedDiff.chunkCount
      : [...chunkGrid(manifest.metadata.regions, manifest.pageSize, manifest.pagesPerChunk)].length;
    if (chunks.length !== count * NAME_LENGTH)
      throw new StoreError(
        'bad-manifest',
        `${where}: manifest names ${chunks.length / NAME_LENGTH} chunks, its grid ${decodedDiff ? 'carries' : 'has'} ${count}`,
      );
    const names: Uint8Array[] = [];
    for (let i = 0; i < count; i++) names.push(chunks.subarray(i * NAME_LENGTH, (i + 1) * NAME_LENGTH));
    return { ...manifest, chunkNames: names, diff: decodedDiff?.diff ?? null };
  } catch (error) {
    if (error instanceof StoreError) throw error;
    throw new StoreError('bad-manifest', `${where}: ${(error as Error).message}`, { cause: error });
  }
}

function prefix(): Uint8Array {
  const bytes = new Uint8Array(PREFIX_LENGTH);
  bytes.set(Buffer.from(MANIFEST_MAGIC, 'latin1'));
  bytes[4] = MANIFEST_VERSION;
  return bytes;
}

function associatedData(head: Uint8Array, name: string): Buffer {
  return Buffer.concat([head, Buffer.from(name, 'utf8')]);
}

/** The manifest object stored for snapshot `name`. */
export function sealManifest(
  keys: TenantKeys,
  name: string,
  manifest: Manifest,
  nonce: Uint8Array = randomBytes(NONCE_LENGTH),
): Uint8Array {
  const head = prefix();
  const cipher = createCipheriv('aes-256-gcm', keys.manifestKey, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(associatedData(head, name));
  const body = Buffer.concat([cipher.update(encodeManifest(manifest)), cipher.final()]);
  return Buffer.concat([head, nonce, body, cipher.getAuthTag()]);
}

/** Opens the manifest object of snapshot `name`; refuses one that is altered, renamed or sealed with another tenant's key. */
export function openManifest(keys: TenantKeys, name: string, object: Uint8Array): Manifest {
  const where = `snapshot ${name}`;
  const head = prefix();
  if (object.length < PREFIX_LENGTH + NONCE_LENGTH + TAG_LENGTH || !Buffer.from(object.subarray(0, PREFIX_LENGTH)).equals(head)) {
    throw new StoreError('manifest-not-authentic', `${where}: not a version-1 vmsnap manifest object`);
  }
  const nonce = object.subarray(PREFIX_LENGTH, PREFIX_LENGTH + NONCE_LENGTH);
  const decipher = createDecipheriv('aes-256-gcm', keys.manifestKey, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(associatedData(head, name));
  decipher.setAuthTag(object.subarray(object.length - TAG_LENGTH));
  let plaintext: Buffer;
  try {
    plaintext = Buffer.concat([
      decipher.update(object.subarray(PREFIX_LENGTH + NONCE_LENGTH, object.length - TAG_LENGTH)),
      decipher.final(),
    ]);
  } catch {
    throw new StoreError(
      'manifest-not-authentic',
      `${where}: manifest does not authenticate with this key (altered, renamed, or another tenant's)`,
    );
  }
  return decodeManifest(new Uint8Array(plaintext), where);
}

/** The header fields a snapshot rebuilt from `manifest` has (codec zstd: chunk objects may hold compressed chunks; minor 1 for a diff). */
export function manifestHeader(manifest: Manifest): SnapshotHeader {
  return {
    major: 1,
    minor: manifest.diff ? 1 : 0,
    pageSize: manifest.pageSize,
    granuleSize: 16,
    tagBits: 4,
    codec: 1,
    checksum: 1,
    pagesPerChunk: manifest.pagesPerChunk,
  };
}
