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
import { vmsnap } from './support/run-cli.js';

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

  it('info without the key shows only the container (version, segments, length) and exits 2; with it, everything', async () => {
    await saved;
    const size = readFileSync(file).length;
    const text = await vmsnap('info', file);
    expect(text.code).toBe(2);
    expect(text.out).toContain(`container version 1.0`);
    expect(text.out).toContain(`(${size} bytes)`);
    expect(text.out).not.toMatch(/flash0|regions \(|vmsnap format 1/);
    expect(text.err).toMatch(/encrypted snapshot: give its key/);
    const json = await vmsnap('info', file, '--json');
    expect(json.code).toBe(2);
    const shown = JSON.parse(json.out);
    expect(Object.keys(shown).sort()).toEqual(['encrypted', 'file', 'keyNeeded', 'schemaVersion']);
    const segments = Math.ceil((size - 64) / (DEFAULT_SEGMENT_SIZE + 16));
    expect(shown.encrypted).toEqual({
      containerVersion: '1.0',
      aead: 'AES-256-GCM',
      segmentSize: DEFAULT_SEGMENT_SIZE,
      segments,
      fileBytes: String(size),
      snapshotBytes: String(size - 64 - 16 * segments),
    });
    const keyFile = join(dir, 'info.key');
    writeFileSync(keyFile, key);
    const withKey = await vmsnap('info', file, '--json', '--key-file', keyFile);
    expect(withKey.code, withKey.err).toBe(0);
    const info = JSON.parse(withKey.out);
    expect(info.encrypted).toEqual(shown.encrypted);
    expect(info.regions.map((r: { name: string }) => r.name)).toContain('flash0');
    // A cut container is a damaged file (exit 1), key or not.
    const cut = join(dir, 'info-cut.vmsnap');
    writeFileSync(cut, readFileSync(file).subarray(0, 64 + 10));
    expect((await vmsnap('info', cut)).code).toBe(1);
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
