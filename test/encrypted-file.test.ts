/**
 * Encrypted snapshot files (spec/STORE.md section 8): saved with a key, every
 * reader (random access and pipe) reads them as the plain file, identical in
 * every page and granule; without the key nothing of the snapshot is
 * readable (not even its region names); a wrong key, a cut at a segment
 * boundary, or swapped segments are refused.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_SEGMENT_SIZE, SealedFileError } from '../src/io/sealed-file.js';
import { openSnapshot } from '../src/reader/open.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { readSnapshotStream } from '../src/reader/stream.js';
import { ComparingTarget } from '../src/validate/comparing-target.js';
import { GeneratedGuest } from '../src/workload/generated-guest.js';
import { saveSnapshot } from '../src/writer/save.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-sealed-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const GUEST = { sizeMiB: 24, seed: 21, flashMiB: 1 };
const key = randomBytes(32);
const file = join(dir, 'guest.vmsnap');
const saved = saveSnapshot(new GeneratedGuest(GUEST), file, { threads: 0, encryptionKey: key });

async function code(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SealedFileError);
  return (error as SealedFileError).code;
}

async function drain(events: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of events);
}

describe('encrypted snapshot files', () => {
  it('restore from the file and from a pipe gives back every page and granule', async () => {
    await saved;
    const fromFile = await restoreSnapshot(
      file,
      { backend: 'comparison', createVm: () => new ComparingTarget(new GeneratedGuest(GUEST)) },
      { key },
    );
    expect(fromFile.vm.finish().equal).toBe(true);
    const events = readSnapshotStream(createReadStream(file), { key, threads: 0 });
    let chunks = 0;
    for await (const event of events) if (event.type === 'chunk') chunks++;
    const reader = await openSnapshot(file, { key, threads: 0 });
    expect(chunks).toBe(reader.chunks.length);
    await reader.close();
  });

  it('without the key nothing of the snapshot is readable', async () => {
    await saved;
    const bytes = readFileSync(file);
    // The plain snapshot's magic and its region names appear nowhere.
    expect(bytes.includes(Buffer.from('VMSNAPND'))).toBe(false);
    expect(bytes.includes(Buffer.from('flash0'))).toBe(false);
    expect(bytes.includes(Buffer.from([0x89, 0x56, 0x4d, 0x53]))).toBe(false);
    expect(await code(openSnapshot(file, { threads: 0 }))).toBe('snapshot-encrypted');
    expect(await code(drain(readSnapshotStream(createReadStream(file), { threads: 0 })))).toBe('snapshot-encrypted');
    expect(await code(openSnapshot(file, { key: randomBytes(32), threads: 0 }))).toBe('sealed-file-invalid');
  });

  it('a file cut at a segment boundary, or with two segments swapped, is refused', async () => {
    await saved;
    const bytes = readFileSync(file);
    const step = DEFAULT_SEGMENT_SIZE + 16;
    expect(bytes.length).toBeGreaterThan(64 + 2 * step);
    const cut = join(dir, 'cut.vmsnap');
    writeFileSync(cut, bytes.subarray(0, 64 + 2 * step));
    expect(await code(openSnapshot(cut, { key, threads: 0 }))).toBe('sealed-file-invalid');
    expect(await code(drain(readSnapshotStream(createReadStream(cut), { key, threads: 0 })))).toBe('sealed-file-invalid');
    const swapped = Buffer.from(bytes);
    bytes.copy(swapped, 64, 64 + step, 64 + 2 * step);
    bytes.copy(swapped, 64 + step, 64, 64 + step);
    const swappedFile = join(dir, 'swapped.vmsnap');
    writeFileSync(swappedFile, swapped);
    expect(await code(openSnapshot(swappedFile, { key, threads: 0 }))).toBe('sealed-file-invalid');
  });
});
