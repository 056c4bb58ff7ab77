/**
 * Diff snapshots through the CLI (issue 8, item 2): save --parent for the
 * simulated guest and raw files, restore of a chain found beside the last
 * file or named with --chain, flatten byte for byte a direct save with the
 * same id and time, info and verify of a chain, and a missing parent as one
 * line and exit 1.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vmsnap } from './support/run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-diff-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => join(dir, name);

async function ok(...args: string[]): Promise<string> {
  const result = await vmsnap(...args);
  expect(result.err + result.out, `vmsnap ${args.join(' ')}`).not.toMatch(/bug|Error:/);
  expect(result.code, `vmsnap ${args.join(' ')}: ${result.err}`).toBe(0);
  return result.out;
}

describe('vmsnap with diff snapshots', () => {
  const common = ['--size', '2MiB', '--chunk-size', '64KiB', '--threads', '0', '-q'];

  it('saves a chain of simulated guests, restores it from beside the file and from --chain, and flattens it exactly', async () => {
    await ok('save', '--sim', '--seed', '1', ...common, '-o', at('a.vmsnap'));
    await ok('save', '--sim', '--seed', '2', ...common, '--parent', at('a.vmsnap'), '-o', at('b.vmsnap'));
    await ok('save', '--sim', '--seed', '3', ...common, '--parent', at('b.vmsnap'), '-o', at('c.vmsnap'));
    const restored = JSON.parse(await ok('restore', at('c.vmsnap'), '--compare-sim', '--json', '--threads', '0'));
    expect(restored.comparison.equal).toBe(true);
    expect(restored.chain).toEqual([at('a.vmsnap'), at('b.vmsnap'), at('c.vmsnap')]);
    const named = JSON.parse(
      await ok('restore', at('c.vmsnap'), '--chain', `${at('a.vmsnap')},${at('b.vmsnap')}`, '--compare-sim', '--json'),
    );
    expect(named.comparison.equal).toBe(true);

    const info = JSON.parse(await ok('info', at('c.vmsnap'), '--json'));
    expect(info.format.version).toBe('1.1');
    expect(BigInt(info.diff.changedPages)).toBeGreaterThan(0n);
    expect(BigInt(info.diff.changedPages)).toBeLessThanOrEqual(BigInt(info.diff.guestPages));
    expect(info.chain.files).toEqual([at('a.vmsnap'), at('b.vmsnap'), at('c.vmsnap')]);
    expect(await ok('info', at('c.vmsnap'))).toContain('a DIFF snapshot of parent');
    const verified = JSON.parse(await ok('verify', at('c.vmsnap'), '--json', '--threads', '0'));
    expect(verified.ok).toBe(true);
    expect(verified.chain.ok).toBe(true);

    await ok('flatten', at('c.vmsnap'), '-o', at('flat.vmsnap'), '--threads', '0', '-q');
    await ok(
      'save',
      '--sim',
      '--seed',
      '3',
      ...common,
      '--snapshot-id',
      info.snapshotId,
      '--created-ms',
      info.createdMs,
      '-o',
      at('direct.vmsnap'),
    );
    expect(Buffer.compare(readFileSync(at('flat.vmsnap')), readFileSync(at('direct.vmsnap')))).toBe(0);
    const flatInfo = JSON.parse(await ok('info', at('flat.vmsnap'), '--json'));
    expect(flatInfo.format.version).toBe('1.0');
    expect(flatInfo.parentId).toBe(null);
  });

  it('saves raw files as a diff against their parent and restores them exactly', async () => {
    await ok('restore', at('a.vmsnap'), '--ram-out', at('r.ram'), '--tags-out', at('r.tags'), '--layout-out', at('r.json'), '-q');
    const ram = readFileSync(at('r.ram'));
    const tags = readFileSync(at('r.tags'));
    // Offsets inside the first MTE region, whose tags the tag file shadows (one byte per 16 bytes of RAM).
    const layout = JSON.parse(readFileSync(at('r.json'), 'utf8'));
    const base = Number(layout.regions.find((r: { mte: boolean }) => r.mte).fileOffset);
    ram.fill(0, base + 4096, base + 8192); // a page zeroed
    tags.fill(0, (base + 4096) / 16, (base + 8192) / 16); // its tags zeroed too
    ram[base + 20000] ^= 0xff; // data changed, tags not
    tags.fill(5, (base + 40960) / 16, (base + 45056) / 16); // tags changed, data not
    writeFileSync(at('r.ram'), ram);
    writeFileSync(at('r.tags'), tags);
    const saved = JSON.parse(
      await ok(
        'save',
        '--ram',
        at('r.ram'),
        '--tags',
        at('r.tags'),
        '--layout',
        at('r.json'),
        '--parent',
        at('a.vmsnap'),
        '-o',
        at('d.vmsnap'),
        '--json',
        '--threads',
        '0',
      ),
    );
    // At most the three pages touched (one of them may have been zero already), and never none.
    expect(['1', '2', '3']).toContain(saved.changedPages);
    await ok('restore', at('d.vmsnap'), '--ram-out', at('s.ram'), '--tags-out', at('s.tags'), '-q');
    expect(readFileSync(at('s.ram')).equals(ram)).toBe(true);
    expect(readFileSync(at('s.tags')).equals(tags)).toBe(true);
  });

  it('a diff without its parent, or with the wrong one, is one line and exit 1', async () => {
    const lonely = at('lonely');
    mkdirSync(lonely);
    copyFileSync(at('c.vmsnap'), join(lonely, 'c.vmsnap'));
    for (const args of [
      ['restore', join(lonely, 'c.vmsnap')],
      ['restore', at('c.vmsnap'), '--chain', at('a.vmsnap')],
      ['flatten', join(lonely, 'c.vmsnap'), '-o', join(lonely, 'x.vmsnap')],
    ]) {
      const result = await vmsnap(...args);
      expect(result.code, args.join(' ')).toBe(1);
      expect(result.err.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(result.err).toMatch(/diff of snapshot/);
    }
    const verify = await vmsnap('verify', join(lonely, 'c.vmsnap'), '--json');
    expect(verify.code).toBe(1);
    expect(JSON.parse(verify.out).chain.problems[0].code).toBe('missing-parent');
  });

  it('flatten --help shows examples', async () => {
    const help = await vmsnap('flatten', '--help');
    expect(help.out).toContain('vmsnap flatten tuesday.vmsnap -o full.vmsnap');
  });
});
