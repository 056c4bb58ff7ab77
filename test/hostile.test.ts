import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import type { SnapshotFormatError } from '../src/format/errors.js';
import { encodeSectionHeader } from '../src/format/section.js';
import { readSnapshotStream } from '../src/reader/stream.js';
import { type VerifyReport, verifyBytes, verifySnapshot } from '../src/validate/verify.js';
import { writeGuestTags } from '../src/vm/tag-copy.js';
import { saveSnapshot } from '../src/writer/save.js';
import { seal, takeApart } from './support/forge.js';

const FORMAT_CODES = [
  'bad-magic',
  'unsupported-version',
  'bad-header',
  'checksum-mismatch',
  'truncated',
  'limit-exceeded',
  'unknown-critical-section',
  'bad-section',
  'bad-chunk',
  'bad-metadata',
  'bad-index',
  'bad-trailer',
  'decompression-failed',
  'layout-mismatch',
];

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small but complete snapshot: two regions (MTE and not), zero pages, tags, a vCPU, a blob, zstd and raw chunks. */
async function smallSnapshot(): Promise<Uint8Array> {
  const vm = new SimulatedVm({ pageSize: 4096 });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x8000_0000n, size: 3n * 4096n });
  vm.addMemorySlot({ slot: 1, name: 'rom', guestAddress: 0x1000_0000n, size: 4096n, readOnly: true });
  vm.writeMemory(0x8000_0000n, new TextEncoder().encode('hello MTE '.repeat(300)));
  const noise = new Uint8Array(4096).map((_, i) => (i * 2654435761) >>> 24);
  vm.writeMemory(0x8000_2000n, noise);
  vm.writeMemory(0x1000_0000n, Uint8Array.of(1, 2, 3));
  writeGuestTags(
    vm,
    0x8000_1000n,
    new Uint8Array(256).map((_, i) => (i >> 3) & 15),
  );
  const vcpu = vm.createVcpu(0);
  const id = vcpu.registerIds()[0];
  vcpu.setRegister(id, new Uint8Array(vcpu.getRegister(id).length).fill(7));
  const path = join(dir, 'small.vmsnap');
  await saveSnapshot(vm, path, {
    pagesPerChunk: 2,
    threads: 0,
    snapshotId: new Uint8Array(16),
    createdMs: 0n,
    blobs: [{ name: 'uart', data: Uint8Array.of(9, 9) }],
  });
  // A plain Uint8Array: Buffer#slice would return a view, and the flip loops would corrupt the original.
  return Uint8Array.from(readFileSync(path));
}

function expectLocatedFailure(report: VerifyReport): void {
  expect(report.ok).toBe(false);
  expect(FORMAT_CODES).toContain(report.problems[0].code);
}

let original: Uint8Array;
beforeAll(async () => {
  original = await smallSnapshot();
});

describe('corruption is always detected', () => {
  it('the unmodified snapshot verifies, from a file and from a stream', async () => {
    const path = join(dir, 'good.vmsnap');
    writeFileSync(path, original);
    expect((await verifySnapshot(path, { threads: 0 })).problems).toEqual([]);
    expect((await verifyBytes(original, { threads: 0 })).problems).toEqual([]);
  });

  it('every single-bit flip is found by the stream reader', async () => {
    const missed: number[] = [];
    for (let bit = 0; bit < original.length * 8; bit++) {
      const bytes = original.slice();
      bytes[bit >> 3] ^= 1 << (bit & 7);
      const report = await verifyBytes(bytes, { threads: 0 });
      if (report.ok) missed.push(bit);
      else expect(FORMAT_CODES).toContain(report.problems[0].code);
    }
    expect(missed).toEqual([]);
  }, 120_000);

  it('a flip in every byte is found by the file reader', async () => {
    const path = join(dir, 'flip.vmsnap');
    for (let at = 0; at < original.length; at++) {
      const bytes = original.slice();
      bytes[at] ^= 1 << (at % 8);
      writeFileSync(path, bytes);
      const report = await verifySnapshot(path, { threads: 0 });
      if (report.ok) throw new Error(`flip at byte ${at} went unnoticed`);
      expectLocatedFailure(report);
    }
  }, 120_000);

  it('truncation at every offset is found by both readers', async () => {
    const path = join(dir, 'cut.vmsnap');
    for (let length = 0; length < original.length; length++) {
      const cut = original.subarray(0, length);
      expectLocatedFailure(await verifyBytes(cut, { threads: 0 }));
      writeFileSync(path, cut);
      expectLocatedFailure(await verifySnapshot(path, { threads: 0 }));
    }
  }, 120_000);

  it('bytes appended after the trailer are found', async () => {
    const longer = Buffer.concat([original, Buffer.from([0])]);
    expectLocatedFailure(await verifyBytes(longer, { threads: 0 }));
    const path = join(dir, 'long.vmsnap');
    writeFileSync(path, longer);
    expectLocatedFailure(await verifySnapshot(path, { threads: 0 }));
  });
});

