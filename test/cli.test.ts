/**
 * End-to-end tests of the built `vmsnap` command: each test spawns
 * `node dist/tools/vmsnap.js` as a user would, through real pipes, and checks
 * exit codes, JSON output and the files left behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist/tools/vmsnap.js');
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-cli-'));
const at = (name: string) => join(dir, name);

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function vmsnap(...args: string[]): Run {
  const run = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, VMSNAP_DEBUG: '' },
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A real shell pipeline; pipefail makes any failing stage fail the whole. */
function pipeline(command: string): Run {
  const run = spawnSync('bash', ['-c', `set -o pipefail; ${command}`], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, V: `${process.execPath} ${CLI}` },
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** One error line, no stack trace. */
function expectOneLineError(run: Run, pattern: RegExp): void {
  const lines = run.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^vmsnap: /);
  expect(lines[0]).toMatch(pattern);
}

const SNAP = at('guest.vmsnap');

beforeAll(() => {
  const saved = vmsnap('save', '--sim', '--size', '32MiB', '--seed', '7', '-o', SNAP, '--annotate', 'owner=cli-test');
  expect(saved.status, saved.stderr).toBe(0);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('help', () => {
  it.each(['save', 'restore', 'info', 'verify', 'demo'])('%s --help shows examples and exit codes', (command) => {
    const run = vmsnap(command, '--help');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('Examples:');
    expect(run.stdout).toContain('Exit codes:');
  });
});

describe('save, info and verify', () => {
  it('save to a file reports on stdout and draws no progress bar when stderr is not a terminal', () => {
    const run = vmsnap('save', '--sim', '--size', '8MiB', '-o', at('small.vmsnap'));
    expect(run.status).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/saved 12 MiB of guest memory \(2 regions, 2 vCPUs\)/);
  });

  it('info --json describes regions, chunks, tags, vCPUs and annotations', () => {
    const run = vmsnap('info', SNAP, '--json');
    expect(run.status).toBe(0);
    const info = JSON.parse(run.stdout);
    // One rule for every --json (src/json.ts): a schema version first; 64-bit values as decimal strings.
    expect(Object.keys(info)[0]).toBe('schemaVersion');
    expect(info.schemaVersion).toBe(1);
    expect(info.fileBytes).toBe(String(statSync(SNAP).size));
    expect(info.regions.map((r: { name: string; guestAddress: string; mte: boolean }) => [r.name, r.guestAddress, r.mte])).toEqual([
      ['flash0', '0', false],
      ['ram', String(0x4000_0000), true],
    ]);
    expect(info.totals.guestBytes).toBe(String(36 * 1024 * 1024));
    expect(info.totals.tagChunks).toBe(info.regions[1].ramChunks);
    expect(info.totals.tagPercentOfRam).toBeGreaterThan(0);
    expect(info.totals.tagPercentOfRam).toBeLessThan(1);
    expect(info.totals.compressionRatio).toBeGreaterThan(1);
    expect(info.vcpus).toHaveLength(2);
    expect(info.vcpus[0].registers).toBeGreaterThan(30);
    expect(info.annotations).toMatchObject({ owner: 'cli-test', 'sim.seed': '7', 'sim.size-mib': '32' });
  });

  it('verify --json passes a good file with exit code 0', () => {
    const run = vmsnap('verify', SNAP, '--json');
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report.ok).toBe(true);
    expect(report.problems).toEqual([]);
    expect(report.stats.vcpus).toBe(2);
    expect(report.stats.tagPagesStored).toBeGreaterThan(0);
  });
});

