/**
 * The store's behaviour, as cases every engine must pass: the local tier
 * (test/store.test.ts) and the S3 tier against Ceph RGW
 * (test/store-s3.test.ts) run the same cases on their engine. A snapshot
 * pushed, pulled and restored must be identical in every page and tag
 * granule to the guest it was saved from; every fault (a chunk deleted,
 * altered, replaced by another chunk of the store, another tenant's
 * manifest) is refused by restore and `store verify` before anything is
 * written into the guest; an interrupted push leaves the store consistent and
 * a second push completes it uploading only what is missing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSnapshot } from '../../src/reader/open.js';
import { restoreSnapshot } from '../../src/reader/restore.js';
import { ChunkStore, SNAPSHOTS_PREFIX } from '../../src/store/chunk-store.js';
import type { StoreEngine } from '../../src/store/engine.js';
import { StoreError } from '../../src/store/errors.js';
import { collectGarbage } from '../../src/store/gc.js';
import { storeStats, takeInventory } from '../../src/store/inventory.js';
import { manifestChunks } from '../../src/store/manifest.js';
import { pullSnapshot } from '../../src/store/pull.js';
import { pushSnapshot } from '../../src/store/push.js';
import { StoredSnapshot } from '../../src/store/stored-snapshot.js';
import { verifyStore } from '../../src/store/verify.js';
import { ComparingTarget } from '../../src/validate/comparing-target.js';
import type { VmFactory } from '../../src/vm/vm.js';
import { GeneratedGuest } from '../../src/workload/generated-guest.js';
import { saveSnapshot } from '../../src/writer/save.js';
import { FaultyEngine } from './faulty-engine.js';

export interface StoreCaseSetup {
  /** A fresh, empty engine for each call (a new directory, a new prefix). */
  engine(): StoreEngine;
}

const GUEST = { sizeMiB: 6, seed: 11, flashMiB: 1 } as const;

/** A restore target comparing with the guest; `created` says whether restore ever got as far as making a VM. */
function comparingFactory(options: typeof GUEST): VmFactory<ComparingTarget> & { created: number } {
  const factory = {
    backend: 'comparison',
    created: 0,
    createVm: () => {
      factory.created++;
      return new ComparingTarget(new GeneratedGuest(options));
    },
  };
  return factory;
}

async function pushFile(store: ChunkStore, file: string, name: string, force = false) {
  const reader = await openSnapshot(file, { threads: 0 });
  try {
    return await pushSnapshot(reader.events(), store, name, { threads: 0, fileBytes: () => reader.fileSize, force });
  } finally {
    await reader.close();
  }
}

async function restoreFromStore(store: ChunkStore, name: string, factory: VmFactory<ComparingTarget>) {
  const snapshot = await StoredSnapshot.open(store, name, { threads: 0 });
  const restored = await restoreSnapshot(snapshot, factory, { threads: 0 });
  const comparison = restored.vm.finish();
  restored.vm.close();
  return { restored, comparison };
}

async function expectStoreError(promise: Promise<unknown>, code: string): Promise<StoreError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, `expected a StoreError ${code}`).toBeInstanceOf(StoreError);
  expect((error as StoreError).code, (error as Error).message).toBe(code);
  return error as StoreError;
}

