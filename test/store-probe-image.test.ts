/**
 * The shipped store-probe bytes are the assembled source: by the source's
 * SHA-256 everywhere, and byte for byte where aarch64-linux-gnu-as exists.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { STORE_PROBE_IMAGE, STORE_PROBE_SOURCE_SHA256 } from '../testkit/guest-store-probe/store-probe-image.js';
import { externalTool, titled } from './support/external-tool.js';

const root = resolve(import.meta.dirname, '..');
const source = join(root, 'testkit/guest-store-probe/store-probe.S');
const image = join(root, 'testkit/guest-store-probe/store-probe-image.ts');
const assembler = externalTool(
  'aarch64-linux-gnu-as',
  ['aarch64-linux-gnu-as', '--version'],
  'apt-get install -y binutils-aarch64-linux-gnu',
);

describe('store probe image', () => {
  test('was generated from the current store-probe.S (run testkit/guest-store-probe/build-store-probe.sh after editing it)', () => {
    expect(createHash('sha256').update(readFileSync(source)).digest('hex')).toBe(STORE_PROBE_SOURCE_SHA256);
  });

  test('is whole instructions, with the 2 KiB-aligned vector table inside it and room for its table page in 64 KiB', () => {
    expect(STORE_PROBE_IMAGE.length % 4).toBe(0);
    expect(STORE_PROBE_IMAGE.length).toBeGreaterThanOrEqual(0x800 + 16 * 0x80);
    expect(STORE_PROBE_IMAGE.length).toBeLessThanOrEqual(0x10000 - 0x1000 * 2);
  });

  test.skipIf(assembler.skip)(titled('matches the bytes aarch64-linux-gnu-as makes of the source today', assembler), () => {
    expect(assembler.available, assembler.reason).toBe(true);
    const work = mkdtempSync(join(tmpdir(), 'vmsnap-probe-'));
    try {
      const output = join(work, 'image.ts');
      const build = spawnSync('bash', [join(root, 'testkit/guest-store-probe/build-store-probe.sh'), output], { encoding: 'utf8' });
      expect(build.status, build.stderr).toBe(0);
      expect(readFileSync(output, 'utf8')).toBe(readFileSync(image, 'utf8'));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
