/**
 * The spec's test vectors: the reader decodes each one to exactly its JSON,
 * and the writer reproduces each one byte for byte from its JSON.
 * Regenerate the .vmsnap files (after a deliberate format change, with a
 * version bump) with: UPDATE_VECTORS=1 npx vitest run test/vectors.test.ts
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openChain } from '../src/reader/chain.js';
import { openSnapshot } from '../src/reader/open.js';
import { saveSnapshot } from '../src/writer/save.js';
import { expectedPage, hexBytes, loadVector, VECTOR_DIR, vectorNames, vectorVm } from './support/vectors.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-vectors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The files of a vector's chain, oldest first: the vector alone, or its parent's chain and it (a diff vector). */
function vectorChain(name: string): string[] {
  const parent = loadVector(name).parent;
  return [...(parent ? vectorChain(parent) : []), join(VECTOR_DIR, `${name}.vmsnap`)];
}

async function writeVector(name: string, path: string) {
  const vector = loadVector(name);
  // A diff vector is computed against its parent vector's file.
  const parent = vector.parent ? await openChain(vectorChain(vector.parent), { threads: 0 }) : undefined;
  await saveSnapshot(vectorVm(vector), path, {
    diff: parent && { parent },
    pagesPerChunk: vector.pages_per_chunk,
    level: vector.level,
    snapshotId: hexBytes(vector.snapshot_id),
    createdMs: BigInt(vector.created_ms),
    tool: vector.tool,
    annotations: vector.annotations,
    blobs: vector.blobs.map((b) => ({ name: b.name, data: hexBytes(b.data) })),
    threads: 0,
  });
  await parent?.close();
}

describe.each(vectorNames())('vector %s', (name) => {
  const file = join(VECTOR_DIR, `${name}.vmsnap`);

  it('is written byte for byte from its JSON', async () => {
    const path = join(dir, `${name}.vmsnap`);
    await writeVector(name, path);
    if (process.env.UPDATE_VECTORS) writeFileSync(file, readFileSync(path));
    expect(existsSync(file)).toBe(true);
    expect(Buffer.compare(readFileSync(path), readFileSync(file))).toBe(0);
  });

  it('decodes to exactly its JSON', async () => {
    const vector = loadVector(name);
    // A diff vector decodes, with its parent, to its JSON; alone, it is a diff of that parent.
    const alone = await openSnapshot(file, { threads: 0 });
    expect(alone.diff === null).toBe(vector.parent === undefined);
    if (vector.parent) expect(Buffer.from(alone.diff!.parentId).toString('hex')).toBe(loadVector(vector.parent).snapshot_id);
    await alone.close();
    const snapshot = await openChain(vectorChain(name), { threads: 0 });
    try {
      expect(snapshot.header).toMatchObject({
        major: 1,
        minor: vector.parent ? 1 : 0,
        pageSize: vector.page_size,
        pagesPerChunk: vector.pages_per_chunk,
        codec: vector.level > 0 ? 1 : 0,
      });
      expect(Buffer.from(snapshot.metadata.snapshotId).toString('hex')).toBe(vector.snapshot_id);
      expect(snapshot.metadata.createdMs).toBe(BigInt(vector.created_ms));
      expect(snapshot.metadata.tool).toBe(vector.tool);
      expect(snapshot.metadata.annotations).toEqual(vector.annotations);
      const byAddress = [...vector.regions].sort((a, b) => (BigInt(a.guest_address) < BigInt(b.guest_address) ? -1 : 1));
      expect(snapshot.regions.map((r) => [r.name, r.guestAddress, r.size, r.mte, r.readOnly, r.slot])).toEqual(
        byAddress.map((r) => [r.name, BigInt(r.guest_address), BigInt(r.size), r.mte, r.read_only, r.slot]),
      );
      for (const location of snapshot.chunks) {
        const region = byAddress[location.region];
        const chunk = location.kind === 'ram' ? await snapshot.readRamChunk(location) : await snapshot.readTagChunk(location);
        for (let i = 0; i < location.pageCount; i++) {
          const want = expectedPage(vector, region, location.firstPage + i);
          if ('data' in chunk) expect(chunk.data.subarray(i * vector.page_size, (i + 1) * vector.page_size)).toEqual(want.data);
          else expect(chunk.tags.subarray(i * (vector.page_size / 16), (i + 1) * (vector.page_size / 16))).toEqual(want.tags);
        }
      }
      const vcpus = await snapshot.vcpus();
      expect(
        vcpus.map((v) => ({
          id: v.id,
          registers: v.registers.map((r) => [`0x${r.id.toString(16)}`, Buffer.from(r.value).toString('hex')]),
        })),
      ).toEqual(vector.vcpus);
      expect((await snapshot.blobs()).map((b) => ({ name: b.name, data: Buffer.from(b.data).toString('hex') }))).toEqual(vector.blobs);
    } finally {
      await snapshot.close();
    }
  });
});
