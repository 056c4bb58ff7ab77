/**
 * "Inputs are exact" (issue 9): raw files must have exactly the sizes their
 * layout implies; a region's `mte` is honoured both ways (save from raw files,
 * restore --layout-out); raw files keep no vCPU registers and say so; values
 * the format allows but KVM cannot map (slot ids, high guest addresses) go
 * into raw files, and only a KVM-shaped VM refuses them, naming the limit; the
 * raw layout is documented in docs/raw-layout.md.
 *
 * CLI cases spawn the built `node dist/tools/vmsnap.js` (npm run build first),
 * as test/cli.test.ts does. Snapshots with unusual values are made with the
 * library from a VmSource written here.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRawLayout, RawFilesVmFactory, rawFileSizes, resolveRawLayout } from '../src/backends/raw-files/raw-files-vm.js';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { DEFAULT_IPA_BITS, kvmMemslotLimit } from '../src/kernel-model/memslot-table.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { KVM_REG_ARM_FW, KVM_REG_ARM64, KVM_REG_SIZE_U64, PC_ID } from '../src/vm/arm64-registers.js';
import { type CopyMteTagsRequest, type SourceSlot, type VcpuSource, VmErrnoError, type VmSource } from '../src/vm/vm.js';
import { saveSnapshot } from '../src/writer/save.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist/tools/vmsnap.js');
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-exact-'));
const at = (name: string) => join(dir, name);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KiB = 1024;
const PAGE = 4096;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function vmsnap(...args: string[]): Run {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, VMSNAP_DEBUG: '' } });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function expectOk(run: Run): void {
  expect(run.status, run.stderr).toBe(0);
}

/** One error line, no stack trace. */
function expectOneLineError(run: Run, status: number, ...patterns: RegExp[]): void {
  expect(run.status, run.stderr).toBe(status);
  const lines = run.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  for (const pattern of patterns) expect(lines[0]).toMatch(pattern);
}

const same = (a: string, b: string) => Buffer.from(readFileSync(a)).equals(readFileSync(b));
const infoRegions = (snapshot: string) => {
  const run = vmsnap('info', snapshot, '--json');
  expectOk(run);
  return JSON.parse(run.stdout).regions;
};

/** Bytes every other page, zero pages between: some pages are left out of the snapshot, as real guests' are. */
function ramPattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) if (Math.floor(i / PAGE) % 2 === 0) bytes[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return bytes;
}

/** One tag per byte, 1..15, for `granules` granules. */
function tagPattern(granules: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: granules }, (_, i) => ((i * 5 + seed) % 15) + 1);
}

