/**
 * The store's commands on chunks in reused memory (issue 10: peak memory of
 * push, pull, store verify and restore from a store): push reads the file
 * transient and copies what an upload needs before it releases each chunk;
 * pull, verify and restore decode into reused memory and give it back. The
 * results must be those of the plain reads: the same chunk names and
 * objects, the same pulled chunks, the same restored guest. Run with the
 * executor a command uses (native memory with the system libzstd, reused from
 * chunk to chunk), where a kept view of released memory would show.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isPagePresent } from '../src/format/chunk.js';
import type { RamChunk } from '../src/format/model.js';
import { openChain } from '../src/reader/chain.js';
import { openSnapshot } from '../src/reader/open.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { chunkContentPieces, nameChunk } from '../src/store/chunk-object.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { LocalEngine } from '../src/store/local-engine.js';
import { pullSnapshot } from '../src/store/pull.js';
import { pushSnapshot } from '../src/store/push.js';
import { StoredChain } from '../src/store/stored-chain.js';
import { StoredSnapshot } from '../src/store/stored-snapshot.js';
import { TenantKeys } from '../src/store/tenant-keys.js';
import { verifyStore } from '../src/store/verify.js';
import { ComparingTarget } from '../src/validate/comparing-target.js';
import { GeneratedGuest } from '../src/workload/generated-guest.js';
import { saveSnapshot } from '../src/writer/save.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-store-transient-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GUEST = { sizeMiB: 6, seed: 5, flashMiB: 1 } as const;
const THREADS = 2;
const PAGES_PER_CHUNK = 48; // several chunks per region, each with present and absent pages

async function push(store: ChunkStore, file: string, name: string, transient: boolean, level?: number) {
  const reader = await openSnapshot(file, { threads: THREADS });
  try {
    const events = transient ? reader.events(undefined, { transient: true, payloads: true }) : reader.events();
    return await pushSnapshot(events, store, name, { threads: THREADS, level, fileBytes: () => reader.fileSize });
  } finally {
    await reader.close();
  }
}

describe('store commands on transient chunks', () => {
  const file = join(dir, 'guest.vmsnap');
  const secret = randomBytes(32);
  let store: ChunkStore;

  it('a packed RAM or tag chunk is named as its expanded pages are', async () => {
    await saveSnapshot(new GeneratedGuest(GUEST), file, { threads: THREADS, pagesPerChunk: PAGES_PER_CHUNK });
    const keys = new TenantKeys(secret);
    const reader = await openSnapshot(file, { threads: THREADS });
    let packed = 0;
    try {
      for await (const event of reader.events(undefined, { transient: true })) {
        if (event.type !== 'chunk') continue;
        const { chunk } = event;
        const geometry = { kind: chunk.kind, pageSize: 4096, pageCount: chunk.pageCount };
        const whole = 'tags' in chunk ? chunk.tags : (chunk as RamChunk).data;
        const absent = Array.from({ length: chunk.pageCount }, (_, p) => p).some((p) => !isPagePresent(chunk.present, p));
        if ('content' in chunk && chunk.content && absent) packed++;
        expect(nameChunk(keys, geometry, chunkContentPieces(chunk, 4096)).equals(nameChunk(keys, geometry, whole))).toBe(true);
        event.release!();
      }
    } finally {
      await reader.close();
    }
    // Where libzstd is missing, chunks come expanded and this only checks the plain case.
    console.log(`${packed} packed RAM chunks with absent pages named`);
  });

  it('push from transient reads stores the objects a plain read does, at the kept encoding and a new level', async () => {
    // A store per level: a chunk's name follows its content, not its encoding, so a second level would upload nothing.
    for (const level of [3, undefined]) {
      if (level === undefined) store.close();
      store = await ChunkStore.attach(new LocalEngine(join(dir, `store${level ?? ''}`)), secret, { create: true });
      const first = await push(store, file, `t${level ?? ''}`, true, level);
      expect(first.chunksUploaded).toBeGreaterThan(0);
      const plain = await push(store, file, `p${level ?? ''}`, false, level);
      expect(plain.chunksUploaded).toBe(0);
      expect(plain.chunksReused).toBe(plain.chunks);
      const names = async (name: string) => (await store.readManifest(name)).chunkNames.map((n) => Buffer.from(n).toString('hex'));
      expect(await names(`t${level ?? ''}`)).toEqual(await names(`p${level ?? ''}`));
      const report = await verifyStore(store, { threads: THREADS });
      expect(report.problems).toEqual([]);
      expect(report.chunksChecked).toBeGreaterThan(0);
    }
  });

  it('pull and restore from transient decodes give back the guest', async () => {
    const pulled = join(dir, 'pulled.vmsnap');
    await pullSnapshot(store, 't', pulled, { threads: THREADS });
    const [original, copy] = [await openSnapshot(file, { threads: THREADS }), await openSnapshot(pulled, { threads: THREADS })];
    try {
      expect(copy.chunks.length).toBe(original.chunks.length);
      for (const [i, location] of original.chunks.entries()) {
        const [a, b] = [await original.readChunk(location), await copy.readChunk(copy.chunks[i])];
        const bytes = (c: typeof a) => ('tags' in c ? c.tags : c.data);
        expect(Buffer.from(bytes(b)).equals(bytes(a)), `chunk ${i}`).toBe(true);
      }
    } finally {
      await original.close();
      await copy.close();
    }
    const snapshot = await StoredSnapshot.open(store, 'p', { threads: THREADS });
    const factory = { backend: 'comparison', createVm: () => new ComparingTarget(new GeneratedGuest(GUEST)) };
    const restored = await restoreSnapshot(snapshot, factory, { threads: THREADS });
    const comparison = restored.vm.finish();
    restored.vm.close();
    expect(comparison.equal, JSON.stringify(comparison.differences)).toBe(true);
  });

  it('a chain in the store merges from transient decodes: restore gives the diff guest, held chunks keep their bytes', async () => {
    const next = { ...GUEST, seed: 6 };
    const diff = join(dir, 'diff.vmsnap');
    const parent = await openChain([file], { threads: THREADS });
    try {
      await saveSnapshot(new GeneratedGuest(next), diff, { threads: THREADS, diff: { parent } });
    } finally {
      await parent.close();
    }
    await push(store, diff, 'd', true);
    const factory = { backend: 'comparison', createVm: () => new ComparingTarget(new GeneratedGuest(next)) };
    const restored = await restoreSnapshot(await StoredChain.open(store, 'd', { threads: THREADS }), factory, { threads: THREADS });
    const comparison = restored.vm.finish();
    restored.vm.close();
    expect(comparison.equal, JSON.stringify(comparison.differences)).toBe(true);
    expect(comparison.pagesCompared).toBeGreaterThan(0);

    // Every chunk held, none released: later decodes must not write into any of them.
    const chain = await StoredChain.open(store, 'd', { threads: THREADS });
    const held: Array<{ bytes: Uint8Array; copy: Uint8Array }> = [];
    try {
      for await (const event of chain.events()) {
        if (event.type !== 'chunk') continue;
        const bytes = 'tags' in event.chunk ? event.chunk.tags : event.chunk.data;
        held.push({ bytes, copy: bytes.slice() });
      }
    } finally {
      await chain.close();
    }
    expect(held.length).toBeGreaterThan(0);
    for (const [i, { bytes, copy }] of held.entries()) expect(Buffer.from(bytes).equals(copy), `chunk ${i}`).toBe(true);
    store.close();
  });
});
