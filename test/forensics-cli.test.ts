/**
 * The forensics commands run in-process as `vmsnap` would run them: their
 * output (text and --json), exit codes and --help examples.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCENARIO_A, SCENARIO_B, saveGuest, temporaryDirectory } from './forensics-fixtures.js';
import { vmsnap } from './support/run-cli.js';

const dir = temporaryDirectory();
let a: string;
let b: string;

beforeAll(async () => {
  a = await saveGuest(SCENARIO_A, join(dir.path, 'a.vmsnap'));
  b = await saveGuest(SCENARIO_B, join(dir.path, 'b.vmsnap'));
});
afterAll(() => dir.remove());

describe('vmsnap tags', () => {
  it('stats --json gives per-region and overall figures', async () => {
    const { out, code } = await vmsnap('tags', 'stats', a, '--region', 'ram', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(out);
    expect(report.regions.map((r: { region: string }) => r.region)).toEqual(['ram']);
    expect(report.overall.taggedPages).toBe(4);
    expect(report.overall.tagHistogram[7]).toBe(256);
  });

  it('dump prints tags per granule, with data when asked, and JSON', async () => {
    expect((await vmsnap('tags', 'dump', a, '--ipa', '0x40000000', '--length', '64')).out).toBe('0x0000000040000000:  3 3 3 3\n');
    const withData = await vmsnap('tags', 'dump', a, '--ipa', '0x40000040', '--length', '16', '--data');
    expect(withData.out).toMatch(/^0x0000000040000040 {2}tag 5 {2}/);
    const json = JSON.parse((await vmsnap('tags', 'dump', a, '--ipa', '0x40001000', '--length', '32', '--json')).out);
    expect(json).toEqual({
      schemaVersion: 1,
      granules: [
        { address: String(0x40001000), tag: 7 },
        { address: String(0x40001010), tag: 7 },
      ],
    });
  });

  it('dump outside every region is a usage error (exit 2) naming the address', async () => {
    const { err, code } = await vmsnap('tags', 'dump', a, '--ipa', '0x30000000', '--length', '16');
    expect(code).toBe(2);
    expect(err).toMatch(/0x30000000/);
  });

  it('diff lists changed pages and exits 4 with --fail-on-diff', async () => {
    const listed = await vmsnap('tags', 'diff', a, b, '--list', '--fail-on-diff');
    expect(listed.code).toBe(4);
    expect(listed.out).toContain('ram 0x40001000  tags: 0x40001000+4096 7->9');
    expect(listed.out).toContain('ram 0x40020000  data: 2 granules at 0x40020000+32');
    expect((await vmsnap('tags', 'diff', a, a, '--fail-on-diff')).code).toBe(0);
    const json = JSON.parse((await vmsnap('tags', 'diff', a, b, '--list', '--limit', '1', '--json')).out);
    expect(json.pages).toHaveLength(1);
    expect(json.unlistedPages).toBe(3);
  });

  it('map writes an SVG', async () => {
    const output = join(dir.path, 'map.svg');
    const { out, code } = await vmsnap('tags', 'map', b, '--against', a, '-o', output, '--json');
    expect(code).toBe(0);
    expect(JSON.parse(out).regions[1].pagesInState['tags changed']).toBe(3);
    expect(readFileSync(output, 'utf8')).toContain('<svg');
  });
});

describe('vmsnap check-pointer headline', () => {
  it("quotes the first mismatching granule, not the pointer's own, when only a later granule differs", async () => {
    // 0x40000000: 64 bytes tag 3, then 32 bytes tag 5: a 0x50-byte access with tag 3 differs only in granule 0x40000040.
    const { out, code } = await vmsnap('check-pointer', a, '0x0300000040000000', '--length', '0x50');
    expect(code).toBe(4);
    expect(out.split('\n')[0]).toContain('Logical tag (0x3) does not match the allocation tag (0x5) of granule 0x40000040');
  });
});

describe('vmsnap check-pointer', () => {
  it('exits 0 on a match and 4 on a mismatch, saying which', async () => {
    const match = await vmsnap('check-pointer', a, '0x0700000040001000');
    expect(match.code).toBe(0);
    expect(match.out).toMatch(/match \(0x7\)/);
    const mismatch = await vmsnap('check-pointer', a, '0x0200000040001000', '--json');
    expect(mismatch.code).toBe(4);
    expect(JSON.parse(mismatch.out)).toMatchObject({ logicalTag: 2, allocationTag: 7, match: false });
    expect((await vmsnap('check-pointer', a, '0x0200000000001000')).code).toBe(2);
  });
});

describe('vmsnap export core / import core', () => {
  it('round-trips a snapshot through a sparse core', async () => {
    const core = join(dir.path, 'a.core');
    const exported = await vmsnap('export', 'core', a, '-o', core, '--json');
    expect(exported.code).toBe(0);
    const summary = JSON.parse(exported.out);
    expect(summary.memtagSegments).toBe(2);
    expect(statSync(core).size).toBe(Number(summary.fileSize));
    const back = join(dir.path, 'back.vmsnap');
    const imported = await vmsnap('import', 'core', core, '-o', back);
    expect(imported.code).toBe(0);
    expect(readFileSync(back).equals(readFileSync(a))).toBe(true);
  });

  it('refuses a file that is not an ELF core with exit 1', async () => {
    const { code, err } = await vmsnap('import', 'core', a, '-o', join(dir.path, 'x.vmsnap'));
    expect(code).toBe(1);
    expect(err).toMatch(/not an ELF file/);
    expect(existsSync(join(dir.path, 'x.vmsnap'))).toBe(false);
  });
});

describe('help', () => {
  it.each(['tags stats', 'tags dump', 'tags diff', 'tags map', 'check-pointer', 'export core', 'import core'])(
    '%s --help shows examples',
    async (words) => {
      const { out, code } = await vmsnap(...words.split(' '), '--help');
      expect(code).toBe(0);
      expect(out).toMatch(/Examples:\n {2}\$ vmsnap /);
    },
  );
});

describe('vmsnap show', () => {
  it('decodes every vCPU register by name, the blobs and the chain (JSON and text)', async () => {
    const { out, code } = await vmsnap('show', a, '--json');
    expect(code).toBe(0);
    const shown = JSON.parse(out);
    expect(shown.schemaVersion).toBe(1);
    expect(shown.vcpuRegisters.map((v: { id: number }) => v.id)).toEqual([0, 1]);
    const byName = (id: number) =>
      new Map(shown.vcpuRegisters[id].registers.map((r: { name: string; hex: string; value: string }) => [r.name, r]));
    expect(byName(1).get('x0')).toMatchObject({ hex: '0x0000000011110001', value: String(0x1111_0001), bits: 64 });
    expect(byName(0).get('x30')).toMatchObject({ hex: '0x0000deadbeef0000' });
    expect(byName(1).get('pc')).toMatchObject({ value: String(0x4000_0804) });
    expect(byName(0).get('v31')).toMatchObject({ bits: 128 });
    expect(shown.chain).toEqual([{ snapshotId: shown.snapshotId, file: a }]);
    expect(shown.blobs).toEqual([]);
    const text = await vmsnap('show', a, '--vcpu', '1');
    expect(text.out).toMatch(/vCPU 1 \(\d+ registers\):\n {2}x0 +0x0000000011110001/);
    expect(text.out).not.toContain('vCPU 0 (');
  });
});

describe('vmsnap show on a chain', () => {
  it('lists the chain newest first, its parents found beside the diff', async () => {
    const full = join(dir.path, 'chain-full.vmsnap');
    const diff = join(dir.path, 'chain-diff.vmsnap');
    expect((await vmsnap('save', '--sim', '--size', '4MiB', '--seed', '5', '-o', full, '-q')).code).toBe(0);
    expect((await vmsnap('save', '--sim', '--size', '4MiB', '--seed', '6', '--parent', full, '-o', diff, '-q')).code).toBe(0);
    const fullId = JSON.parse((await vmsnap('show', full, '--json')).out).snapshotId;
    const shown = JSON.parse((await vmsnap('show', diff, '--json')).out);
    expect(shown.chain).toEqual([
      { snapshotId: shown.snapshotId, file: diff },
      { snapshotId: fullId, file: full },
    ]);
    const text = await vmsnap('show', diff);
    expect(text.out).toContain(`chain: ${shown.snapshotId} <- ${fullId}`);
  });
});