describe('hostile lengths with valid checksums allocate nothing large', () => {
  const packr = new Packr({ useRecords: false });

  /** `codes`: what the first problem may be; the file reader checks the index first, the pipe reader meets chunks first. */
  async function expectRefusedCheaply(bytes: Uint8Array, codes?: string[]): Promise<VerifyReport[]> {
    const before = process.memoryUsage().arrayBuffers;
    const path = join(dir, 'forged.vmsnap');
    writeFileSync(path, bytes);
    const reports = [await verifyBytes(bytes, { threads: 0 }), await verifySnapshot(path, { threads: 0 })];
    for (const report of reports) {
      expectLocatedFailure(report);
      if (codes) expect(codes).toContain(report.problems[0].code);
    }
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
    return reports;
  }

  it('a section header declaring a 2^62-byte payload', async () => {
    const { header, sections } = takeApart(original);
    const file = seal(header, sections);
    // Rewrite the first chunk's section header in place, with a valid header checksum.
    const metaLength = 32 + sections[0].payload.length;
    const at = 64 + metaLength;
    const forged = encodeSectionHeader('RAMC', { length: 2 ** 62, checksum: 0n });
    const bytes = Uint8Array.from(file);
    bytes.set(forged, at);
    await expectRefusedCheaply(bytes, ['limit-exceeded', 'bad-index']);
  });

  it('metadata whose region list claims 2^32 - 1 entries', async () => {
    const { header, sections } = takeApart(original);
    // msgpack map { regions: array32 of 0xffffffff entries } with nothing after it.
    sections[0].payload = Buffer.concat([Buffer.from([0x81, 0xa7]), Buffer.from('regions'), Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])]);
    await expectRefusedCheaply(seal(header, sections), ['bad-metadata']);
  });

  it('a zstd frame declaring 4 GiB of content', async () => {
    const { header, sections } = takeApart(original);
    const ram = sections.find((s) => s.type === 'RAMC' && s.payload[16] === 1)!;
    const payload = ram.payload;
    const bitmapBytes = Math.ceil(new DataView(payload.buffer, payload.byteOffset).getUint32(4, true) / 8);
    // Single-segment frame, 8-byte content size of 2^32.
    const frame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 1, 0, 0, 0]);
    ram.payload = Buffer.concat([payload.subarray(0, 40 + bitmapBytes), frame]);
    await expectRefusedCheaply(seal(header, sections));
  });

  it('a region of 2^43 bytes needs more sections than a file may hold: refused at the metadata, in both modes', async () => {
    const { header, sections } = takeApart(original);
    const meta = packr.unpack(sections[0].payload);
    meta.regions[1].size = 2n ** 43n; // the highest region, so nothing overlaps
    sections[0].payload = new Packr({ useRecords: false, useBigInt64: true } as never).pack(meta);
    await expectRefusedCheaply(seal(header, sections), ['limit-exceeded']);
  });

  it('a region two pages longer than its chunks: the same layout fault in both modes', async () => {
    const { header, sections } = takeApart(original);
    const meta = packr.unpack(sections[0].payload);
    meta.regions[1].size = 5n * 4096n;
    sections[0].payload = new Packr({ useRecords: false, useBigInt64: true } as never).pack(meta);
    await expectRefusedCheaply(seal(header, sections), ['layout-mismatch']);
  });

  it('a read-only region marked MTE, whose tags could never be restored', async () => {
    const { header, sections } = takeApart(original);
    const meta = packr.unpack(sections[0].payload);
    meta.regions[0].mte = true; // "rom", read-only
    sections[0].payload = new Packr({ useRecords: false, useBigInt64: true } as never).pack(meta);
    const [report] = await expectRefusedCheaply(seal(header, sections), ['bad-metadata']);
    expect(report.problems[0].message).toMatch(/read-only and MTE/);
  });

  it('a vCPU whose register value claims a 4 GiB binary', async () => {
    const { header, sections } = takeApart(original);
    const vcpu = sections.find((s) => s.type === 'VCPU')!;
    vcpu.payload = Buffer.concat([
      Buffer.from([0x82, 0xa2, 0x69, 0x64, 0x00, 0xa9]),
      Buffer.from('registers'),
      Buffer.from([0x91, 0x92, 0x01, 0xc6, 0xff, 0xff, 0xff, 0xff]),
    ]);
    await expectRefusedCheaply(seal(header, sections), ['bad-metadata']);
  });

  it('an unknown critical section is refused, an unknown ancillary one skipped', async () => {
    const { header, sections } = takeApart(original);
    const withAncillary = [...sections];
    withAncillary.splice(1, 0, { type: 'noTe', payload: Uint8Array.of(1, 2, 3), region: 0xffffffff, firstPage: 0, pageCount: 0 });
    expect((await verifyBytes(seal(header, withAncillary), { threads: 0 })).problems).toEqual([]);
    const withCritical = [...sections];
    withCritical.splice(1, 0, { type: 'FUTR', payload: Uint8Array.of(1), region: 0xffffffff, firstPage: 0, pageCount: 0 });
    await expectRefusedCheaply(seal(header, withCritical), ['unknown-critical-section']);
  });

  it('a stream whose index claims 2^40 bytes and then never ends is refused before it is buffered', async () => {
    const { header, sections } = takeApart(original);
    const body = seal(header, sections);
    const indexOffset = Number(new DataView(body.buffer, body.byteOffset).getBigUint64(body.length - 32, true));
    const prefix = Buffer.concat([body.subarray(0, indexOffset), encodeSectionHeader('INDX', { length: 2 ** 40, checksum: 0n })]);
    let pulled = 0;
    async function* endless() {
      yield prefix;
      for (;;) {
        pulled++;
        yield new Uint8Array(1 << 20);
      }
    }
    const before = process.memoryUsage().arrayBuffers;
    let failure: unknown;
    try {
      for await (const _event of readSnapshotStream(endless(), { threads: 0 })) void _event;
    } catch (error) {
      failure = error;
    }
    expect((failure as SnapshotFormatError).code).toBe('bad-index');
    expect(pulled).toBeLessThan(4);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('a newer major version is refused with a clear message', async () => {
    const bytes = Uint8Array.from(original);
    bytes[8] = 2;
    const report = await verifyBytes(bytes, { threads: 0 });
    expect(report.problems[0].code).toBe('unsupported-version');
    expect(report.problems[0].message).toMatch(/2\.0 is not supported.*upgrade vmsnap/);
  });
});

describe('a failed save leaves nothing behind and damages nothing', () => {
  it('keeps an existing snapshot byte for byte and removes its temporary file', async () => {
    const target = join(dir, 'keep.vmsnap');
    writeFileSync(target, original);
    const vm = new SimulatedVm({ pageSize: 4096 });
    vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0n, size: 64n * 4096n });
    let reads = 0;
    const readMemory = (address: bigint, destination: Uint8Array) => {
      if (++reads > 3) throw new Error('host memory went away');
      vm.readMemory(address, destination);
    };
    // Both read paths fail: the writer uses the asynchronous one where a backend has it.
    const failing = Object.assign(Object.create(Object.getPrototypeOf(vm)), vm, {
      readMemory,
      readMemoryAsync: async (address: bigint, destination: Uint8Array) => readMemory(address, destination),
    });
    await expect(saveSnapshot(failing, target, { pagesPerChunk: 4, threads: 0, force: true })).rejects.toThrow('host memory went away');
    expect(readFileSync(target)).toEqual(Buffer.from(original));
    expect(readdirSync(dir).filter((name) => name.includes('.tmp-'))).toEqual([]);
    expect(existsSync(target)).toBe(true);
  });
});