export function storeCases(label: string, setup: StoreCaseSetup): void {
  const dir = mkdtempSync(join(tmpdir(), 'vmsnap-store-cases-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const key = randomBytes(32);
  const otherKey = randomBytes(32);
  const file = join(dir, 'guest.vmsnap');
  const variant = join(dir, 'variant.vmsnap');
  const saved = (async () => {
    await saveSnapshot(new GeneratedGuest(GUEST), file, { threads: 0 });
    await saveSnapshot(new GeneratedGuest({ ...GUEST, seed: 12 }), variant, { threads: 0 });
  })();
  const fresh = async (secret: Uint8Array = key) => ChunkStore.attach(setup.engine(), secret, { create: true });

  describe(`chunk store on ${label}`, () => {
    it('push, pull and restore give back every page and tag granule; a second copy uploads nothing', async () => {
      await saved;
      const store = await fresh();
      try {
        const first = await pushFile(store, file, 'guest');
        expect(first.chunksUploaded).toBeGreaterThan(0);
        expect(first.chunksUploaded + first.chunksReused).toBe(first.chunks);
        const second = await pushFile(store, file, 'copy');
        expect(second.chunksUploaded).toBe(0);
        expect(second.chunksReused).toBe(second.chunks);
        expect(await store.snapshotNames()).toEqual(['copy', 'guest']);

        const factory = comparingFactory(GUEST);
        const { comparison } = await restoreFromStore(store, 'copy', factory);
        expect(comparison.equal, JSON.stringify(comparison.differences)).toBe(true);
        expect(comparison.pagesCompared).toBeGreaterThan(0);

        const pulled = join(dir, `pulled-${label}.vmsnap`);
        await pullSnapshot(store, 'guest', pulled, { threads: 0 });
        const fromFile = await restoreSnapshot(pulled, comparingFactory(GUEST), { threads: 0 });
        expect(fromFile.vm.finish().equal).toBe(true);
        expect(fromFile.vcpuStates).toEqual((await restoreFromStore(store, 'guest', comparingFactory(GUEST))).restored.vcpuStates);
        fromFile.vm.close();

        const stats = storeStats(store, await takeInventory(store));
        expect(stats.snapshots).toBe(2);
        expect(stats.dedupRatio).toBeGreaterThan(1.9);
        expect((await verifyStore(store, { threads: 0 })).ok).toBe(true);
        await expectStoreError(pushFile(store, file, 'guest'), 'snapshot-exists');
      } finally {
        store.close();
      }
    });

    it("push keeps each chunk's encoding from the snapshot unless given a level, and both restore", async () => {
      await saved;
      const raw = join(dir, `raw-${label}.vmsnap`);
      await saveSnapshot(new GeneratedGuest(GUEST), raw, { threads: 0, level: 0 });
      const encodings = async (store: ChunkStore, name: string) => {
        const snapshot = await StoredSnapshot.open(store, name, { threads: 0 });
        const seen = new Set<number>();
        try {
          for await (const stored of snapshot.chunks()) if (stored.payload.length > 40) seen.add(stored.payload[16]);
        } finally {
          await snapshot.close();
        }
        return [...seen].sort();
      };
      const kept = await fresh();
      const recompressed = await fresh();
      try {
        const asSaved = await pushFile(kept, raw, 'raw');
        // Saved uncompressed, stored as saved: every chunk object holds its content raw (encoding 0).
        expect(await encodings(kept, 'raw')).toEqual([0]);
        const reader = await openSnapshot(raw, { threads: 0 });
        const level1 = await pushSnapshot(reader.events(), recompressed, 'raw', { threads: 0, level: 1, fileBytes: () => reader.fileSize });
        await reader.close();
        expect(await encodings(recompressed, 'raw')).toContain(1);
        expect(level1.bytesUploaded).toBeLessThan(asSaved.bytesUploaded);
        for (const store of [kept, recompressed]) {
          const { comparison } = await restoreFromStore(store, 'raw', comparingFactory(GUEST));
          expect(comparison.equal, JSON.stringify(comparison.differences)).toBe(true);
          expect((await verifyStore(store, { threads: 0 })).ok).toBe(true);
        }
      } finally {
        kept.close();
        recompressed.close();
      }
    });

    it('a similar guest shares its identical chunks', async () => {
      await saved;
      const store = await fresh();
      try {
        const a = await pushFile(store, file, 'a');
        const b = await pushFile(store, variant, 'b');
        // Flash (seeded the same way by region) and zero chunks are shared; RAM content differs by seed.
        expect(b.chunksReused).toBeGreaterThan(0);
        expect(b.chunksUploaded).toBeGreaterThan(0);
        expect(a.chunks).toBe(b.chunks);
      } finally {
        store.close();
      }
    });

    const faults: Array<{ fault: string; code: string; damage: (store: ChunkStore, victim: string, other: string) => Promise<void> }> = [
      { fault: 'a chunk object deleted', code: 'chunk-missing', damage: (s, victim) => s.engine.delete(victim) },
      {
        fault: 'a chunk object altered',
        code: 'chunk-not-authentic',
        damage: async (s, victim) => {
          const bytes = (await s.engine.get(victim))!;
          bytes[bytes.length - 20] ^= 0x40;
          await s.engine.put(victim, bytes);
        },
      },
      {
        fault: 'a chunk replaced by another chunk of the same store',
        code: 'chunk-not-authentic',
        damage: async (s, victim, other) => s.engine.put(victim, (await s.engine.get(other))!),
      },
    ];
    for (const { fault, code, damage } of faults) {
      it(`${fault}: restore writes nothing into the guest, verify names it (${code})`, async () => {
        await saved;
        const store = await fresh();
        try {
          await pushFile(store, file, 'guest');
          const manifest = await store.readManifest('guest');
          const chunks = manifestChunks(manifest);
          const distinct = [...new Set(chunks.map((c) => Buffer.from(c.name).toString('hex')))];
          const ram = chunks.filter((c) => c.kind === 'ram');
          const victim = ram[ram.length - 1];
          const other = chunks.find((c) => c.kind === 'ram' && !Buffer.from(c.name).equals(Buffer.from(victim.name)))!;
          expect(distinct.length).toBeGreaterThan(2);
          await damage(store, store.chunkKey(victim.name), store.chunkKey(other.name));

          const report = await verifyStore(store, { threads: 0 });
          expect(report.ok).toBe(false);
          expect(report.problems.map((p) => p.code)).toContain(code);
          expect(report.problems[0].message).toMatch(/region ram pages/);

          const factory = comparingFactory(GUEST);
          // A deleted chunk is found before the VM is created; an altered one before that chunk is written.
          await expectStoreError(restoreFromStore(store, 'guest', factory), code);
          if (code === 'chunk-missing') expect(factory.created).toBe(0);
          await expectStoreError(pullSnapshot(store, 'guest', join(dir, `damaged-${label}.vmsnap`), { threads: 0 }), code);
        } finally {
          store.close();
        }
      });
    }

    it("another tenant's manifest does not open, and gc will not guess its chunks", async () => {
      await saved;
      const engine = setup.engine();
      const mine = await ChunkStore.attach(engine, key, { create: true });
      const theirs = await fresh(otherKey);
      try {
        await pushFile(theirs, file, 'theirs');
        await pushFile(mine, file, 'mine');
        // The other tenant's manifest object, placed in this store under a name.
        await engine.put(`${SNAPSHOTS_PREFIX}intruder`, (await theirs.engine.get(`${SNAPSHOTS_PREFIX}theirs`))!);
        const factory = comparingFactory(GUEST);
        await expectStoreError(restoreFromStore(mine, 'intruder', factory), 'manifest-not-authentic');
        expect(factory.created).toBe(0);
        const report = await verifyStore(mine, { threads: 0 });
        expect(report.problems.map((p) => [p.snapshot, p.code])).toEqual([['intruder', 'manifest-not-authentic']]);
        await expectStoreError(collectGarbage(mine), 'manifest-not-authentic');
        // A manifest renamed inside the store does not open either: the name is bound to it.
        await engine.put(`${SNAPSHOTS_PREFIX}renamed`, (await engine.get(`${SNAPSHOTS_PREFIX}mine`))!);
        await expectStoreError(mine.readManifest('renamed'), 'manifest-not-authentic');
        // The store itself was made with another key.
        await expectStoreError(ChunkStore.attach(theirs.engine, key), 'wrong-store-key');
      } finally {
        mine.close();
        theirs.close();
      }
    });

    it('an interrupted push leaves the store consistent; a second push uploads only what is missing; gc removes orphans', async () => {
      await saved;
      const faulty = new FaultyEngine(setup.engine());
      const store = await ChunkStore.attach(faulty, key, { create: true });
      try {
        faulty.failAfterPuts = 5;
        await expect(pushFile(store, file, 'guest')).rejects.toThrow(/injected failure/);
        expect(await store.snapshotNames()).toEqual([]);
        expect((await verifyStore(store, { threads: 0 })).ok).toBe(true);
        const before = await takeInventory(store);
        expect(before.chunks.size).toBe(5);

        faulty.failAfterPuts = Number.POSITIVE_INFINITY;
        const second = await pushFile(store, file, 'guest');
        expect(second.chunksUploaded).toBe(storeStats(store, await takeInventory(store)).chunkObjects - 5);
        expect(faulty.chunkPuts).toBe(5 + second.chunksUploaded);
        const { comparison } = await restoreFromStore(store, 'guest', comparingFactory(GUEST));
        expect(comparison.equal).toBe(true);

        // Replaced by another guest: the old chunks are garbage, and gc removes exactly them.
        await pushFile(store, variant, 'guest', true);
        const stale = storeStats(store, await takeInventory(store));
        expect(stale.unreferencedChunks).toBeGreaterThan(0);
        const gc = await collectGarbage(store);
        expect(gc.chunksRemoved).toBe(stale.unreferencedChunks);
        expect(storeStats(store, await takeInventory(store)).unreferencedChunks).toBe(0);
        expect((await verifyStore(store, { threads: 0 })).ok).toBe(true);
      } finally {
        store.close();
      }
    });
  });
}
