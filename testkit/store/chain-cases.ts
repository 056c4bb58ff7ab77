/**
 * Diff snapshots and chains in the chunk store, as cases every engine must
 * pass (test/store.test.ts on a directory, test/store-s3.test.ts on Ceph
 * RGW): a chain pushed link by link stores only each diff's own chunks,
 * restores from the store alone to the guest of each link, pulls back as the
 * diff files it was, survives gc and passes verify; and every broken chain
 * (a parent missing, replaced, another tenant's, pushed before its parent)
 * is a typed error naming the snapshots, with nothing written: no manifest,
 * no chunk, no VM.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimulatedVm, SimulatedVmFactory } from '../../src/backends/simulated/simulated-vm.js';
import { openChain } from '../../src/reader/chain.js';
import { openSnapshot } from '../../src/reader/open.js';
import { restoreSnapshot } from '../../src/reader/restore.js';
import { ChunkStore, SNAPSHOTS_PREFIX } from '../../src/store/chunk-store.js';
import type { StoreEngine } from '../../src/store/engine.js';
import { collectGarbage } from '../../src/store/gc.js';
import { storeStats, takeInventory } from '../../src/store/inventory.js';
import { pullSnapshot } from '../../src/store/pull.js';
import { pushSnapshot } from '../../src/store/push.js';
import { StoredChain } from '../../src/store/stored-chain.js';
import { verifyStore as verifyAll } from '../../src/store/verify.js';
import { compareVms } from '../../src/validate/compare.js';
import { verifySnapshot } from '../../src/validate/verify.js';
import { writeGuestTags } from '../../src/vm/tag-copy.js';
import { saveSnapshot } from '../../src/writer/save.js';

const PAGE = 4096;
const RAM = 0x4000_0000n;
const RAM_PAGES = 30;

function fill(byte: number, seed = 0): Uint8Array {
  const data = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i += 64) data[i] = (byte + i + seed) & 0xff || 1;
  return data;
}

const at = (n: number) => RAM + BigInt(n * PAGE);

/** A tagged guest of 30 pages, some zero, most with tags, and a vCPU. */
function baseGuest(): SimulatedVm {
  const vm = new SimulatedVm({ pageSize: PAGE });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: RAM, size: BigInt(RAM_PAGES * PAGE) });
  for (let n = 0; n < RAM_PAGES; n++) {
    if (n % 7 === 6) continue;
    vm.writeMemory(at(n), fill(n));
    if (n % 3 !== 2) writeGuestTags(vm, at(n), new Uint8Array(PAGE / 16).fill((n % 15) + 1));
  }
  vm.createVcpu(0);
  return vm;
}

/** Data changed, data zeroed, tags zeroed, tags changed, both: in the first chunks only, so later ones stay unchanged. */
function mutate(vm: SimulatedVm, round: number): void {
  vm.writeMemory(at(1 + round), fill(200, round));
  vm.writeMemory(at(3 + round), new Uint8Array(PAGE));
  writeGuestTags(vm, at(4 + round), new Uint8Array(PAGE / 16));
  writeGuestTags(vm, at(7 + round), new Uint8Array(PAGE / 16).fill(9 + round));
  vm.writeMemory(at(8 + round), fill(99, round));
  writeGuestTags(vm, at(8 + round), new Uint8Array(PAGE / 16).fill(3));
}

const fixed = (id: number) => ({
  snapshotId: new Uint8Array(16).fill(id),
  createdMs: 1_700_000_000_000n + BigInt(id),
  threads: 0,
  pagesPerChunk: 3,
});

async function pushFile(store: ChunkStore, file: string, name: string, options: { force?: boolean; parent?: string } = {}) {
  const reader = await openSnapshot(file, { threads: 0 });
  try {
    return await pushSnapshot(reader.events(), store, name, { threads: 0, fileBytes: () => reader.fileSize, ...options });
  } finally {
    await reader.close();
  }
}

/** Restores STORE/NAME (with its chain) into a simulated VM; `created` counts the VMs restore made. */
async function restoreStored(store: ChunkStore, name: string) {
  const factory = new SimulatedVmFactory();
  let created = 0;
  const counting = {
    backend: factory.backend,
    createVm: (...args: Parameters<typeof factory.createVm>) => {
      created++;
      return factory.createVm(...args);
    },
  };
  try {
    const chain = await StoredChain.open(store, name, { threads: 0 });
    return { vm: (await restoreSnapshot(chain, counting, { threads: 0 })).vm, created };
  } catch (error) {
    return { error: error as Error & { code?: string }, created };
  }
}

