/**
 * The package as a VMM author gets it: `npm pack`, installed into a fresh
 * project, imported as 'vmsnap' from an ESM file and from TypeScript compiled
 * by tsc with module/moduleResolution node16. Each saves a VM the consumer
 * implements itself (test/fixtures/consumer), reads it back, verifies it,
 * restores it into another of its own VMs and compares. koffi is removed from
 * the fresh project: the root entry must not load it; 'vmsnap/kvm' must.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const project = mkdtempSync(join(tmpdir(), 'vmsnap-consumer-'));

function run(command: string, args: string[], cwd = project): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 300_000 });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

beforeAll(() => {
  // dist/ is built by the global setup; pack it as it is.
  run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], ROOT);
  const tarball = readdirSync(project).find((name) => name.endsWith('.tgz'));
  if (!tarball) throw new Error('npm pack wrote no tarball');
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // Scripts off: zstd-napi stays unbuilt, so the portable zstd path is what this consumer runs.
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', `./${tarball}`]);
  rmSync(join(project, 'node_modules', 'koffi'), { recursive: true, force: true });
  cpSync(join(ROOT, 'test/fixtures/consumer'), project, { recursive: true });
}, 600_000);

afterAll(() => rmSync(project, { recursive: true, force: true }));

describe('the packed package', () => {
  it('holds the library and the CLI, and no test support, sources or maps', () => {
    const files = run('tar', ['-tzf', readdirSync(project).find((name) => name.endsWith('.tgz'))!]).split('\n');
    expect(files).toContain('package/dist/src/index.js');
    expect(files).toContain('package/dist/src/index.d.ts');
    expect(files).toContain('package/dist/src/kvm.js');
    expect(files).toContain('package/dist/tools/vmsnap.js');
    expect(files.filter((f) => /testkit|\/test\/|bench|\.map$|\.ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
  });

  it('round-trips its own VM from an ESM consumer, with typed errors, without loading koffi', () => {
    const result = JSON.parse(run('node', ['consumer.mjs', join(project, 'esm.vmsnap')]));
    expect(result.ok).toBe(true);
    expect(result.equal).toBe(true);
    expect(result.tag).toBe(2);
    expect(result.saved.guestBytes).toBe(String(1 << 20));
    expect(result.restored.vcpus).toBe(1);
    expect(result.refused).toEqual({ code: 'bad-magic', kind: 'invalid-input' });
  });

  it('type-checks and round-trips a save-only VmSource from TypeScript (node16)', () => {
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'node16',
          moduleResolution: 'node16',
          target: 'es2022',
          strict: true,
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    run('node', [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.']);
    expect(existsSync(join(project, 'consumer.js'))).toBe(true);
    const result = JSON.parse(run('node', ['consumer.js', join(project, 'ts.vmsnap')]));
    expect(result).toMatchObject({ ok: true, equal: true, granuleBytes: 1 << 20 });
  });

  it("loads koffi only for 'vmsnap/kvm'", () => {
    const result = spawnSync('node', ['--input-type=module', '-e', "await import('vmsnap/kvm')"], { cwd: project, encoding: 'utf8' });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/koffi/);
  });
});
