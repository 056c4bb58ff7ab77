/**
 * Manifests (spec/STORE.md, "Manifests"): what a snapshot in the store is
 * besides its chunks. The plaintext is a MessagePack map holding the
 * snapshot's header fields, its META, VCPU and BLOB payloads exactly as
 * spec/FORMAT.md defines them, and the name of every chunk of its grid in
 * grid order. It is sealed with AES-256-GCM under the tenant's manifest key
 * and a random nonce; the associated data binds the snapshot's name, so a
 * manifest copied or renamed to another name, or another tenant's, does not
 * open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chunkGrid, type DataGridChunk } from '../format/chunk-grid.js';
import { decodeBlob, decodeMetadata, decodeVcpu, encodeBlob, encodeMetadata, encodeVcpu, packValue } from '../format/metadata.js';
import type { SnapshotHeader, SnapshotMetadata, VmmBlob } from '../format/model.js';
import { decodeMessagePack, type MessagePackValue } from '../format/msgpack.js';
import type { VcpuState } from '../vm/vm.js';
import { StoreError } from './errors.js';
import type { TenantKeys } from './tenant-keys.js';

export const MANIFEST_MAGIC = 'VMSM';
export const MANIFEST_VERSION = 1;
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
  /** One 32-byte chunk name per grid chunk, in grid order. */
  readonly chunkNames: readonly Uint8Array[];
  /** Bytes of the snapshot file this came from (or would be, saved straight to the store). */
  readonly fileBytes: bigint;
}

/** The grid chunks of a manifest, with their names, in grid (restore) order. */
export function manifestChunks(manifest: Manifest): Array<DataGridChunk & { name: Uint8Array }> {
  const grid = [...chunkGrid(manifest.metadata.regions, manifest.pageSize, manifest.pagesPerChunk)];
  return grid.map((chunk, i) => ({ ...chunk, name: manifest.chunkNames[i] }));
}

export function encodeManifest(manifest: Manifest): Uint8Array {
  return packValue({
    version: MANIFEST_VERSION,
    page_size: manifest.pageSize,
    pages_per_chunk: manifest.pagesPerChunk,
    file_bytes: manifest.fileBytes,
    meta: encodeMetadata(manifest.metadata),
    vcpus: manifest.vcpus.map(encodeVcpu),
    blobs: manifest.blobs.map(encodeBlob),
    chunks: Buffer.concat(manifest.chunkNames),
  });
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
  if (version !== MANIFEST_VERSION) throw new StoreError('bad-manifest', `${where}: manifest version ${version}, this reader knows 1`);
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
    const count = [...chunkGrid(manifest.metadata.regions, manifest.pageSize, manifest.pagesPerChunk)].length;
    if (chunks.length !== count * NAME_LENGTH)
      throw new StoreError('bad-manifest', `${where}: manifest names ${chunks.length / NAME_LENGTH} chunks, its grid has ${count}`);
    const names: Uint8Array[] = [];
    for (let i = 0; i < count; i++) names.push(chunks.subarray(i * NAME_LENGTH, (i + 1) * NAME_LENGTH));
    return { ...manifest, chunkNames: names };
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

/** The header fields a snapshot rebuilt from `manifest` has (codec zstd: chunk objects may hold compressed chunks). */
export function manifestHeader(manifest: Manifest): SnapshotHeader {
  return {
    major: 1,
    minor: 0,
    pageSize: manifest.pageSize,
    granuleSize: 16,
    tagBits: 4,
    codec: 1,
    checksum: 1,
    pagesPerChunk: manifest.pagesPerChunk,
  };
}
