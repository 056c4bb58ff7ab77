/**
 * `store verify`: every manifest opens with the key, and every chunk it
 * names is present, authentic (AEAD under the key its name gives), a valid
 * chunk payload of the right role and geometry, and holds the content its
 * name was derived from (the name is recomputed from the decoded content).
 * A chunk shared by several snapshots is checked once. Problems are
 * reported, not thrown: one report lists them all.
 */
import { nameChunk } from './chunk-object.js';
import type { ChunkStore } from './chunk-store.js';
import { StoreError } from './errors.js';
import { manifestChunks } from './manifest.js';
import { describeChunk, StoredSnapshot } from './stored-snapshot.js';

export interface StoreProblem {
  readonly snapshot: string;
  readonly code: string;
  readonly message: string;
}

export interface StoreVerifyReport {
  readonly store: string;
  readonly ok: boolean;
  readonly snapshots: number;
  readonly chunksChecked: number;
  readonly bytesChecked: bigint;
  readonly problems: StoreProblem[];
}

export async function verifyStore(
  store: ChunkStore,
  options: {
    names?: string[];
    parallel?: number;
    threads?: number;
    onProgress?: (guestBytesDone: bigint, guestBytesTotal: bigint) => void;
  } = {},
): Promise<StoreVerifyReport> {
  const names = options.names ?? (await store.snapshotNames());
  const problems: StoreProblem[] = [];
  const checked = new Map<string, string | null>();
  let bytesChecked = 0n;
  for (const name of names) {
    let snapshot: StoredSnapshot;
    try {
      snapshot = await StoredSnapshot.open(store, name, options);
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      problems.push({ snapshot: name, code: error.code, message: error.message });
      continue;
    }
    try {
      const grids = manifestChunks(snapshot.manifest);
      const pageSize = BigInt(snapshot.header.pageSize);
      const total = grids.reduce((sum, g) => sum + (g.kind === 'ram' ? BigInt(g.pageCount) * pageSize : 0n), 0n);
      let done = 0n;
      const queue = grids.slice().reverse();
      const worker = async () => {
        for (let grid = queue.pop(); grid; grid = queue.pop()) {
          const hex = Buffer.from(grid.name).toString('hex');
          if (!checked.has(hex)) checked.set(hex, await checkChunk(snapshot, grid));
          const fault = checked.get(hex);
          if (fault) problems.push({ snapshot: name, code: fault.split(' ')[0], message: fault.slice(fault.indexOf(' ') + 1) });
          if (grid.kind === 'ram') done += BigInt(grid.pageCount) * pageSize;
          options.onProgress?.(done, total);
        }
      };
      const checkChunk = async (s: StoredSnapshot, grid: (typeof grids)[number]): Promise<string | null> => {
        try {
          const stored = await s.fetchChunk(grid);
          bytesChecked += BigInt(stored.objectBytes);
          const content = 'data' in stored.chunk ? stored.chunk.data : stored.chunk.tags;
          const again = nameChunk(store.keys, { kind: grid.kind, pageSize: s.header.pageSize, pageCount: grid.pageCount }, content);
          if (!again.equals(grid.name))
            return `chunk-not-authentic ${describeChunk(name, s.metadata, s.header.pageSize, grid)}: content does not match its name`;
          return null;
        } catch (error) {
          if (!(error instanceof StoreError)) throw error;
          return `${error.code} ${error.message}`;
        }
      };
      await Promise.all(Array.from({ length: options.parallel ?? 16 }, worker));
    } finally {
      await snapshot.close();
    }
  }
  return {
    store: store.description,
    ok: problems.length === 0,
    snapshots: names.length,
    chunksChecked: checked.size,
    bytesChecked,
    problems,
  };
}
