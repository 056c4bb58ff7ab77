/**
 * The README's "Use as a library" example, run as it is written: extracted
 * from README.md, so it cannot rot. It imports 'vmsnap' by the package's own
 * name (Node resolves a package's self-reference through its exports map, to
 * dist/ built by the global setup), from a directory inside the project.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const work = join(ROOT, '.cache', `readme-example-${process.pid}`);

afterAll(() => rmSync(work, { recursive: true, force: true }));

function libraryExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use as a library'));
  const block = /```js\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README.md: no js block under "Use as a library"');
  return block[1];
}

it("the README's library example saves, verifies, restores and compares", () => {
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, 'example.mjs'), libraryExample());
  const run = spawnSync('node', ['example.mjs'], { cwd: work, encoding: 'utf8', timeout: 120_000 });
  expect(run.status, run.stderr).toBe(0);
  const [summary, equal] = run.stdout.trim().split('\n');
  expect(JSON.parse(summary)).toMatchObject({ destination: 'guest.vmsnap', guestBytes: String(68 * 1024 * 1024) });
  expect(equal).toBe('true');
});
