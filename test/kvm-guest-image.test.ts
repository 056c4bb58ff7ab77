/**
 * The shipped MTE test guest bytes are the assembled source: by the source's
 * SHA-256 everywhere, and byte for byte where aarch64-linux-gnu-as exists.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { MTE_TEST_GUEST_IMAGE, MTE_TEST_GUEST_SOURCE_SHA256 } from '../src/vmm/mte-test-image.js';
import { externalTool, titled } from './support/external-tool.js';

const root = resolve(import.meta.dirname, '..');
const source = join(root, 'testkit/mte-test-guest/mte-test.S');
const image = join(root, 'src/vmm/mte-test-image.ts');
const assembler = externalTool(
  'aarch64-linux-gnu-as',
  ['aarch64-linux-gnu-as', '--version'],
  'apt-get install -y binutils-aarch64-linux-gnu',
);

describe('MTE test guest image', () => {
  test('was generated from the current mte-test.S (run testkit/mte-test-guest/build-mte-guest.sh after editing it)', () => {
    expect(createHash('sha256').update(readFileSync(source)).digest('hex')).toBe(MTE_TEST_GUEST_SOURCE_SHA256);
  });

  test('is whole instructions, with the 2 KiB-aligned vector table inside it', () => {
    expect(MTE_TEST_GUEST_IMAGE.length % 4).toBe(0);
    expect(MTE_TEST_GUEST_IMAGE.length).toBeGreaterThanOrEqual(0x800 + 16 * 0x80);
  });

  test.skipIf(assembler.skip)(titled('matches the bytes aarch64-linux-gnu-as makes of the source today', assembler), () => {
    expect(assembler.available, assembler.reason).toBe(true);
    const work = mkdtempSync(join(tmpdir(), 'vmsnap-guest-'));
    try {
      const output = join(work, 'image.ts');
      const build = spawnSync('bash', [join(root, 'testkit/mte-test-guest/build-mte-guest.sh'), output], { encoding: 'utf8' });
      expect(build.status, build.stderr).toBe(0);
      expect(readFileSync(output, 'utf8')).toBe(readFileSync(image, 'utf8'));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
