/** The raw-files backend: layout files, round trips through files, sources, and the conformance rows. */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  openRawFiles,
  parseByteCount,
  parseRawLayout,
  RawFilesError,
  type RawFilesVm,
  RawFilesVmFactory,
  RawLayoutError,
  readRawLayoutFile,
  resolveRawLayout,
  type TagFileLayout,
} from '../src/backends/raw-files/raw-files-vm.js';
import { guestTags, writeGuestTags } from '../src/vm/tag-copy.js';
import { TAGS_TO_GUEST, VmErrnoError } from '../src/vm/vm.js';
import { addWorkloadSlots, fillVm } from '../src/workload/fill.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { type ConformanceTarget, conformanceRows, runConformanceRow } from '../testkit/conformance/index.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-raw-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCounter = 0;
function paths(tags = true): { ram: string; tags?: string } {
  fileCounter++;
  return { ram: join(dir, `ram-${fileCounter}.img`), tags: tags ? join(dir, `tags-${fileCounter}.bin`) : undefined };
}

function layoutError(text: string): RawLayoutError {
  try {
    parseRawLayout(text);
  } catch (error) {
    if (error instanceof RawLayoutError) return error;
    throw error;
  }
  throw new Error(`accepted: ${text}`);
}

describe('layout files', () => {
  it('parse sizes and addresses, default offsets packed in file order', () => {
    const layout = parseRawLayout(
      JSON.stringify({
        pageSize: 4096,
        regions: [
          { name: 'ram', guestAddress: '0x40000000', size: '256MiB', mte: true },
          { name: 'flash0', guestAddress: 0, size: '4 MiB', readOnly: true },
          { name: 'dev', guestAddress: '0x10000000', size: 8192, fileOffset: '0x20000000', slot: 9 },
        ],
      }),
    );
    expect(layout.tagLayout).toBe('byte');
    expect(layout.regions.map((r) => [r.name, r.slot, r.fileOffset, r.mte, r.readOnly])).toEqual([
      ['ram', 0, 0n, true, false],
      ['flash0', 1, 256n * 1024n * 1024n, false, true],
      ['dev', 9, 0x2000_0000n, false, false],
    ]);
    expect(parseByteCount('1GiB', 'x')).toBe(1n << 30n);
    expect(parseByteCount('0x1000', 'x')).toBe(4096n);
  });

  it.each([
    ['not json', '{', '(file)', /not JSON/],
    ['unknown key', '{"pageSize":4096,"regions":[],"extra":1}', 'extra', /unknown key/],
    ['bad page size', '{"pageSize":8192,"regions":[{"name":"a","guestAddress":0,"size":8192}]}', 'pageSize', /not an arm64 host page size/],
    ['no regions', '{"pageSize":4096,"regions":[]}', 'regions', /no regions/],
    ['typo in region', '{"pageSize":4096,"regions":[{"name":"a","guestAddres":0,"size":4096}]}', 'regions[0].guestAddres', /unknown key/],
    ['missing size', '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0}]}', 'regions[0].size', /missing/],
    [
      'bad size unit',
      '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":"4 parsecs"}]}',
      'regions[0].size',
      /not a byte count/,
    ],
    ['unaligned size', '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":100}]}', 'regions[0].size', /multiple of 4096/],
    [
      'unaligned address',
      '{"pageSize":65536,"regions":[{"name":"a","guestAddress":"0x1000","size":"64KiB"}]}',
      'regions[0].guestAddress',
      /aligned/,
    ],
    [
      'unsafe number',
      '{"pageSize":4096,"regions":[{"name":"a","guestAddress":18446744073709551615,"size":4096}]}',
      'regions[0].guestAddress',
      /strings/,
    ],
    [
      'mte not boolean',
      '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":4096,"mte":"yes"}]}',
      'regions[0].mte',
      /true or false/,
    ],
    [
      'bad tag layout',
      '{"pageSize":4096,"tagLayout":"nibble","regions":[{"name":"a","guestAddress":0,"size":4096}]}',
      'tagLayout',
      /byte.*packed/,
    ],
    [
      'guest overlap',
      '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":8192},{"name":"b","guestAddress":4096,"size":4096}]}',
      'regions[1].guestAddress',
      /overlaps regions\[0\]/,
    ],
    [
      'file overlap',
      '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":8192},' +
        '{"name":"b","guestAddress":65536,"size":4096,"fileOffset":4096}]}',
      'regions[1].fileOffset',
      /overlaps/,
    ],
    [
      'duplicate name',
      '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":4096},{"name":"a","guestAddress":65536,"size":4096}]}',
      'regions[1].name',
      /also regions\[0\]/,
    ],
    [
      'odd file offset',
      '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":4096,"fileOffset":16}]}',
      'regions[0].fileOffset',
      /multiple of 32/,
    ],
  ])('reject %s, naming where', (_label, text, where, message) => {
    const error = layoutError(text);
    expect(error.where).toBe(where);
    expect(error.message).toMatch(message);
  });

  it('name the file when read from disk', () => {
    const file = join(dir, 'bad-layout.json');
    writeFileSync(file, '{"pageSize":4096,"regions":[{"name":"a","guestAddress":0,"size":"x"}]}');
    expect(() => readRawLayoutFile(file)).toThrow(new RegExp(`${file} regions\\[0\\]\\.size`));
    expect(() => readRawLayoutFile(join(dir, 'missing.json'))).toThrow(/cannot read/);
  });
});

