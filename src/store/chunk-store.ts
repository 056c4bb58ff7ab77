/**
 * A chunk store opened with a tenant's key: where its objects are
 * (spec/STORE.md, "Objects"), the marker that says a place is a store and
 * which key it takes, and the manifests by snapshot name. STORE is a
 * directory path or s3://bucket/prefix; a snapshot in it is STORE/NAME.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { StoreEngine } from './engine.js';
import { StoreError } from './errors.js';
import { LocalEngine } from './local-engine.js';
import { type Manifest, openManifest, sealManifest } from './manifest.js';
import type { S3EngineOptions } from './s3-engine.js';
import { TenantKeys } from './tenant-keys.js';

export const MARKER_KEY = 'vmsnap-store';
export const SNAPSHOTS_PREFIX = 'snapshots/';
export const CHUNKS_PREFIX = 'chunks/';
const MARKER_MAGIC = 'VMSS';
const MARKER_LENGTH = 40;

/** Requests in flight for a remote store (S3): enough to hide the round trips. */
const DEFAULT_PARALLEL = 16;

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export function checkSnapshotName(name: string): string {
  if (!NAME_PATTERN.test(name)) {
    throw new StoreError(
      'bad-snapshot-name',
      `snapshot name ${JSON.stringify(name)}: use 1..200 of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
  return name;
}

export function isS3Location(location: string): boolean {
  return location.startsWith('s3://');
}

/** The engine a STORE location names. The S3 SDK is loaded only for an s3:// store: every other command starts without it. */
export async function openEngine(location: string, s3: S3EngineOptions = {}): Promise<StoreEngine> {
  if (isS3Location(location)) {
    const rest = location.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
    if (!/^[a-z0-9][a-z0-9.-]{1,62}$/.test(bucket)) throw new StoreError('bad-store-location', `${location}: not a valid S3 bucket name`);
    const { S3Engine } = await import('./s3-engine.js');
    return new S3Engine(bucket, prefix ? `${prefix}/` : '', s3);
  }
  if (location === '') throw new StoreError('bad-store-location', 'an empty store location');
  return new LocalEngine(resolve(location));
}

/** STORE/NAME split at its last '/'; the name is checked. */
export function splitSnapshotReference(reference: string): { location: string; name: string } {
  const cut = reference.replace(/\/+$/, '').lastIndexOf('/');
  if (cut <= 0 || (isS3Location(reference) && cut < 's3://x'.length)) {
    throw new StoreError(
      'bad-store-location',
      `${reference}: name a snapshot in a store as STORE/NAME (a directory or s3://bucket/prefix)`,
    );
  }
  return { location: reference.slice(0, cut), name: checkSnapshotName(reference.slice(cut + 1)) };
}

/**
 * Whether a command argument names a snapshot in a store rather than a file:
 * an s3:// location, or a path that is not an existing file whose directory
 * is a local store (holds the store marker).
 */
export function isStoreReference(argument: string): boolean {
  if (isS3Location(argument)) return true;
  if (argument === '-' || existsSync(argument)) return false;
  const parent = dirname(argument.replace(/\/+$/, ''));
  return statSync(resolve(parent, MARKER_KEY), { throwIfNoEntry: false })?.isFile() === true;
}

function encodeMarker(keys: TenantKeys): Uint8Array {
  const marker = new Uint8Array(MARKER_LENGTH);
  marker.set(Buffer.from(MARKER_MAGIC, 'latin1'));
  marker[4] = 1;
  marker.set(keys.keyCheck(), 8);
  return marker;
}

export class ChunkStore {
  private constructor(
    readonly engine: StoreEngine,
    readonly keys: TenantKeys,
  ) {}

  get description(): string {
    return this.engine.description;
  }

  /** Requests in flight when a command is not given --parallel: the engine's choice (4 for a directory), else 16. */
  get parallel(): number {
    return this.engine.parallel ?? DEFAULT_PARALLEL;
  }

  /**
   * Opens the store at `location` with the tenant secret. `create` makes a
   * new store where there is none (push and save do; reading commands do
   * not). A store made with another key is refused.
   */
  static async open(location: string, secret: Uint8Array, options: { create?: boolean; s3?: S3EngineOptions } = {}): Promise<ChunkStore> {
    return ChunkStore.attach(await openEngine(location, options.s3), secret, options);
  }

  /** The store on `engine` (closed on failure); open() with an engine made elsewhere, such as a test's. */
  static async attach(engine: StoreEngine, secret: Uint8Array, options: { create?: boolean } = {}): Promise<ChunkStore> {
    try {
      const keys = new TenantKeys(secret);
      if (engine instanceof LocalEngine && existsSync(engine.root) && !statSync(engine.root).isDirectory())
        throw new StoreError('bad-store-location', `${engine.root}: is a file, not a store directory`);
      const marker = await engine.get(MARKER_KEY);
      const expected = encodeMarker(keys);
      if (!marker) {
        if (!options.create) throw new StoreError('store-not-found', `${engine.description}: no vmsnap store here (push creates one)`);
        await engine.put(MARKER_KEY, expected);
      } else if (marker.length !== MARKER_LENGTH || Buffer.from(marker.subarray(0, 4)).toString('latin1') !== MARKER_MAGIC) {
        throw new StoreError('bad-store-location', `${engine.description}: ${MARKER_KEY} is not a vmsnap store marker`);
      } else if (!Buffer.from(marker).equals(Buffer.from(expected))) {
        throw new StoreError('wrong-store-key', `${engine.description}: this store was made with another key`);
      }
      return new ChunkStore(engine, keys);
    } catch (error) {
      engine.close();
      throw error;
    }
  }

  /** The object key of the chunk named `name`: fanned out by its first byte, so no directory grows past a few thousand files. */
  chunkKey(name: Uint8Array): string {
    const hex = Buffer.from(name).toString('hex');
    return `${CHUNKS_PREFIX}${hex.slice(0, 2)}/${hex}`;
  }

  /** The chunk name an object key holds, or null for a key that is no chunk's. */
  static chunkNameOf(key: string): string | null {
    const [top, fan, hex, ...rest] = key.split('/');
    if (top !== 'chunks' || rest.length || hex === undefined || !/^[0-9a-f]{64}$/.test(hex) || hex.slice(0, 2) !== fan) return null;
    return hex;
  }

  async snapshotNames(): Promise<string[]> {
    const names: string[] = [];
    for await (const object of this.engine.list(SNAPSHOTS_PREFIX)) {
      const name = object.key.slice(SNAPSHOTS_PREFIX.length);
      if (NAME_PATTERN.test(name)) names.push(name);
    }
    return names.sort();
  }

  async hasSnapshot(name: string): Promise<boolean> {
    return (await this.engine.size(SNAPSHOTS_PREFIX + checkSnapshotName(name))) !== null;
  }

  async readManifest(name: string): Promise<Manifest> {
    const object = await this.engine.get(SNAPSHOTS_PREFIX + checkSnapshotName(name));
    if (!object) throw new StoreError('snapshot-not-found', `${this.description}: no snapshot named ${name}`);
    return openManifest(this.keys, name, object);
  }

  async writeManifest(name: string, manifest: Manifest): Promise<number> {
    const object = sealManifest(this.keys, checkSnapshotName(name), manifest);
    await this.engine.put(SNAPSHOTS_PREFIX + name, object);
    return object.length;
  }

  async deleteSnapshot(name: string): Promise<void> {
    await this.engine.delete(SNAPSHOTS_PREFIX + checkSnapshotName(name));
  }

  close(): void {
    this.engine.close();
  }
}

/** A short stable id of a chunk name for messages (the first 12 hex digits). */
export function shortName(name: Uint8Array): string {
  return Buffer.from(name).toString('hex').slice(0, 12);
}
