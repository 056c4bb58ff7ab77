/**
 * spec/reader.py, a Python reader written from spec/FORMAT.md alone and
 * sharing no code with vmsnap, must decode every test vector to exactly its
 * JSON, agree with vmsnap on a larger snapshot, and refuse a corrupted one.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSnapshot } from '../src/reader/open.js';
import { verifySnapshot } from '../src/validate/verify.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { saveSnapshot } from '../src/writer/save.js';
import { externalTool, titled } from './support/external-tool.js';
import { VECTOR_DIR, vectorNames } from './support/vectors.js';

// Debian's python3-* modules live with the system interpreter, not a pyenv one.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const READER = new URL('../spec/reader.py', import.meta.url).pathname;
const python = externalTool(
  'Python with msgpack, zstandard and xxhash',
  [PYTHON, '-c', 'import msgpack, zstandard, xxhash'],
  'apt-get install -y python3-msgpack python3-zstandard python3-xxhash',
);

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-python-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function reader(...args: string[]) {
  return spawnSync(PYTHON, [READER, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
}

describe.skipIf(python.skip)(titled('an independent Python reader built from the spec', python), () => {
  it('finds Python and its modules', () => {
    expect(python.available, python.reason).toBe(true);
  });

  it.each(vectorNames())('decodes vector %s to exactly its JSON', (name) => {
    const run = reader('check', join(VECTOR_DIR, `${name}.vmsnap`), join(VECTOR_DIR, `${name}.json`));
    expect(run.status, run.stderr).toBe(0);
  });

  it('refuses a diff snapshot whose parent is not beside it, and reads it alone as a file', () => {
    const alone = mkdtempSync(join(dir, 'alone-'));
    writeFileSync(join(alone, 'd.vmsnap'), readFileSync(join(VECTOR_DIR, '4k-mte-diff.vmsnap')));
    const run = reader('check', join(alone, 'd.vmsnap'), join(VECTOR_DIR, '4k-mte-diff.json'));
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/missing parent/);
    // The diff read alone, by info: a valid file, but not a guest.
    expect(reader('info', join(VECTOR_DIR, '4k-mte-diff.vmsnap')).status).toBe(0);
  });

  it('agrees with vmsnap on a generated 24 MiB guest, and refuses it corrupted', async () => {
    const { vm } = createSimulatedGuest({ sizeMiB: 24, seed: 5 });
    const path = join(dir, 'guest.vmsnap');
    await saveSnapshot(vm, path, { threads: 0 });
    const ours = await verifySnapshot(path, { threads: 0 });
    const run = reader('info', path);
    expect(run.status, run.stderr).toBe(0);
    const theirs = JSON.parse(run.stdout);
    const snapshot = await openSnapshot(path, { threads: 0 });
    const regions = snapshot.regions.map((r) => [r.name, Number(r.guestAddress), Number(r.size), r.mte]);
    await snapshot.close();
    expect(
      theirs.regions.map((r: { name: string; guest_address: number; size: number; mte: boolean }) => [
        r.name,
        r.guest_address,
        r.size,
        r.mte,
      ]),
    ).toEqual(regions);
    expect(theirs.ram_pages_stored).toBe(ours.stats.ramPagesStored);
    expect(theirs.tag_pages_stored).toBe(ours.stats.tagPagesStored);
    expect(theirs.vcpus).toBe(ours.stats.vcpus);
    const bytes = readFileSync(path);
    bytes[Math.floor(bytes.length / 2)] ^= 0x10;
    writeFileSync(path, bytes);
    expect(reader('info', path).status).toBe(1);
  });
});
