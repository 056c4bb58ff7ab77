/**
 * The shipped MTE core process (the executable the lab runs so that the real
 * kernel writes a core with tags) is the built source: by the source's
 * SHA-256 everywhere, and byte for byte where aarch64-linux-gnu-as and -ld exist.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { MTE_CORE_PROCESS_EXECUTABLE, MTE_CORE_PROCESS_SOURCE_SHA256 } from '../testkit/mte-core-process/mte-core-process-image.js';
import { externalTool, titled } from './support/external-tool.js';

const root = resolve(import.meta.dirname, '..');
const folder = join(root, 'testkit/mte-core-process');
const linker = externalTool('aarch64-linux-gnu-ld', ['aarch64-linux-gnu-ld', '--version'], 'apt-get install -y binutils-aarch64-linux-gnu');

describe('MTE core process executable', () => {
  test('was built from the current mte-core-process.S (run testkit/mte-core-process/build-mte-core-process.sh after editing it)', () => {
    expect(
      createHash('sha256')
        .update(readFileSync(join(folder, 'mte-core-process.S')))
        .digest('hex'),
    ).toBe(MTE_CORE_PROCESS_SOURCE_SHA256);
  });

  test('is a static arm64 ELF executable entered in its one loadable segment', () => {
    const elf = Buffer.from(MTE_CORE_PROCESS_EXECUTABLE);
    expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(elf[4]).toBe(2); // ELFCLASS64
    expect(elf.readUInt16LE(16)).toBe(2); // ET_EXEC
    expect(elf.readUInt16LE(18)).toBe(183); // EM_AARCH64
    expect(elf.readBigUInt64LE(24)).toBeGreaterThan(0x400000n);
  });

  test.skipIf(linker.skip)(titled('matches the bytes aarch64-linux-gnu-as and -ld make of the source today', linker), () => {
    expect(linker.available, linker.reason).toBe(true);
    const work = mkdtempSync(join(tmpdir(), 'vmsnap-core-process-'));
    try {
      const output = join(work, 'image.ts');
      const build = spawnSync('bash', [join(folder, 'build-mte-core-process.sh'), output], { encoding: 'utf8' });
      expect(build.status, build.stderr).toBe(0);
      expect(readFileSync(output, 'utf8')).toBe(readFileSync(join(folder, 'mte-core-process-image.ts'), 'utf8'));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