describe('pipes', () => {
  it('save to standard output piped into restore from standard input reproduces the guest', () => {
    const run = pipeline('$V save --sim --size 24MiB --seed 11 -o - | $V restore - --compare-sim --json');
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.source).toBe('-');
    expect(result.target).toEqual({ kind: 'comparison' });
    expect(result.comparison.equal).toBe(true);
    expect(result.comparison.pagesCompared).toBe((28 * 1024 * 1024) / 4096);
    expect(result.comparison.granulesCompared).toBeGreaterThan(0);
    // The save summary went to stderr, since stdout carried the snapshot.
    expect(run.stderr).toContain('saved 28 MiB of guest memory');
  });

  it('verify reads a pipe', () => {
    const run = pipeline(`cat ${SNAP} | $V verify - --json`);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: true, source: '-' });
  });

  it('a reader that closes the pipe early is no error: exit 0, no stack trace', () => {
    // A 1 MiB dump is 65,536 lines: far more than a pipe holds, so head closes it mid-output.
    const run = pipeline(`$V tags dump ${SNAP} --ipa 0x40000000 --length 1MiB | head -1`);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^0x0*40000000:/);
    expect(run.stderr).not.toMatch(/EPIPE|at .*\.js/);
  });

  it('restore --compare-sim against another seed finds differences: exit code 4', () => {
    const run = vmsnap('restore', SNAP, '--compare-sim', '--seed', '8');
    expect(run.status).toBe(4);
    expect(run.stdout).toMatch(/DIFFERENT/);
    expect(run.stdout).toMatch(/at IPA 0x4/);
  });
});

describe('errors', () => {
  const corrupt = at('corrupt.vmsnap');
  beforeAll(() => {
    const bytes = readFileSync(SNAP);
    // Guest RAM fills most of the file: the middle byte sits in a RAM chunk.
    bytes[bytes.length >> 1] ^= 0x40;
    writeFileSync(corrupt, bytes);
  });

  it('verify reports a corrupted chunk with its section and offset: exit code 1', () => {
    const run = vmsnap('verify', corrupt, '--json');
    expect(run.status).toBe(1);
    const report = JSON.parse(run.stdout);
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toMatchObject({ severity: 'error', section: 'RAMC' });
    expect(report.problems[0].code).toMatch(/checksum-mismatch|bad-chunk|decompression-failed/);
    expect(Number(report.problems[0].offset)).toBeGreaterThan(0);
  });

  it('restore of a corrupted file fails with one line naming section, offset and IPA', () => {
    const run = vmsnap('restore', corrupt);
    expect(run.status).toBe(1);
    expectOneLineError(run, /section RAMC, offset \d+ \(0x[0-9a-f]+\).*IPA 0x[0-9a-f]+/);
  });

  it('a truncated file is invalid (1), a missing one an I/O error (3)', () => {
    const truncated = at('truncated.vmsnap');
    writeFileSync(truncated, readFileSync(SNAP).subarray(0, 5000));
    const run = vmsnap('info', truncated);
    expect(run.status).toBe(1);
    expectOneLineError(run, /trailer|truncated|too short/);
    const missing = vmsnap('info', at('nope.vmsnap'));
    expect(missing.status).toBe(3);
    expectOneLineError(missing, /no such file or directory/);
    expect(vmsnap('verify', at('nope.vmsnap')).status).toBe(3);
  });

  it.each([
    [['save', '-o', 'x.vmsnap'], /no source/],
    [['save', '--sim', '--level', '42', '-o', 'x.vmsnap'], /--level/],
    [['save', '--sim', '--chunk-size', '5000', '-o', 'x.vmsnap'], /--chunk-size/],
    [['save', '--sim', '--size', 'lots', '-o', 'x.vmsnap'], /--size/],
    [['save', '--ram', 'x.ram', '-o', 'x.vmsnap'], /layout/],
    [['restore', 'x.vmsnap', '--tags-out', 't'], /--ram-out/],
    [['info', '-'], /pipe/],
  ])('bad usage %j: exit code 2', (args, pattern) => {
    const run = vmsnap(...args);
    expect(run.status).toBe(2);
    expectOneLineError(run, pattern);
  });

  it('an unknown option is a usage error (2)', () => {
    expect(vmsnap('save', '--bogus').status).toBe(2);
  });
});