function packed(tags: Uint8Array): Uint8Array {
  const out = new Uint8Array(tags.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = tags[2 * i] | (tags[2 * i + 1] << 4);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// A VmSource with whatever the format allows: any slot id, any guest address, vCPU registers KVM lists but the model lacks.

interface GuestRegion {
  readonly slot: number;
  readonly name: string;
  readonly guestAddress: bigint;
  readonly size: bigint;
}

/** KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1: a firmware register a real KVM lists and the simulated vCPU does not know. */
const WORKAROUND_1_ID = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_FW | 1n;

class TestGuest implements VmSource {
  readonly backend = 'test-guest';
  readonly pageSize = PAGE;
  readonly mteEnabled = true;

  constructor(
    private readonly regions: readonly GuestRegion[],
    private readonly vcpuCount = 0,
  ) {}

  memorySlots(): readonly SourceSlot[] {
    return this.regions.map((r) => ({ ...r, readOnly: false }));
  }

  private place(address: bigint): { region: GuestRegion; offset: number } {
    const region = this.regions.find((r) => address >= r.guestAddress && address < r.guestAddress + r.size);
    if (!region) throw new VmErrnoError('EFAULT', 'test guest', `0x${address.toString(16)} is in no region`);
    return { region, offset: Number(address - region.guestAddress) };
  }

  readMemory(guestAddress: bigint, destination: Uint8Array): void {
    const { region, offset } = this.place(guestAddress);
    destination.set(ramPattern(Number(region.size), region.slot % 251).subarray(offset, offset + destination.length));
  }

  copyMteTags(request: CopyMteTagsRequest): number {
    const { region, offset } = this.place(request.guestIpa);
    const tags = tagPattern(Number(region.size) / 16, region.slot % 13);
    request.buffer!.set(tags.subarray(offset / 16, offset / 16 + Number(request.length) / 16));
    return Number(request.length);
  }

  vcpus(): readonly VcpuSource[] {
    return Array.from({ length: this.vcpuCount }, (_, id) => ({
      id,
      registerIds: () => [PC_ID, WORKAROUND_1_ID],
      getRegister: (register: bigint) => {
        const value = new Uint8Array(8);
        new DataView(value.buffer).setBigUint64(0, register === PC_ID ? 0x4008_0000n + BigInt(id) * 4n : 1n, true);
        return value;
      },
    }));
  }
}

async function snapshotOf(name: string, regions: readonly GuestRegion[], vcpus = 0): Promise<string> {
  const path = at(name);
  await saveSnapshot(new TestGuest(regions, vcpus), path, { threads: 0, force: true });
  return path;
}

/** Restores `snapshot` into raw files named after `prefix`; returns their paths. */
function restoreRaw(snapshot: string, prefix: string, ...extra: string[]) {
  const files = { ram: at(`${prefix}.ram`), tags: at(`${prefix}.tags`), layout: at(`${prefix}.json`) };
  const run = vmsnap('restore', snapshot, '--ram-out', files.ram, '--tags-out', files.tags, '--layout-out', files.layout, ...extra);
  expectOk(run);
  return { ...files, run };
}

/**
 * snapshot -> raw files -> snapshot -> raw files: both snapshots describe the same regions (info --json), and the
 * raw files and layouts of both restores are byte for byte the same.
 */
function expectExactRoundTrip(snapshot: string, prefix: string): { ram: string; tags: string; layout: string } {
  const first = restoreRaw(snapshot, `${prefix}-1`);
  const again = at(`${prefix}-again.vmsnap`);
  expectOk(vmsnap('save', '--ram', first.ram, '--tags', first.tags, '--layout', first.layout, '-o', again, '-q'));
  expect(infoRegions(again)).toEqual(infoRegions(snapshot));
  const second = restoreRaw(again, `${prefix}-2`);
  for (const key of ['ram', 'tags', 'layout'] as const) expect(same(first[key], second[key]), key).toBe(true);
  return first;
}

// ---------------------------------------------------------------------------------------------------------------------

describe('1. every raw input file has exactly the size its layout implies', () => {
  const ramBytes = 64 * KiB;
  const tags = tagPattern(ramBytes / 16, 1);
  const files = {
    ram: at('in.ram'),
    byteTags: at('in-byte.tags'),
    packedTags: at('in-packed.tags'),
    longRam: at('in-long.ram'),
    shortRam: at('in-short.ram'),
  };
  writeFileSync(files.ram, ramPattern(ramBytes, 1));
  writeFileSync(files.byteTags, tags);
  writeFileSync(files.packedTags, packed(tags));
  writeFileSync(files.longRam, ramPattern(2 * ramBytes, 1));
  writeFileSync(files.shortRam, ramPattern(ramBytes / 2, 1));
  const region = ['--region', 'ram:0x40000000:64KiB:mte'];

  it('refuses a byte-layout tag file read as packed (twice too long), naming the file, its size and the size expected', () => {
    const out = at('wrong-packed.vmsnap');
    const run = vmsnap('save', '--ram', files.ram, '--tags', files.byteTags, '--tag-layout', 'packed', ...region, '-o', out, '-q');
    expectOneLineError(run, 1, new RegExp(files.byteTags), /4096 bytes/, /packed tag layout/, /exactly 2048/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a packed tag file read as byte (half too short)', () => {
    const run = vmsnap('save', '--ram', files.ram, '--tags', files.packedTags, '--tag-layout', 'byte', ...region, '-o', at('x.vmsnap'));
    expectOneLineError(run, 1, new RegExp(files.packedTags), /2048 bytes/, /exactly 4096/);
  });

  it('refuses a RAM file longer or shorter than its regions', () => {
    for (const [ram, size] of [
      [files.longRam, 2 * ramBytes],
      [files.shortRam, ramBytes / 2],
    ] as const) {
      const run = vmsnap('save', '--ram', ram, '--tags', files.byteTags, ...region, '-o', at('x.vmsnap'));
      expectOneLineError(run, 1, new RegExp(ram), new RegExp(`${size} bytes`), new RegExp(`exactly ${ramBytes}\\b`));
    }
  });

  it('counts a layout file offset: the RAM file ends where the last region ends, the tag file is its shadow', () => {
    const layout = at('offset-layout.json');
    writeFileSync(
      layout,
      JSON.stringify({
        pageSize: PAGE,
        tagLayout: 'packed',
        regions: [{ name: 'ram', guestAddress: '0x40000000', size: '32KiB', mte: true, fileOffset: '32KiB' }],
      }),
    );
    // 64 KiB of RAM file and 2 KiB of packed tags: exactly right for a region at file offset 32 KiB.
    expectOk(vmsnap('save', '--ram', files.ram, '--tags', files.packedTags, '--layout', layout, '-o', at('offset.vmsnap'), '-q'));
    const run = vmsnap('save', '--ram', files.longRam, '--tags', files.packedTags, '--layout', layout, '-o', at('x.vmsnap'));
    expectOneLineError(run, 1, /131072 bytes/, /exactly 65536/);
    expect(rawFileSizes(parseRawLayout(readFileSync(layout, 'utf8')))).toEqual({ ram: 65536n, tags: 2048n });
  });

  it('accepts files of exactly the right size and keeps their tags', () => {
    const snapshot = at('packed-ok.vmsnap');
    expectOk(vmsnap('save', '--ram', files.ram, '--tags', files.packedTags, '--tag-layout', 'packed', ...region, '-o', snapshot, '-q'));
    const back = restoreRaw(snapshot, 'packed-ok', '--tag-layout', 'packed');
    expect(same(back.ram, files.ram)).toBe(true);
    expect(same(back.tags, files.packedTags)).toBe(true);
  });

  it('refuses a tag file when no region is marked mte: its tags would be dropped', () => {
    const run = vmsnap('save', '--ram', files.ram, '--tags', files.byteTags, '--region', 'ram:0x40000000:64KiB', '-o', at('x.vmsnap'));
    expectOneLineError(run, 2, /no region is marked mte/);
  });
});

describe('2. mte is what the layout says, and restore --layout-out writes what the snapshot says', () => {
  // In address order, as a restore lays files out: flash0 (read-only), ram (tagged), dev (not tagged), quiet (tagged, all tags 0).
  const regions = [
    { name: 'flash0', guestAddress: 0n, size: 16n * 1024n, readOnly: true },
    { name: 'ram', guestAddress: 0x4000_0000n, size: 64n * 1024n, mte: true },
    { name: 'dev', guestAddress: 0x5000_0000n, size: 16n * 1024n, mte: false },
    { name: 'quiet', guestAddress: 0x6000_0000n, size: 16n * 1024n, mte: true },
  ];
  const layout = resolveRawLayout({ pageSize: PAGE, tagLayout: 'byte', regions });
  const end = layout.regions.reduce((max, r) => (r.fileOffset + r.size > max ? r.fileOffset + r.size : max), 0n);
  const sizes = { ram: end, tags: end / 16n };
  const files = { ram: at('mixed.ram'), tags: at('mixed.tags'), layout: at('mixed.json') };
  writeFileSync(files.ram, ramPattern(Number(sizes.ram), 2));
  // Tags everywhere but in quiet: dev's bytes in the tag file must not become tags.
  const tagFile = tagPattern(Number(sizes.tags), 2);
  const quiet = layout.regions[3];
  tagFile.fill(0, Number(quiet.fileOffset / 16n), Number((quiet.fileOffset + quiet.size) / 16n));
  writeFileSync(files.tags, tagFile);
  writeFileSync(
    files.layout,
    JSON.stringify({
      pageSize: PAGE,
      regions: regions.map((r) => ({ ...r, guestAddress: `0x${r.guestAddress.toString(16)}`, size: String(r.size) })),
    }),
  );
  const snapshot = at('mixed.vmsnap');

  it('save keeps no tags for a region with mte: false, and keeps an all-zero tagged region tagged', () => {
    expectOk(vmsnap('save', '--ram', files.ram, '--tags', files.tags, '--layout', files.layout, '-o', snapshot, '-q'));
    const info = infoRegions(snapshot);
    expect(info.map((r: { name: string; mte: boolean }) => [r.name, r.mte])).toEqual([
      ['flash0', false],
      ['ram', true],
      ['dev', false],
      ['quiet', true],
    ]);
    expect(info.find((r: { name: string }) => r.name === 'dev').tagBytes).toBe('0');
  });

  it('--region without :mte is a region without tags, as in a layout file', () => {
    const viaRegions = at('mixed-regions.vmsnap');
    const run = vmsnap(
      'save',
      '--ram',
      files.ram,
      '--tags',
      files.tags,
      ...['--region', 'flash0:0:16KiB:ro', '--region', 'ram:0x40000000:64KiB:mte'],
      ...['--region', 'dev:0x50000000:16KiB', '--region', 'quiet:0x60000000:16KiB:mte'],
      '-o',
      viaRegions,
      '-q',
    );
    expectOk(run);
    const info = infoRegions(viaRegions);
    expect(info.find((r: { name: string }) => r.name === 'dev')).toMatchObject({ mte: false, tagBytes: '0' });
    expect(info).toEqual(infoRegions(snapshot));
  });

  it('save -> restore --layout-out -> save round-trips exactly', () => {
    const first = expectExactRoundTrip(snapshot, 'mixed');
    const written = parseRawLayout(readFileSync(first.layout, 'utf8'));
    expect(written.regions.map((r) => [r.name, r.mte, r.readOnly])).toEqual(regions.map((r) => [r.name, r.mte ?? false, !!r.readOnly]));
    // The restored RAM file is the input; the tag file is the input's with the untagged regions' bytes left out (zero).
    expect(same(first.ram, files.ram)).toBe(true);
    const expectedTags = Uint8Array.from(tagFile);
    for (const r of layout.regions.filter((region) => !region.mte))
      expectedTags.fill(0, Number(r.fileOffset / 16n), Number((r.fileOffset + r.size) / 16n));
    expect(Buffer.from(readFileSync(first.tags)).equals(Buffer.from(expectedTags))).toBe(true);
  });

  it('a read-only region cannot be marked mte', () => {
    expect(() =>
      resolveRawLayout({ pageSize: PAGE, regions: [{ name: 'rom', guestAddress: 0n, size: 4096n, mte: true, readOnly: true }] }),
    ).toThrow(/read-only region cannot keep tags/);
  });
});

describe('3. raw files keep no vCPU registers', () => {
  const regions = [{ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: 64n * 1024n }];

  it('restore --ram-out skips the vCPUs and says so, in text and JSON', async () => {
    const snapshot = await snapshotOf('vcpus.vmsnap', regions, 2);
    const json = restoreRaw(snapshot, 'vcpus-json', '--json').run;
    const summary = JSON.parse(json.stdout).summary;
    expect(summary).toMatchObject({ vcpus: 0, vcpusSkipped: 2 });
    const text = restoreRaw(snapshot, 'vcpus-text').run;
    expect(text.stdout).toMatch(/0 vCPUs \(2 not restored: raw files keep no registers\)/);
    // The simulated VM still restores them, registers the model does not list included.
    const simulated = vmsnap('restore', snapshot, '--json');
    expectOk(simulated);
    expect(JSON.parse(simulated.stdout).summary).toMatchObject({ vcpus: 2, vcpusSkipped: 0 });
  });

  it('the raw-files target takes the vCPUs, keeps no register and lists none', async () => {
    const snapshot = await snapshotOf('vcpus-lib.vmsnap', regions, 2);
    const factory = new RawFilesVmFactory({ paths: { ram: at('vcpus-lib.ram'), tags: at('vcpus-lib.tags') } });
    const { vm } = await restoreSnapshot(snapshot, factory, { threads: 0 });
    expect(vm.vcpus()).toEqual([]);
    expect(vm.vcpusNotKept).toBe(2);
    // KVM's VM-level rule still holds: MTE cannot be enabled once vCPUs exist.
    expect(() => vm.enableMte()).toThrow(/KVM_ENABLE_CAP: EINVAL/);
    vm.close();
  });
});

describe('4. values the format allows but KVM cannot map', () => {
  const size = 64n * 1024n;
  const highSlot = { slot: 2 ** 31, name: 'high', guestAddress: (1n << 52n) - size, size };
  const low = { slot: 3, name: 'low', guestAddress: 0x4000_0000n, size };

  it('a slot id of 2^31 and a region ending at 2^52 restore into raw files and round-trip exactly', async () => {
    const snapshot = await snapshotOf('high.vmsnap', [low, highSlot]);
    const first = expectExactRoundTrip(snapshot, 'high');
    const layout = JSON.parse(readFileSync(first.layout, 'utf8'));
    expect(layout.regions.map((r: { slot: number; guestAddress: string }) => [r.slot, r.guestAddress])).toEqual([
      [3, String(low.guestAddress)],
      [2 ** 31, String(highSlot.guestAddress)],
    ]);
  });

  it('a region just below 2^53 restores into raw files', async () => {
    const snapshot = await snapshotOf('higher.vmsnap', [{ slot: 5, name: 'higher', guestAddress: (1n << 53n) - size, size }]);
    expectExactRoundTrip(snapshot, 'higher');
  });

  it('the simulated VM keeps KVM limits and names the one broken; a 52-bit address is within them', async () => {
    const slotRun = vmsnap('restore', await snapshotOf('sim-slot.vmsnap', [low, highSlot]));
    expectOneLineError(slotRun, 3, /KVM_SET_USER_MEMORY_REGION: EINVAL/, /slot id 2147483648 is outside KVM's memslot id range 0\.\.32766/);
    const addressRun = vmsnap(
      'restore',
      await snapshotOf('sim-53.vmsnap', [{ slot: 1, name: 'r', guestAddress: (1n << 53n) - size, size }]),
    );
    expectOneLineError(addressRun, 3, /KVM_SET_USER_MEMORY_REGION: EFAULT/, /beyond the VM's 52-bit IPA space/);
    expectOk(vmsnap('restore', await snapshotOf('sim-52.vmsnap', [{ ...highSlot, slot: 1 }])));
  });

  it('explains KVM refusals: a default-type VM has a 40-bit IPA space; slot ids stop at 32766', () => {
    const vm = new SimulatedVm({ pageSize: PAGE });
    expect(() => vm.addMemorySlot({ ...highSlot, slot: 1 })).toThrow(/beyond the VM's 40-bit IPA space/);
    expect(() => vm.addMemorySlot({ ...low, slot: 32767 })).toThrow(/outside KVM's memslot id range 0\.\.32766/);
    vm.close();
    // The KVM backend adds the same reason to the kernel's bare errno.
    expect(kvmMemslotLimit({ ...highSlot, slot: 1 }, DEFAULT_IPA_BITS)).toMatch(/40-bit IPA space/);
    expect(kvmMemslotLimit(highSlot, DEFAULT_IPA_BITS)).toMatch(/memslot id range/);
    expect(kvmMemslotLimit(low, DEFAULT_IPA_BITS)).toBeUndefined();
  });
});

describe('5. the raw layout is documented', () => {
  const doc = join(ROOT, 'docs/raw-layout.md');

  it('docs/raw-layout.md names every field, and README points to it', () => {
    const text = readFileSync(doc, 'utf8');
    for (const field of ['pageSize', 'tagLayout', 'regions', 'name', 'slot', 'guestAddress', 'size', 'mte', 'readOnly', 'fileOffset'])
      expect(text, field).toContain(`\`${field}\``);
    expect(text).toMatch(/`byte`/);
    expect(text).toMatch(/`packed`/);
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toContain('(docs/raw-layout.md)');
  });

  it('every JSON example in it is a valid layout', () => {
    const blocks = [...readFileSync(doc, 'utf8').matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]);
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) expect(() => parseRawLayout(block), block).not.toThrow();
  });
});
