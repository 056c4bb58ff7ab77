/**
 * `store verify`: every manifest opens with the key, and every chunk it
 * names is present, authentic (AEAD under the key its name gives), a valid
 * chunk payload of the right role and geometry, and holds the content its
 * name was derived from (the name is recomputed from the decoded content).
 * A chunk shared by several snapshots is checked once. A diff's chain is
 * checked too: its parent is in the store, opens, has the snapshot id the
 * diff names and the same layout, and the chain does not loop; and a diff's
 * chunks store no page its changed-page maps do not give. Problems are
 * reported, not thrown: one report lists them all.
 */
import { VmsnapError } from '../format/errors.js';
import { chunkContentPieces, nameChunk } from './chunk-object.js';
import type { ChunkStore } from './chunk-store.js';
import { StoreError } from './errors.js';
import { MAX_CHAIN_LINKS, manifestPositions, type NamedGridChunk } from './manifest.js';
import { readParent } from './stored-chain.js';
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
  const checked = new Map<string, { fault: string | null; present: Uint8Array | null }>();
  let bytesChecked = 0n;
  // Diffs whose parent checked out: name -> parent name, to find loops once every link is known.
  const parents = new Map<string, string>();
  for (const name of names) {
    let snapshot: StoredSnapshot;
    try {
      snapshot = await StoredSnapshot.open(store, name, options);
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      problems.push({ snapshot: name, code: error.code, message: error.message });
      continue;
    }
    if (snapshot.manifest.diff) {
      try {
        parents.set(name, (await readParent(store, { name, manifest: snapshot.manifest })).name);
      } catch (error) {
        if (!(error instanceof VmsnapError)) throw error;
        problems.push({ snapshot: name, code: error.code, message: error.message });
      }
    }
    try {
      // Each chunk with its position's changed pages: a pair, not the chunk spread and extended (src/format/chunk-objects.ts).
      const grids = manifestPositions(snapshot.manifest).flatMap((p) =>
        [p.ramChunk, p.tagChunk].filter((g): g is NamedGridChunk => g !== null).map((grid) => ({ grid, changed: p.changed })),
      );
      const pageSize = BigInt(snapshot.header.pageSize);
      const total = grids.reduce((sum, { grid: g }) => sum + (g.kind === 'ram' ? BigInt(g.pageCount) * pageSize : 0n), 0n);
      let done = 0n;
      const queue = grids.slice().reverse();
      const worker = async () => {
        for (let next = queue.pop(); next; next = queue.pop()) {
          const { grid, changed } = next;
          const hex = Buffer.from(grid.name).toString('hex');
          if (!checked.has(hex)) checked.set(hex, await checkChunk(snapshot, grid));
          const { fault, present } = checked.get(hex)!;
          if (fault) problems.push({ snapshot: name, code: fault.split(' ')[0], message: fault.slice(fault.indexOf(' ') + 1) });
          else if (changed && present?.some((bits, b) => bits & ~changed[b])) {
            const where = describeChunk(name, snapshot.metadata, snapshot.header.pageSize, grid);
            problems.push({ snapshot: name, code: 'bad-manifest', message: `${where}: stores a page its changed-page map does not give` });
          }
          if (grid.kind === 'ram') done += BigInt(grid.pageCount) * pageSize;
          options.onProgress?.(done, total);
        }
      };
      const checkChunk = async (s: StoredSnapshot, grid: NamedGridChunk) => {
        try {
          // Decoded in reused memory and named from the packed present pages (no expansion), then given back.
          const stored = await s.fetchChunk(grid, { transient: true, payload: false });
          bytesChecked += BigInt(stored.objectBytes);
          let again: Buffer;
          try {
            const geometry = { kind: grid.kind, pageSize: s.header.pageSize, pageCount: grid.pageCount };
            again = nameChunk(store.keys, geometry, chunkContentPieces(stored.chunk, s.header.pageSize));
          } finally {
            stored.release?.();
          }
          if (!again.equals(grid.name))
            return {
              fault: `chunk-not-authentic ${describeChunk(name, s.metadata, s.header.pageSize, grid)}: content does not match its name`,
              present: null,
            };
          return { fault: null, present: stored.chunk.present };
        } catch (error) {
          if (!(error instanceof StoreError)) throw error;
          return { fault: `${error.code} ${error.message}`, present: null };
        }
      };
      await Promise.all(Array.from({ length: options.parallel ?? store.parallel }, worker));
    } finally {
      await snapshot.close();
    }
  }
  for (const name of parents.keys()) {
    const seen = new Set([name]);
    for (let at = parents.get(name); at !== undefined; at = parents.get(at)) {
      if (seen.has(at) || seen.size > MAX_CHAIN_LINKS) {
        problems.push({ snapshot: name, code: 'parent-mismatch', message: `the chain of ${name} loops (through ${at})` });
        break;
      }
      seen.add(at);
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
