/**
 * `store gc`: removes the chunk objects no manifest references (left by an
 * interrupted push, or by snapshots replaced or deleted). It holds the gc
 * marker for its whole run and refuses to start while a push runs
 * (src/store/locks.ts explains why that makes it safe). It refuses as well
 * when a manifest does not open with the key: it cannot know which chunks
 * such a manifest references, and deleting them would destroy a snapshot.
 * A chain needs nothing more: each link's manifest names its own chunks, and
 * gc never removes a manifest (push --force will not replace a parent under
 * its diffs), so what a diff's parents hold stays referenced by them.
 */
import type { ChunkStore } from './chunk-store.js';
import { StoreError } from './errors.js';
import { takeInventory } from './inventory.js';
import { beginGc } from './locks.js';

export interface GcOptions {
  /** Report what would be removed, remove nothing. */
  dryRun?: boolean;
}

export interface GcSummary {
  readonly store: string;
  readonly dryRun: boolean;
  readonly snapshots: number;
  readonly chunksKept: number;
  readonly chunksRemoved: number;
  readonly bytesRemoved: bigint;
  readonly durationMs: number;
}

export async function collectGarbage(store: ChunkStore, options: GcOptions = {}): Promise<GcSummary> {
  const started = performance.now();
  const marker = await beginGc(store.engine);
  try {
    const inventory = await takeInventory(store);
    if (inventory.unreadable.length) {
      const first = inventory.unreadable[0];
      throw new StoreError(
        'manifest-not-authentic',
        `${store.description}: gc removes nothing while a manifest does not open with this key ` +
          `(${inventory.unreadable.length}: ${first.name}: ${first.error.message})`,
      );
    }
    let chunksRemoved = 0;
    let bytesRemoved = 0n;
    for (const [name, size] of inventory.chunks) {
      if (inventory.referenced.has(name)) continue;
      if (!options.dryRun) await store.engine.delete(`chunks/${name.slice(0, 2)}/${name}`);
      chunksRemoved++;
      bytesRemoved += BigInt(size);
    }
    return {
      store: store.description,
      dryRun: options.dryRun === true,
      snapshots: inventory.snapshots.length,
      chunksKept: inventory.chunks.size - chunksRemoved,
      chunksRemoved,
      bytesRemoved,
      durationMs: performance.now() - started,
    };
  } finally {
    await marker.release();
  }
}
