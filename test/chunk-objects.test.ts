/**
 * Chunk objects share V8's hidden classes (src/format/chunk-objects.ts). In
 * Node 20's V8, `{ ...location, present, data }` gives every object its own
 * map and descriptor array, allocated in the old generation: made per chunk,
 * that garbage let a long read's peak RSS grow with the guest (issue 10). The
 * check runs the built library in a child with V8's natives syntax, which
 * tells whether two objects have the same map.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const DIST = resolve(import.meta.dirname, '../dist/src');
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-chunk-objects-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `body` as an ES module with `sameMaps(objects)` (how many differ from the first) in scope; returns what it prints, parsed. */
function inChild(body: string): Record<string, number> {
  const script = `
const sameMaps = (objects) => objects.filter((o) => !%HaveSameMap(objects[0], o)).length;
const location = (i, kind = 'ram') => ({ kind, region: 0, firstPage: i * 4, pageCount: 4, offset: BigInt(i), length: 100n });
${body}`;
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8' });
  return JSON.parse(out);
}

describe('chunk objects', () => {
  it('made by spreading a location and adding fields, each has its own map, so the checks below can fail', () => {
    const { differing } = inChild(`
const present = new Uint8Array(1);
const objects = [];
for (let i = 0; i < 200; i++) objects.push({ ...location(i), present, data: present });
console.log(JSON.stringify({ differing: sameMaps(objects) }));`);
    expect(differing).toBeGreaterThan(100);
  });

  it('made by the helpers, share one map per kind', () => {
    const result = inChild(`
import { chunkLocation, ramChunk, ramChunkFromContent, tagChunk, tagChunkFromPacked } from '${DIST}/format/chunk-objects.js';
const bits = new Uint8Array(1);
const make = (f) => Array.from({ length: 200 }, (_, i) => f(i));
console.log(JSON.stringify({
  locations: sameMaps(make((i) => chunkLocation(location(i), 0n, 0n))),
  ram: sameMaps(make((i) => ramChunk(location(i), bits, bits))),
  tags: sameMaps(make((i) => tagChunk(location(i, 'tags'), bits, bits))),
  packedRam: sameMaps(make((i) => ramChunkFromContent(location(i), bits, bits, 4096))),
  packedTags: sameMaps(make((i) => tagChunkFromPacked(location(i, 'tags'), bits, bits, 4096))),
}));`);
    expect(result).toEqual({ locations: 0, ram: 0, tags: 0, packedRam: 0, packedTags: 0 });
  });

  it('read from a snapshot file, share one map per kind and form', () => {
    const file = join(dir, 'guest.vmsnap');
    const result = inChild(`
import { SimulatedVm } from '${DIST}/backends/simulated/simulated-vm.js';
import { openSnapshot } from '${DIST}/reader/open.js';
import { writeGuestTags } from '${DIST}/vm/tag-copy.js';
import { saveSnapshot } from '${DIST}/writer/save.js';
const PAGE = 4096;
const vm = new SimulatedVm({ pageSize: PAGE });
vm.enableMte();
vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x40000000n, size: BigInt(1600 * PAGE) });
for (let n = 0; n < 1600; n += 3) {
  vm.writeMemory(0x40000000n + BigInt(n * PAGE), new Uint8Array(PAGE).fill((n % 250) + 1));
  writeGuestTags(vm, 0x40000000n + BigInt(n * PAGE), new Uint8Array(PAGE / 16).fill((n % 15) + 1));
}
await saveSnapshot(vm, ${JSON.stringify(file)}, { pagesPerChunk: 4 });
const reader = await openSnapshot(${JSON.stringify(file)});
const groups = {};
for await (const event of reader.events(4)) {
  if (event.type !== 'chunk') continue;
  const key = event.chunk.kind + ('content' in event.chunk || 'packedTags' in event.chunk ? ' packed' : '');
  (groups[key] ??= []).push(event.chunk);
}
await reader.close();
console.log(JSON.stringify(Object.fromEntries(Object.entries(groups).map(([k, v]) => [k, v.length > 100 ? sameMaps(v) : -v.length]))));`);
    // Every group has more than 100 chunks (a negative count says it had too few to tell) and not one differs.
    expect(Object.values(result).length).toBeGreaterThan(0);
    expect(Object.values(result).every((differing) => differing === 0)).toBe(true);
  });
});