async function objectKeys(engine: StoreEngine, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of engine.list(prefix)) keys.push(object.key);
  return keys.sort();
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e as Error & { code?: string },
  );
  expect(error, 'expected a refusal').not.toBeNull();
  return error!;
}

export function storeChainCases(label: string, setup: { engine(): StoreEngine }): void {
  const dir = mkdtempSync(join(tmpdir(), 'vmsnap-store-chain-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const key = randomBytes(32);
  const otherKey = randomBytes(32);
  const [a, b, c, other] = ['a', 'b', 'c', 'other'].map((n) => join(dir, `${n}.vmsnap`));
  const vm = baseGuest();
  let afterB: SimulatedVm;
  const saved = (async () => {
    await saveSnapshot(vm, a, fixed(1));
    mutate(vm, 0);
    const parentA = await openChain([a], { threads: 0 });
    await saveSnapshot(vm, b, { ...fixed(2), diff: { parent: parentA } });
    await parentA.close();
    afterB = (await restoreSnapshot(b, new SimulatedVmFactory(), { parents: [a], threads: 0 })).vm;
    mutate(vm, 1);
    const parentB = await openChain([a, b], { threads: 0 });
    await saveSnapshot(vm, c, { ...fixed(3), diff: { parent: parentB } });
    await parentB.close();
    await saveSnapshot(baseGuest(), other, fixed(9)); // the same layout, another snapshot id
  })();
  const fresh = async (secret: Uint8Array = key) => ChunkStore.attach(setup.engine(), secret, { create: true });

  describe(`diff chains in the chunk store on ${label}`, () => {
    it('a chain stores only its diffs’ chunks, restores from the store alone, pulls back as diff files, survives gc', async () => {
      await saved;
      const store = await fresh();
      try {
        const full = await pushFile(store, a, 'a');
        const diffB = await pushFile(store, b, 'b'); // its parent found by snapshot id
        const diffC = await pushFile(store, c, 'c', { parent: 'b' });
        expect([full.parent, diffB.parent, diffC.parent]).toEqual([null, 'a', 'b']);
        // 10 positions of 3 pages, RAM and tags each: the diffs carry only the positions they change (1..4 of 10).
        expect(full.chunks).toBe(20);
        expect(diffB.chunks).toBeGreaterThan(0);
        expect(diffB.chunks).toBeLessThan(10);
        expect(diffC.chunks).toBeLessThan(10);

        const restoredC = await restoreStored(store, 'c');
        expect(compareVms(vm, restoredC.vm!).differences).toEqual([]);
        const restoredB = await restoreStored(store, 'b');
        expect(compareVms(afterB, restoredB.vm!).differences).toEqual([]);

        // Pulled, a diff is its diff file again: valid alone, a diff of b, and it restores on the chain of files.
        const pulled = join(dir, `pulled-c-${label.replace(/\W/g, '')}.vmsnap`);
        const summary = await pullSnapshot(store, 'c', pulled, { threads: 0 });
        expect(summary.parent).toBe('b');
        expect(readFileSync(pulled).readUInt16LE(10)).toBe(1);
        expect((await verifySnapshot(pulled, { threads: 0 })).problems).toEqual([]);
        const fromFiles = await restoreSnapshot(pulled, new SimulatedVmFactory(), { parents: [a, b], threads: 0 });
        expect(compareVms(vm, fromFiles.vm).differences).toEqual([]);

        const stats = storeStats(store, await takeInventory(store));
        expect(stats.snapshots).toBe(3);
        expect(stats.diffSnapshots).toBe(2);
        expect(stats.chunkReferences).toBe(full.chunks + diffB.chunks + diffC.chunks);
        expect((await verifyAll(store, { threads: 0 })).problems).toEqual([]);
        const gc = await collectGarbage(store);
        expect(gc.chunksRemoved).toBe(0);
        expect(compareVms(vm, (await restoreStored(store, 'c')).vm!).differences).toEqual([]);

        // The same snapshot may be pushed again over a parent; another may not replace it under its diffs.
        await pushFile(store, a, 'a', { force: true });
        expect((await rejection(pushFile(store, other, 'a', { force: true }))).code).toBe('snapshot-has-diffs');
        expect((await restoreStored(store, 'c')).vm).toBeDefined();
      } finally {
        store.close();
      }
    });

    it('a diff pushed before its parent, or on the wrong parent, is refused and writes nothing', async () => {
      await saved;
      const store = await fresh();
      try {
        const missing = await rejection(pushFile(store, c, 'c'));
        expect(missing.code).toBe('missing-parent');
        expect(missing.message).toContain('0202020202020202');
        expect(await objectKeys(store.engine, 'chunks/')).toEqual([]);
        expect(await store.snapshotNames()).toEqual([]);

        await pushFile(store, other, 'other');
        const chunksBefore = await objectKeys(store.engine, 'chunks/');
        const wrong = await rejection(pushFile(store, b, 'b', { parent: 'other' }));
        expect(wrong.code).toBe('parent-mismatch');
        expect(wrong.message).toContain('other');
        expect((await rejection(pushFile(store, b, 'b', { parent: 'nobody' }))).code).toBe('missing-parent');
        expect(await store.snapshotNames()).toEqual(['other']);
        expect(await objectKeys(store.engine, 'chunks/')).toEqual(chunksBefore);
        expect((await rejection(pushFile(store, a, 'a', { parent: 'other' }))).code).toBe('parent-mismatch');
      } finally {
        store.close();
      }
    });

    it('a parent deleted, replaced, or another tenant’s: restore refuses before a VM is made, verify names it', async () => {
      await saved;
      const store = await fresh();
      const foreign = await fresh(otherKey);
      try {
        await pushFile(store, a, 'a');
        await pushFile(store, b, 'b');
        await pushFile(foreign, a, 'a');
        const genuine = (await store.engine.get(`${SNAPSHOTS_PREFIX}a`))!;

        const cases: Array<[string, () => Promise<void>, string]> = [
          ['deleted', () => store.deleteSnapshot('a'), 'missing-parent'],
          [
            'another tenant’s',
            async () => store.engine.put(`${SNAPSHOTS_PREFIX}a`, (await foreign.engine.get(`${SNAPSHOTS_PREFIX}a`))!),
            'manifest-not-authentic',
          ],
          ['another snapshot', async () => void (await store.writeManifest('a', await otherManifest(store))), 'parent-mismatch'],
        ];
        for (const [what, damage, code] of cases) {
          await damage();
          const restored = await restoreStored(store, 'b');
          expect(restored.error?.code, what).toBe(code);
          expect(restored.error?.message, what).toMatch(/snapshot b is a diff of a/);
          expect(restored.created, what).toBe(0);
          const report = await verifyAll(store, { threads: 0 });
          expect(
            report.problems.some((p) => p.snapshot === 'b' && p.code === code),
            what,
          ).toBe(true);
          await store.engine.put(`${SNAPSHOTS_PREFIX}a`, genuine);
        }
        expect((await restoreStored(store, 'b')).vm).toBeDefined();

        // A diff that names itself as its parent, with its own id (only a hostile writer makes one): a loop, refused.
        const diffB = await store.readManifest('b');
        await store.writeManifest('loop', {
          ...diffB,
          metadata: { ...diffB.metadata, snapshotId: diffB.metadata.parentId! },
          diff: { ...diffB.diff!, parentName: 'loop' },
        });
        const looped = await restoreStored(store, 'loop');
        expect(looped.error?.code).toBe('parent-mismatch');
        expect(looped.error?.message).toMatch(/loops/);
        expect(looped.created).toBe(0);
        expect((await verifyAll(store, { threads: 0 })).problems.map((p) => [p.snapshot, p.code])).toContainEqual([
          'loop',
          'parent-mismatch',
        ]);
      } finally {
        store.close();
        foreign.close();
      }
    });
  });

  /** The manifest of `other` (a full snapshot of the same layout, another id), pushed to a scratch name and read back. */
  async function otherManifest(store: ChunkStore) {
    await pushFile(store, other, 'scratch', { force: true });
    const manifest = await store.readManifest('scratch');
    await store.deleteSnapshot('scratch');
    return manifest;
  }
}
