/**
 * vitest global setup: builds dist/ once before any test file runs, so that
 * the tests that run the CLI as a user would (`node dist/tools/vmsnap.js`)
 * and the one that packs the package never race each other's build.
 */
import { execSync } from 'node:child_process';
import { resolve } from 'node:path';

export default function buildOnce(): void {
  execSync('npm run build', { cwd: resolve(import.meta.dirname, '../..'), stdio: 'pipe' });
}