describe.each(['byte', 'packed'] as TagFileLayout[])('raw files with %s tags', (tagLayout) => {
  it('restore a guest into new files and read it back as a source', () => {
    const guest = createSimulatedGuest({ sizeMiB: 8, seed: 11, flashMiB: 1 });
    const target = paths();
    const layoutPath = join(dir, `layout-${fileCounter}.json`);
    const restored = new RawFilesVmFactory({ paths: target, pageSize: 4096, tagLayout, layoutPath }).createVm();
    addWorkloadSlots(restored, guest.workload);
    const stats = fillVm(restored, guest.workload);
    restored.close();

    expect(statSync(target.ram).mode & 0o777).toBe(0o600);
    expect(statSync(target.ram).size).toBe(9 * 1024 * 1024);
    expect(statSync(target.tags!).size).toBe((9 * 1024 * 1024) / (tagLayout === 'byte' ? 16 : 32));
    // Zero pages were never written: the file is sparse.
    expect(statSync(target.ram).blocks * 512).toBeLessThan(statSync(target.ram).size * 0.8);
    expect(stats.taggedPages).toBeGreaterThan(0);

    const layout = readRawLayoutFile(layoutPath);
    expect(layout.tagLayout).toBe(tagLayout);
    expect(layout.regions.map((r) => [r.name, r.mte, r.readOnly])).toEqual([
      ['ram', true, false],
      ['flash0', false, true],
    ]);
    const source = openRawFiles({ paths: target, layout });
    expect(source.backend).toBe('raw-files');
    expect(source.mteEnabled).toBe(true);
    for (const slot of guest.vm.memorySlots()) {
      const size = Number(slot.size);
      const want = new Uint8Array(size);
      const have = new Uint8Array(size);
      guest.vm.readMemory(slot.guestAddress, want);
      source.readMemory(slot.guestAddress, have);
      expect(Buffer.from(have).equals(Buffer.from(want)), slot.name).toBe(true);
      const tagsWant = guestTags(guest.vm, slot.guestAddress, size);
      const tagsHave = guestTags(source, slot.guestAddress, size);
      expect(Buffer.from(tagsHave).equals(Buffer.from(tagsWant)), slot.name).toBe(true);
    }
    source.close();
  });

  it('store tags in the documented byte order', () => {
    const target = paths();
    const vm = new RawFilesVmFactory({ paths: target, pageSize: 4096, tagLayout }).createVm();
    vm.enableMte();
    vm.addMemorySlot({ slot: 0, name: 'a', guestAddress: 0x1000_0000n, size: 8192n });
    vm.addMemorySlot({ slot: 1, name: 'b', guestAddress: 0x2000_0000n, size: 4096n });
    const tags = Uint8Array.from({ length: 256 }, (_, i) => (i % 15) + 1);
    writeGuestTags(vm, 0x2000_0000n, tags);
    vm.close();
    const file = readFileSync(target.tags!);
    if (tagLayout === 'byte') {
      expect([...file.subarray(512, 516)]).toEqual([1, 2, 3, 4]);
    } else {
      // Region b starts at RAM offset 8192 -> tag offset 256; low nibble first.
      expect([...file.subarray(256, 258)]).toEqual([0x21, 0x43]);
    }
    expect(file.subarray(0, tagLayout === 'byte' ? 512 : 256).every((b) => b === 0)).toBe(true);
  });

  it('gather tag writes across untouched pages without zeroing pages written out of order', () => {
    const target = paths();
    const vm = new RawFilesVmFactory({ paths: target, pageSize: 4096, tagLayout }).createVm();
    vm.enableMte();
    vm.addMemorySlot({ slot: 0, name: 'a', guestAddress: 0x1000_0000n, size: 16n * 4096n });
    const page = (n: number) => 0x1000_0000n + BigInt(n) * 4096n;
    const tagsOf = (value: number) => new Uint8Array(256).fill(value);
    // Page 9 first; then 2, 5 (gap 3-4 never written) and 12 (gap 6-11 holds page 9): page 9 must keep its tags.
    for (const [n, value] of [
      [9, 9],
      [2, 2],
      [5, 5],
      [12, 12],
    ])
      writeGuestTags(vm, page(n), tagsOf(value));
    vm.close();
    const file = readFileSync(target.tags!);
    const tagAt = (granule: number) => (tagLayout === 'byte' ? file[granule] : (file[granule >> 1] >> ((granule & 1) * 4)) & 0x0f);
    const written = new Map([
      [2, 2],
      [5, 5],
      [9, 9],
      [12, 12],
    ]);
    for (let n = 0; n < 16; n++) {
      const tags = Array.from({ length: 256 }, (_, i) => tagAt(n * 256 + i));
      expect(tags, `page ${n}`).toEqual(new Array(256).fill(written.get(n) ?? 0));
    }
  });

  it('gather RAM writes across small holes, read them back before they reach the file, and keep far holes sparse', () => {
    const target = paths();
    const vm = new RawFilesVmFactory({ paths: target, pageSize: 4096, tagLayout }).createVm();
    vm.addMemorySlot({ slot: 0, name: 'a', guestAddress: 0x1000_0000n, size: 1024n * 4096n });
    const page = (n: number) => 0x1000_0000n + BigInt(n) * 4096n;
    const pageOf = (value: number) => new Uint8Array(4096).fill(value);
    // Page 9 first; then 2, 5 (pages 3-4 never written: gathered as zeros) and 12 (gap 6-11 holds page 9,
    // which must survive); 600 lies past the largest hole that is filled, so the file stays sparse there.
    const written = new Map([
      [9, 9],
      [2, 2],
      [5, 5],
      [12, 12],
      [600, 60],
    ]);
    for (const [n, value] of written) vm.writeMemory(page(n), pageOf(value));
    const back = new Uint8Array(4096);
    vm.readMemory(page(5), back);
    expect(back.every((b) => b === 5)).toBe(true);
    vm.writeMemory(page(13), pageOf(13));
    written.set(13, 13);
    vm.close();
    const file = readFileSync(target.ram);
    for (let n = 0; n < 1024; n++) {
      const bytes = file.subarray(n * 4096, (n + 1) * 4096);
      expect(
        bytes.every((b) => b === (written.get(n) ?? 0)),
        `page ${n}`,
      ).toBe(true);
    }
    expect(statSync(target.ram).blocks * 512).toBeLessThan(512 * 1024);
  });
});

