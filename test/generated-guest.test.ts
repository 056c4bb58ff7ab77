/** The workload guest generated on demand: the same snapshot as the guest filled into a simulated VM, in bounded memory. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { compareVms } from '../src/validate/compare.js';
import { comparingFactory } from '../src/validate/comparing-target.js';
import { TAGS_TO_GUEST } from '../src/vm/vm.js';
import { GeneratedGuest } from '../src/workload/generated-guest.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { saveSnapshot } from '../src/writer/save.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-generated-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fixed = { snapshotId: new Uint8Array(16).fill(7), createdMs: 1n, threads: 0 };

describe('GeneratedGuest', () => {
  for (const pageSize of [4096, 16384, 65536]) {
    it(`saves byte for byte what the filled simulated guest saves (${pageSize}-byte pages)`, async () => {
      const options = { sizeMiB: 8, seed: 11, pageSize };
      const filled = createSimulatedGuest(options);
      await saveSnapshot(filled.vm, join(dir, `filled-${pageSize}.vmsnap`), fixed);
      await saveSnapshot(new GeneratedGuest(options), join(dir, `generated-${pageSize}.vmsnap`), fixed);
      expect(readFileSync(join(dir, `generated-${pageSize}.vmsnap`))).toEqual(readFileSync(join(dir, `filled-${pageSize}.vmsnap`)));
      expect(compareVms(new GeneratedGuest(options), filled.vm).equal).toBe(true);
      filled.vm.close();
    });
  }

  it('tells a restored guest with one changed granule from the original', async () => {
    const guest = new GeneratedGuest({ sizeMiB: 4, seed: 2 });
    const path = join(dir, 'one.vmsnap');
    await saveSnapshot(guest, path, fixed);
    const { vm } = await restoreSnapshot(path, new SimulatedVmFactory(), { threads: 0 });
    const ram = guest.workload.regions.find((r) => r.mte)!;
    const tags = new Uint8Array(vm.pageSize / 16);
    vm.copyMteTags({ guestIpa: ram.guestAddress, length: BigInt(vm.pageSize), flags: 1n, reserved: [0n, 0n], buffer: tags });
    tags[3] = (tags[3] + 1) & 15;
    vm.copyMteTags({ guestIpa: ram.guestAddress, length: BigInt(vm.pageSize), flags: TAGS_TO_GUEST, reserved: [0n, 0n], buffer: tags });
    const comparison = compareVms(guest, vm);
    expect(comparison.equal).toBe(false);
    expect(comparison.differences[0]).toMatchObject({ kind: 'tag', guestAddress: ram.guestAddress + 48n });
    vm.close();
  });

  it('refuses to take tags in and names a range outside its regions', () => {
    const guest = new GeneratedGuest({ sizeMiB: 4, seed: 2 });
    const buffer = new Uint8Array(256);
    expect(() => guest.copyMteTags({ guestIpa: 0n, length: 4096n, flags: TAGS_TO_GUEST, reserved: [0n, 0n], buffer })).toThrow(/read-only/);
    expect(() => guest.readMemory(1n << 40n, new Uint8Array(16))).toThrow(/EFAULT/);
  });
});

describe('ComparingTarget', () => {
  it('restores nothing into memory and agrees with compareVms on a restored guest', async () => {
    const options = { sizeMiB: 6, seed: 4, pageSize: 16384 };
    const path = join(dir, 'compare.vmsnap');
    await saveSnapshot(new GeneratedGuest(options), path, fixed);
    const { vm: target } = await restoreSnapshot(path, comparingFactory(new GeneratedGuest(options)), { threads: 0 });
    const streamed = target.finish();
    const { vm } = await restoreSnapshot(path, new SimulatedVmFactory(), { threads: 0 });
    const whole = compareVms(new GeneratedGuest(options), vm);
    vm.close();
    expect(streamed).toEqual(whole);
    expect(streamed.equal).toBe(true);
  });

  it('finds a different guest: data, tags, registers, and pages the snapshot leaves zero', async () => {
    const path = join(dir, 'other.vmsnap');
    await saveSnapshot(new GeneratedGuest({ sizeMiB: 4, seed: 1 }), path, fixed);
    const { vm: target } = await restoreSnapshot(path, comparingFactory(new GeneratedGuest({ sizeMiB: 4, seed: 2 }), 100_000), {
      threads: 0,
    });
    const result = target.finish();
    expect(result.equal).toBe(false);
    expect(new Set(result.differences.map((d) => d.kind))).toEqual(new Set(['data', 'tag', 'vcpu']));
    expect(result.differences.some((d) => d.message.endsWith('(not restored)'))).toBe(true);
  });
});

describe('the writer keeps to the format limits', () => {
  it('refuses, before writing, a blob larger than the readers accept and more sections than the format allows', async () => {
    const guest = new GeneratedGuest({ sizeMiB: 4, seed: 1 });
    const big = { name: 'ram-dump', data: new Uint8Array(16 * 1024 * 1024 + 1) };
    await expect(saveSnapshot(guest, join(dir, 'big-blob.vmsnap'), { ...fixed, blobs: [big] })).rejects.toMatchObject({
      code: 'bad-save-option',
    });
    const huge = new GeneratedGuest({ sizeMiB: 600 * 1024, seed: 1 });
    await expect(saveSnapshot(huge, join(dir, 'many.vmsnap'), { ...fixed, pagesPerChunk: 1 })).rejects.toThrow(/sections pass/);
    expect(existsSync(join(dir, 'big-blob.vmsnap')) || existsSync(join(dir, 'many.vmsnap'))).toBe(false);
  });
});
