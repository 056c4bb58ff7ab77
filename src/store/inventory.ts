/**
 * What a store holds, for `store ls`, `store stats` and `store gc`: every
 * snapshot with its manifest (opened with the tenant's key), every chunk
 * object with its size, and which chunks the manifests reference.
 */
import { ChunkStore, SNAPSHOTS_PREFIX } from './chunk-store.js';
import { StoreError } from './errors.js';
import type { Manifest } from './manifest.js';

export interface SnapshotEntry {
  readonly name: string;
  readonly manifest: Manifest;
  readonly manifestBytes: number;
}

export interface Inventory {
  readonly snapshots: SnapshotEntry[];
  /** Manifests that do not open with this key: altered, renamed, or another tenant's. */
  readonly unreadable: Array<{ name: string; error: StoreError }>;
  /** Chunk name (hex) to object size. */
  readonly chunks: Map<string, number>;
  /** Chunk names (hex) some readable manifest references. */
  readonly referenced: Set<string>;
}

export async function takeInventory(store: ChunkStore): Promise<Inventory> {
  const snapshots: SnapshotEntry[] = [];
  const unreadable: Inventory['unreadable'] = [];
  const referenced = new Set<string>();
  for (const name of await store.snapshotNames()) {
    const manifestBytes = (await store.engine.size(SNAPSHOTS_PREFIX + name)) ?? 0;
    try {
      const manifest = await store.readManifest(name);
      snapshots.push({ name, manifest, manifestBytes });
      for (const chunk of manifest.chunkNames) referenced.add(Buffer.from(chunk).toString('hex'));
    } catch (error) {
      if (!(error instanceof StoreError) || error.code === 'snapshot-not-found') throw error;
      unreadable.push({ name, error });
    }
  }
  const chunks = new Map<string, number>();
  for await (const object of store.engine.list('chunks/')) {
    const name = ChunkStore.chunkNameOf(object.key);
    if (name) chunks.set(name, object.size);
  }
  return { snapshots, unreadable, chunks, referenced };
}

export interface StoreStats {
  readonly store: string;
  readonly snapshots: number;
  /** Of them, diffs (stored as their own chunks plus a parent's name). */
  readonly diffSnapshots: number;
  /**
   * Guest memory every snapshot restores to (a diff's whole guest, with its chain), and the bytes of their
   * snapshot files as pushed (a diff: its own diff file): the store against keeping those files.
   */
  readonly guestBytes: bigint;
  readonly logicalBytes: bigint;
  /** Bytes the store holds: chunk objects and manifests. */
  readonly storedBytes: bigint;
  readonly chunkObjects: number;
  readonly chunkBytes: bigint;
  readonly manifestBytes: bigint;
  /** Grid chunks of all snapshots, and how many distinct objects they are. */
  readonly chunkReferences: number;
  readonly unreferencedChunks: number;
  readonly unreferencedBytes: bigint;
  /** logicalBytes / storedBytes. */
  readonly dedupRatio: number;
  readonly unreadableManifests: string[];
}

export function storeStats(store: ChunkStore, inventory: Inventory): StoreStats {
  let guestBytes = 0n;
  let logicalBytes = 0n;
  let manifestBytes = 0n;
  let chunkReferences = 0;
  let diffSnapshots = 0;
  for (const { manifest, manifestBytes: bytes } of inventory.snapshots) {
    if (manifest.diff) diffSnapshots++;
    guestBytes += manifest.metadata.regions.reduce((sum, region) => sum + region.size, 0n);
    logicalBytes += manifest.fileBytes;
    manifestBytes += BigInt(bytes);
    chunkReferences += manifest.chunkNames.length;
  }
  let chunkBytes = 0n;
  let unreferencedChunks = 0;
  let unreferencedBytes = 0n;
  for (const [name, size] of inventory.chunks) {
    chunkBytes += BigInt(size);
    if (!inventory.referenced.has(name)) {
      unreferencedChunks++;
      unreferencedBytes += BigInt(size);
    }
  }
  const storedBytes = chunkBytes + manifestBytes;
  return {
    store: store.description,
    snapshots: inventory.snapshots.length,
    diffSnapshots,
    guestBytes,
    logicalBytes,
    storedBytes,
    chunkObjects: inventory.chunks.size,
    chunkBytes,
    manifestBytes,
    chunkReferences,
    unreferencedChunks,
    unreferencedBytes,
    dedupRatio: storedBytes === 0n ? 0 : Number(logicalBytes) / Number(storedBytes),
    unreadableManifests: inventory.unreadable.map((u) => u.name),
  };
}