describe('raw files', () => {
  it('snapshot -> raw files -> snapshot -> simulated VM equals the generated guest, for both tag layouts', () => {
    for (const tagLayout of ['byte', 'packed']) {
      const files = {
        ram: at(`${tagLayout}.ram`),
        tags: at(`${tagLayout}.tags`),
        layout: at(`${tagLayout}.json`),
        snap: at(`${tagLayout}.vmsnap`),
      };
      const out = vmsnap(
        'restore',
        SNAP,
        '--ram-out',
        files.ram,
        '--tags-out',
        files.tags,
        '--tag-layout',
        tagLayout,
        '--layout-out',
        files.layout,
      );
      expect(out.status, out.stderr).toBe(0);
      expect(statSync(files.ram).size).toBe(36 * 1024 * 1024);
      expect(statSync(files.tags).size).toBe((36 * 1024 * 1024) / (tagLayout === 'byte' ? 16 : 32));
      expect(JSON.parse(readFileSync(files.layout, 'utf8')).tagLayout).toBe(tagLayout);
      const saved = vmsnap('save', '--ram', files.ram, '--tags', files.tags, '--layout', files.layout, '-o', files.snap, '-q');
      expect(saved.status, saved.stderr).toBe(0);
      const back = vmsnap('restore', files.snap, '--compare-sim', '--seed', '7', '--size', '32MiB', '--json');
      expect(back.status, back.stderr).toBe(0);
      expect(JSON.parse(back.stdout).comparison).toMatchObject({ equal: true, pagesCompared: (36 * 1024 * 1024) / 4096 });
    }
  });

  it('--region describes the same regions as a layout file', () => {
    const snap = at('regions.vmsnap');
    const run = vmsnap(
      'save',
      '--ram',
      at('byte.ram'),
      '--tags',
      at('byte.tags'),
      '--region',
      'flash0:0:4MiB:ro',
      '--region',
      'ram:0x40000000:32MiB:mte',
      '-o',
      snap,
      '-q',
    );
    expect(run.status, run.stderr).toBe(0);
    const regions = (file: string) =>
      JSON.parse(vmsnap('info', file, '--json').stdout).regions.map((r: Record<string, unknown>) => [
        r.name,
        r.guestAddress,
        r.size,
        r.mte,
        r.readOnly,
        r.tagBytes,
      ]);
    expect(regions(snap)).toEqual(regions(at('byte.vmsnap')));
  });

  it('refuses to overwrite raw files without --force, and needs --tags-out for a tagged snapshot', () => {
    const exists = vmsnap('restore', SNAP, '--ram-out', at('byte.ram'));
    expect(exists.status).toBe(2);
    expectOneLineError(exists, /exists; pass --force/);
    const untagged = vmsnap('restore', SNAP, '--ram-out', at('untagged.ram'));
    expect(untagged.status).toBe(2);
    expectOneLineError(untagged, /--tags-out/);
    expect(existsSync(at('untagged.ram'))).toBe(false);
  });
});

describe('an interrupted save', () => {
  /** Starts a slow save to `target`, kills it with SIGKILL once its temporary file holds data, and returns that file's name. */
  async function killMidway(target: string): Promise<string> {
    const child = spawn(
      process.execPath,
      [CLI, 'save', '--sim', '--size', '256MiB', '--level', '9', '--threads', '0', '-q', '--force', '-o', target],
      { stdio: 'ignore' },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    const prefix = `.${target.split('/').pop()}.vmsnap.tmp-${child.pid}-`;
    let temporary: string | undefined;
    for (let waited = 0; waited < 20_000 && !temporary; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
      const name = readdirSync(dir).find((n) => n.startsWith(prefix));
      if (name && statSync(join(dir, name)).size > 1024 * 1024) temporary = name;
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(temporary, 'the save never got to writing').toBeDefined();
    return temporary!;
  }

  it('leaves no file at a new target', async () => {
    const target = at('killed.vmsnap');
    const temporary = await killMidway(target);
    expect(existsSync(target)).toBe(false);
    // SIGKILL cannot be caught: the partial file stays under its hidden temporary name until the next run here removes it.
    expect(existsSync(at(temporary))).toBe(true);
    expect(vmsnap('save', '--sim', '--size', '8MiB', '-q', '-o', at('after-kill.vmsnap')).status).toBe(0);
    expect(existsSync(at(temporary))).toBe(false);
  });

  it('leaves an existing snapshot at the target byte for byte intact', async () => {
    const target = at('existing.vmsnap');
    writeFileSync(target, readFileSync(SNAP));
    const before = sha256(target);
    await killMidway(target);
    expect(sha256(target)).toBe(before);
    expect(vmsnap('verify', target).status).toBe(0);
  });
});