describe('raw files as a source', () => {
  function makeFiles(ramBytes: number, tagBytes: number | undefined) {
    const p = paths(tagBytes !== undefined);
    writeFileSync(p.ram, new Uint8Array(ramBytes).fill(7));
    if (p.tags) writeFileSync(p.tags, new Uint8Array(tagBytes!).fill(0xf3));
    return p;
  }
  const layout = resolveRawLayout({ pageSize: 4096, regions: [{ name: 'ram', guestAddress: 0x4000_0000n, size: 8192n, mte: true }] });

  it('is read-only: writes are EBADF, TO_GUEST is EFAULT through the kernel model', () => {
    const p = makeFiles(8192, 512);
    const vm = openRawFiles({ paths: p, layout, kernelVersion: [6, 12] });
    expect(() => vm.writeMemory(0x4000_0000n, new Uint8Array(1))).toThrow(VmErrnoError);
    let code = '';
    try {
      vm.copyMteTags({ guestIpa: 0x4000_0000n, length: 4096n, flags: TAGS_TO_GUEST, reserved: [0n, 0n], buffer: new Uint8Array(256) });
    } catch (error) {
      code = (error as VmErrnoError).code;
    }
    expect(code).toBe('EFAULT');
    // Every byte of the file counts as a tag: only its low nibble.
    expect([...guestTags(vm, 0x4000_0000n, 4096).subarray(0, 3)]).toEqual([3, 3, 3]);
    vm.close();
    expect(readFileSync(p.ram).every((b) => b === 7)).toBe(true);
  });

  it('refuses files of another size than the layout, and MTE regions without a tag file', () => {
    expect(() => openRawFiles({ paths: makeFiles(4096, 512), layout })).toThrow(/has 4096 bytes but the layout needs exactly 8192/);
    expect(() => openRawFiles({ paths: makeFiles(12288, 512), layout })).toThrow(/has 12288 bytes but the layout needs exactly 8192/);
    expect(() => openRawFiles({ paths: makeFiles(8192, 100), layout })).toThrow(
      /has 100 bytes but the byte tag layout .* needs exactly 512/,
    );
    expect(() => openRawFiles({ paths: makeFiles(8192, undefined), layout })).toThrow(RawFilesError);
  });

  it('refuses to overwrite existing files unless asked', () => {
    const p = makeFiles(8192, 512);
    expect(() => new RawFilesVmFactory({ paths: p, pageSize: 4096 }).createVm()).toThrow(/exists; pass overwrite/);
    const vm = new RawFilesVmFactory({ paths: p, pageSize: 4096, overwrite: true }).createVm();
    vm.close();
    expect(statSync(p.ram).size).toBe(0);
  });
});

describe.each([
  ['byte', [6, 1]],
  ['packed', [6, 12]],
] as [TagFileLayout, [number, number]][])('conformance of raw-files (%s tags, Linux %j)', (tagLayout, kernelVersion) => {
  const target: ConformanceTarget = {
    name: `raw-files ${tagLayout}`,
    pageSize: 4096,
    kernelVersion,
    createVm: () => new RawFilesVmFactory({ paths: paths(), pageSize: 4096, tagLayout, kernelVersion }).createVm(),
    copyMteTagsFromOtherProcess: (vm, request) => (vm as RawFilesVm).fromProcess((vm as RawFilesVm).owner + 1).copyMteTags(request),
  };
  // Rows that need a running guest (the dirty log's guest stores) do not apply to files.
  const rows = conformanceRows.filter((row) => row.appliesTo?.(target) !== false);
  it.each(rows.map((row) => ({ id: row.id, row })))('$id', async ({ row }) => {
    const result = await runConformanceRow(row, target);
    expect(result.message ?? '').toBe('');
    expect(result.status).toBe('pass');
  });
});
