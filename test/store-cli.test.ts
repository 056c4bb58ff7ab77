/**
 * The store's commands with diff snapshots, run in-process as the binary
 * would: `save --parent ... -o STORE/NAME` and `push` store a diff on its
 * parent, `restore STORE/NAME` resolves the chain from the store, `store ls`
 * names the parent, `pull` writes the diff file that restores on its parent
 * file, and a diff pushed without its parent is one line and exit code 1.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vmsnap } from './support/run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-store-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => join(dir, name);
const key = at('tenant.key');
writeFileSync(key, randomBytes(32));
const store = at('store');
const sim = (seed: number) => ['save', '--sim', '--size', '8MiB', '--seed', String(seed), '--threads', '0'];

describe('diff snapshots through the store commands', () => {
  it('save and push diffs into a store, restore and pull them, list their parents', async () => {
    expect((await vmsnap(...sim(7), '-q', '-o', at('a.vmsnap'))).code).toBe(0);
    expect((await vmsnap('push', at('a.vmsnap'), store, '--key-file', key, '-q', '--threads', '0')).code).toBe(0);
    // The same guest again, as a diff: nothing changed, nothing stored but the manifest.
    const same = await vmsnap(...sim(7), '--parent', at('a.vmsnap'), '-o', `${store}/same`, '--key-file', key, '--json');
    expect(same.code, same.err).toBe(0);
    expect(JSON.parse(same.out).pushed).toMatchObject({ parent: 'a', chunks: 0, chunksUploaded: 0 });
    const other = await vmsnap(...sim(8), '--parent', at('a.vmsnap'), '-o', `${store}/b`, '--key-file', key, '--json');
    expect(other.code, other.err).toBe(0);
    expect(JSON.parse(other.out).pushed.parent).toBe('a');

    for (const name of ['b', 'same']) {
      const restored = await vmsnap('restore', `${store}/${name}`, '--key-file', key, '--compare-sim', '--threads', '0', '--json');
      expect(restored.code, restored.err).toBe(0);
    }
    const listed = await vmsnap('store', 'ls', store, '--key-file', key, '--json');
    expect(JSON.parse(listed.out).snapshots.map((s: { name: string; parent: string | null }) => [s.name, s.parent])).toEqual([
      ['a', null],
      ['b', 'a'],
      ['same', 'a'],
    ]);
    expect((await vmsnap('store', 'verify', store, '--key-file', key, '-q', '--threads', '0')).code).toBe(0);
    const stats = JSON.parse((await vmsnap('store', 'stats', store, '--key-file', key, '--json')).out);
    expect(stats.diffSnapshots).toBe(2);

    // Pulled, b is a diff file again, and restores with its parent found beside it.
    expect((await vmsnap('pull', `${store}/b`, '-o', at('b.vmsnap'), '--key-file', key, '-q')).code).toBe(0);
    const fromFiles = await vmsnap('restore', at('b.vmsnap'), '--compare-sim', '--threads', '0', '-q');
    expect(fromFiles.code, fromFiles.err).toBe(0);
  });

  it('a diff pushed to a store without its parent: one line, exit 1, nothing stored', async () => {
    const empty = at('empty');
    const run = await vmsnap('push', at('b.vmsnap'), empty, '--key-file', key, '-q');
    expect(run.code).toBe(1);
    // In-process runs add listeners to the shared stdout, which Node warns about: that is the test's, not the command's.
    const lines = run.err
      .trim()
      .split('\n')
      .filter((line) => !/^\((node:\d+|Use `node)/.test(line));
    expect(lines).toHaveLength(1);
    expect(run.err).toMatch(/b is a diff of snapshot [0-9a-f]{32}, which no snapshot in the store is/);
    expect(JSON.parse((await vmsnap('store', 'ls', empty, '--key-file', key, '--json')).out).snapshots).toEqual([]);
  });
});
