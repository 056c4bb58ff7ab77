/**
 * One verdict per file, in every reader (issue 9): for each hostile file the
 * testers found, and each rule spec/FORMAT.md now states, the file reader and
 * the pipe reader, verify from a file and from standard input, info, restore
 * from a file and from a pipe and the forensics commands (tags stats, export
 * core) refuse with the same error code, or all accept; the CLI exits 1 (or
 * 0) for each, and spec/reader.py, the independent reader, agrees.
 * Every file is forged with all checksums recomputed (test/support/forge.ts),
 * so the rule under test is what must catch it.
 *
 * Also here: the bounds on resources (blob limits, an ancillary section that
 * claims 2^40 bytes, a stalled stream ending with a typed error).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedVm, SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { exportCore } from '../src/forensics/core-export.js';
import { tagStatistics } from '../src/forensics/tag-stats.js';
import { checksum } from '../src/format/checksum.js';
import { CHUNK_HEADER_LENGTH, LIMITS, NO_REGION } from '../src/format/constants.js';
import { VmsnapError } from '../src/format/errors.js';
import { encodeSectionHeader } from '../src/format/section.js';
import { loadNativeZstd, readFrameHeader } from '../src/format/zstd.js';
import { openSnapshot } from '../src/reader/open.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { describeSnapshot } from '../src/reader/snapshot-info.js';
import { readSnapshotStream, StreamIdleError } from '../src/reader/stream.js';
import { verifySnapshot } from '../src/validate/verify.js';
import { writeGuestTags } from '../src/vm/tag-copy.js';
import { saveSnapshot } from '../src/writer/save.js';
import { externalTool } from './support/external-tool.js';
import { type ForgedSection, seal, takeApart } from './support/forge.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist/tools/vmsnap.js');
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const READER = join(ROOT, 'spec/reader.py');
const python = externalTool(
  'Python with msgpack, zstandard and xxhash',
  [PYTHON, '-c', 'import msgpack, zstandard, xxhash'],
  'apt-get install -y python3-msgpack python3-zstandard python3-xxhash',
);

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-one-verdict-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, variableMapSize: false });
const PAGE = 4096;

/**
 * Two regions (sorted by address: 0 "rom", read-only, 1 page; 1 "ram", MTE, 3 pages), two pages per chunk, a vCPU, a blob.
 * Sections: META, RAMC 0:0+1, RAMC 1:0+2, TAGC 1:0+2, RAMC 1:2+1, TAGC 1:2+1, VCPU, BLOB.
 */
async function baseSnapshot(): Promise<Uint8Array> {
  const vm = new SimulatedVm({ pageSize: PAGE });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x8000_0000n, size: 3n * 4096n });
  vm.addMemorySlot({ slot: 1, name: 'rom', guestAddress: 0x1000_0000n, size: 4096n, readOnly: true });
  vm.writeMemory(0x8000_0000n, new TextEncoder().encode('hello MTE '.repeat(300)));
  vm.writeMemory(0x1000_0000n, Uint8Array.of(1, 2, 3));
  writeGuestTags(
    vm,
    0x8000_1000n,
    new Uint8Array(256).map((_, i) => ((i >> 3) & 15) | 1),
  );
  const vcpu = vm.createVcpu(0);
  const id = vcpu.registerIds()[0];
  vcpu.setRegister(id, new Uint8Array(vcpu.getRegister(id).length).fill(7));
  const path = join(dir, 'base.vmsnap');
  await saveSnapshot(vm, path, {
    pagesPerChunk: 2,
    threads: 0,
    snapshotId: new Uint8Array(16),
    createdMs: 0n,
    blobs: [{ name: 'uart', data: Uint8Array.of(9, 9) }],
  });
  vm.close();
  return Uint8Array.from(readFileSync(path));
}

let base: Uint8Array;
beforeAll(async () => {
  base = await baseSnapshot();
});

/** The base snapshot taken apart, changed by `change`, sealed again with every checksum recomputed. */
function forge(change: (sections: ForgedSection[]) => void): Uint8Array {
  const { header, sections } = takeApart(base);
  change(sections);
  return seal(header, sections);
}

const find = (sections: ForgedSection[], type: string, n = 0) => sections.filter((s) => s.type === type)[n];
const other = (type: string, payload: Uint8Array): ForgedSection => ({ type, payload, region: NO_REGION, firstPage: 0, pageCount: 0 });

function repack(section: ForgedSection, change: (value: Record<string, unknown>) => void): void {
  const value = packr.unpack(section.payload);
  change(value);
  section.payload = packr.pack(value);
}

/** A raw or compressed chunk payload with the header fields computed from `content`. */
function chunkPayload(
  chunk: ForgedSection,
  bitmap: number,
  content: Uint8Array,
  stored: Uint8Array = content,
  encoding = stored === content ? 0 : 1,
): Uint8Array {
  const bitmapBytes = Math.ceil(chunk.pageCount / 8);
  const payload = new Uint8Array(CHUNK_HEADER_LENGTH + bitmapBytes + stored.length);
  const dv = new DataView(payload.buffer);
  dv.setUint32(0, chunk.region, true);
  dv.setUint32(4, chunk.pageCount, true);
  dv.setBigUint64(8, BigInt(chunk.firstPage), true);
  payload[16] = encoding;
  let present = 0;
  for (let b = bitmap; b; b >>= 1) present += b & 1;
  dv.setUint32(20, present, true);
  dv.setBigUint64(24, BigInt(content.length), true);
  dv.setBigUint64(32, checksum(content), true);
  payload[CHUNK_HEADER_LENGTH] = bitmap;
  payload.set(stored, CHUNK_HEADER_LENGTH + bitmapBytes);
  return payload;
}

/** Packed tags of one page (page_size / 32 bytes), nonzero, compressible. */
const tagPage = (seed: number) => new Uint8Array(PAGE / 32).map((_, i) => 0x11 * (((i >> 4) + seed) % 15) + 0x11);

/** A zstd frame of `content` whose header asks for an 8 MiB window instead of a single segment. */
function withLargeWindow(frame: Uint8Array): Uint8Array {
  const header = readFrameHeader(frame);
  const rebuilt = new Uint8Array(4 + 1 + 1 + 4);
  rebuilt.set(frame.subarray(0, 4), 0);
  rebuilt[4] = (2 << 6) | (header.checksum ? 4 : 0); // 4-byte content size, not single-segment
  rebuilt[5] = 13 << 3; // Window_Descriptor: 2^(10 + 13) = 8 MiB
  new DataView(rebuilt.buffer).setUint32(6, header.contentSize, true);
  return Buffer.concat([rebuilt, frame.subarray(header.length)]);
}

interface Case {
  readonly name: string;
  readonly bytes: () => Uint8Array;
  /** The code every reader refuses with, or null when every reader accepts. */
  readonly code: string | null;
  /** The fault lies inside a chunk's content, which info (it reads no chunk) does not look at. */
  readonly content?: boolean;
}

const emoji = (n: number) => '\u{1F600}'.repeat(n);

const CASES: Case[] = [
  {
    name: 'a section type that is not four ASCII letters',
    bytes: () => forge((s) => s.push(other('a1b2', Uint8Array.of(1, 2, 3)))),
    code: 'bad-section',
  },
  {
    name: "an index entry whose copy of the payload checksum differs from its section header's",
    bytes: () =>
      forge((s) => {
        const ram = find(s, 'RAMC', 1);
        ram.entry = { payloadChecksum: checksum(ram.payload) ^ 1n };
      }),
    code: 'bad-index',
  },
  {
    name: 'the same for a VCPU entry',
    bytes: () =>
      forge((s) => {
        const vcpu = find(s, 'VCPU');
        vcpu.entry = { payloadChecksum: checksum(vcpu.payload) ^ 1n };
      }),
    code: 'bad-index',
  },
  {
    name: 'a BLOB index entry whose region is not 0xFFFFFFFF',
    bytes: () =>
      forge((s) => {
        find(s, 'BLOB').entry = { region: 0 };
      }),
    code: 'bad-index',
  },
  {
    name: 'a duplicate vCPU id',
    bytes: () => forge((s) => s.splice(s.indexOf(find(s, 'VCPU')) + 1, 0, { ...find(s, 'VCPU') })),
    code: 'bad-metadata',
  },
  {
    name: 'a duplicate register id',
    bytes: () =>
      forge((s) =>
        repack(find(s, 'VCPU'), (vcpu) => {
          const registers = vcpu.registers as unknown[][];
          registers.push(registers[0]);
        }),
      ),
    code: 'bad-metadata',
  },
  {
    name: 'a VCPU section among the chunks',
    bytes: () =>
      forge((s) => {
        const vcpu = find(s, 'VCPU');
        s.splice(s.indexOf(vcpu), 1);
        s.splice(2, 0, vcpu);
      }),
    code: 'bad-section',
  },
  {
    name: 'a BLOB before the chunks',
    bytes: () =>
      forge((s) => {
        const blob = find(s, 'BLOB');
        s.splice(s.indexOf(blob), 1);
        s.splice(1, 0, blob);
      }),
    code: 'bad-section',
  },
  {
    name: 'a duplicate metadata key',
    bytes: () =>
      forge((s) => {
        const meta = Buffer.from(s[0].payload);
        expect(meta[0]).toBe(0xde); // a map16: append "tool" a second time and count it
        const copy = Buffer.concat([meta, packr.pack('tool'), packr.pack('forged 1.0')]);
        copy.writeUInt16BE(meta.readUInt16BE(1) + 1, 1);
        s[0].payload = copy;
      }),
    code: 'bad-metadata',
  },
  {
    name: 'a duplicate key in a region map',
    bytes: () =>
      forge((s) => {
        // A JavaScript object holds each key once: write an extra key "zzzz", then rename it "name" in the bytes.
        repack(s[0], (meta) => Object.assign((meta.regions as object[])[0], { zzzz: 'x' }));
        const bytes = Buffer.from(s[0].payload);
        bytes.write('name', bytes.indexOf('zzzz'), 'latin1');
        s[0].payload = bytes;
      }),
    code: 'bad-metadata',
  },
  {
    name: 'a nonzero reserved field in a RAMC section header',
    bytes: () =>
      forge((s) => {
        find(s, 'RAMC', 1).reserved = 1;
      }),
    code: 'bad-section',
  },
  {
    name: 'a nonzero reserved byte in a RAMC chunk header',
    bytes: () =>
      forge((s) => {
        const ram = find(s, 'RAMC', 1);
        ram.payload = Uint8Array.from(ram.payload);
        ram.payload[18] = 1;
      }),
    code: 'bad-chunk',
  },
  {
    name: 'a region named with 200 emoji (200 characters: code points, not UTF-16 units)',
    bytes: () =>
      forge((s) =>
        repack(s[0], (meta) => {
          (meta.regions as Record<string, unknown>[])[1].name = emoji(200);
        }),
      ),
    code: null,
  },
  {
    name: 'a blob named with 256 emoji',
    bytes: () => forge((s) => repack(find(s, 'BLOB'), (blob) => Object.assign(blob, { name: emoji(256) }))),
    code: null,
  },
  {
    name: 'a region named with 257 emoji',
    bytes: () =>
      forge((s) =>
        repack(s[0], (meta) => {
          (meta.regions as Record<string, unknown>[])[1].name = emoji(257);
        }),
      ),
    code: 'bad-metadata',
  },
  {
    name: 'a string that is not valid UTF-8',
    bytes: () =>
      forge((s) => {
        const blob = find(s, 'BLOB');
        repack(blob, (value) => Object.assign(value, { name: 'uart~' }));
        const bytes = Buffer.from(blob.payload);
        bytes[bytes.indexOf('uart~') + 4] = 0xff; // a lone continuation-less byte
        blob.payload = bytes;
      }),
    code: 'bad-metadata',
  },
  {
    name: 'the last chunk missing: the VCPU comes before it',
    bytes: () => forge((s) => s.splice(s.indexOf(find(s, 'TAGC', 1)), 1)),
    code: 'bad-section',
  },
  {
    name: 'the last chunk missing when the index comes',
    bytes: () => forge((s) => s.splice(s.indexOf(find(s, 'TAGC', 1)))),
    code: 'layout-mismatch',
  },
  {
    name: 'an unknown ancillary section, anywhere after META',
    bytes: () => forge((s) => s.splice(3, 0, other('noTe', Uint8Array.of(1, 2, 3)))),
    code: null,
  },
  {
    name: 'a stored page whose tags are all zero',
    bytes: () =>
      forge((s) => {
        const tags = find(s, 'TAGC');
        tags.payload = chunkPayload(tags, 0b11, Buffer.concat([new Uint8Array(PAGE / 32), tagPage(1)]));
      }),
    code: 'bad-chunk',
    content: true,
  },
  {
    name: 'compressed content that is not shorter than raw',
    bytes: () =>
      forge((s) => {
        const tags = find(s, 'TAGC');
        const content = new Uint8Array(PAGE / 32).map((_, i) => ((i * 2654435761) >>> 24) | 1);
        const frame = loadNativeZstd().compress(content, 1);
        expect(frame.length).toBeGreaterThanOrEqual(content.length);
        tags.payload = chunkPayload(tags, 0b10, content, frame);
      }),
    code: 'bad-chunk',
  },
  {
    name: 'a zstd frame followed by another byte',
    bytes: () =>
      forge((s) => {
        const tags = find(s, 'TAGC');
        const content = Buffer.concat([tagPage(1), tagPage(2)]);
        tags.payload = chunkPayload(tags, 0b11, content, Buffer.concat([loadNativeZstd().compress(content, 1), Uint8Array.of(0)]));
      }),
    code: 'decompression-failed',
    content: true,
  },
  {
    name: 'a zstd frame asking for an 8 MiB window',
    bytes: () =>
      forge((s) => {
        const tags = find(s, 'TAGC');
        const content = Buffer.concat([tagPage(1), tagPage(2)]);
        tags.payload = chunkPayload(tags, 0b11, content, withLargeWindow(loadNativeZstd().compress(content, 1)));
      }),
    code: 'decompression-failed',
    content: true,
  },
  {
    name: 'a BLOB payload over 16 MiB',
    bytes: () => forge((s) => repack(find(s, 'BLOB'), (blob) => Object.assign(blob, { data: new Uint8Array(LIMITS.blob) }))),
    code: 'limit-exceeded',
  },
  {
    name: 'BLOB payloads over 64 MiB together',
    bytes: () =>
      forge((s) => {
        const blob = find(s, 'BLOB');
        repack(blob, (value) => Object.assign(value, { data: new Uint8Array(13 << 20) }));
        s.push(...Array.from({ length: 4 }, () => ({ ...blob })));
      }),
    code: 'limit-exceeded',
  },
];

interface Verdict {
  readonly reader: string;
  /** The error code, or null when the reader accepted the file. */
  readonly code: string | null;
  readonly message?: string;
}

const stream = (bytes: Uint8Array) => Readable.from([Buffer.from(bytes)]);

async function verdict(reader: string, run: () => Promise<unknown>): Promise<Verdict> {
  try {
    const result = (await run()) as { ok?: boolean; problems?: { code: string; message: string; severity: string }[] } | undefined;
    const problem = result?.ok === false ? result.problems?.find((p) => p.severity === 'error') : undefined;
    return problem ? { reader, code: problem.code, message: problem.message } : { reader, code: null };
  } catch (error) {
    if (!(error instanceof VmsnapError)) throw error;
    return { reader, code: error.code, message: error.message };
  }
}

async function opened<T>(path: string, use: (reader: Awaited<ReturnType<typeof openSnapshot>>) => Promise<T>): Promise<T> {
  const reader = await openSnapshot(path, { threads: 0 });
  try {
    return await use(reader);
  } finally {
    await reader.close();
  }
}

/** Every library reader's verdict on `path` (holding `bytes`). */
async function libraryVerdicts(path: string, bytes: Uint8Array): Promise<Verdict[]> {
  const factory = () => new SimulatedVmFactory({ adoptRegisters: true });
  return [
    await verdict('file reader', () =>
      opened(path, async (reader) => {
        for (const chunk of reader.chunks) await (chunk.kind === 'ram' ? reader.readRamChunk(chunk) : reader.readTagChunk(chunk));
        await reader.vcpus();
        await reader.blobs();
      }),
    ),
    await verdict('pipe reader', async () => {
      for await (const _event of readSnapshotStream(stream(bytes), { threads: 0 }));
    }),
    await verdict('verify', () => verifySnapshot(path, { threads: 0 })),
    await verdict('verify -', () => verifySnapshot(stream(bytes), { threads: 0 })),
    await verdict('info', () => opened(path, (reader) => describeSnapshot(reader))),
    await verdict('restore', async () => (await restoreSnapshot(path, factory(), { threads: 0 })).vm.close()),
    await verdict('restore -', async () => (await restoreSnapshot(stream(bytes), factory(), { threads: 0 })).vm.close()),
    await verdict('tags stats', () => opened(path, (reader) => tagStatistics(reader))),
    await verdict('export core', () => opened(path, (reader) => exportCore(reader, `${path}.core`, { force: true }))),
  ];
}

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function vmsnap(args: string[], input?: Uint8Array): Run {
  const run = spawnSync(process.execPath, [CLI, ...args], {
    input,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, VMSNAP_DEBUG: '' },
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('one verdict per file: every reader, every command, the Python reader', () => {
  it.each(CASES)(
    '$name',
    async ({ bytes: make, code, content }) => {
      const bytes = make();
      const path = join(dir, 'case.vmsnap');
      writeFileSync(path, bytes);

      // The library: every reader refuses with the same code, or every reader accepts.
      const verdicts = await libraryVerdicts(path, bytes);
      const expected = verdicts.map(({ reader }) => ({ reader, code: reader === 'info' && content ? null : code }));
      expect(verdicts.map(({ reader, code }) => ({ reader, code }))).toEqual(expected);

      // The CLI: exit 1 and the library's error for each command (or exit 0), from a file and from standard input.
      const byReader = Object.fromEntries(verdicts.map((v) => [v.reader, v]));
      const status = code === null ? 0 : 1;
      for (const [args, input] of [
        [['verify', path, '--json', '-q'], undefined],
        [['verify', '-', '--json', '-q'], bytes],
      ] as const) {
        const run = vmsnap([...args], input);
        expect(run.status, `${args.join(' ')}: ${run.stderr}`).toBe(status);
        const report = JSON.parse(run.stdout);
        expect(report.problems.find((p: { severity: string }) => p.severity === 'error')?.code ?? null).toBe(code);
      }
      for (const [reader, args, input] of [
        ['info', ['info', path], undefined],
        ['restore', ['restore', path, '-q'], undefined],
        ['restore -', ['restore', '-', '-q'], bytes],
        ['tags stats', ['tags', 'stats', path], undefined],
      ] as const) {
        const run = vmsnap([...args], input);
        const want = byReader[reader];
        expect(run.status, `${args.join(' ')}: ${run.stderr}`).toBe(want.code === null ? 0 : 1);
        if (want.message) expect(run.stderr).toBe(`vmsnap: ${want.message}\n`);
      }

      // The independent reader, written from the spec.
      if (!python.skip) {
        const run = spawnSync(PYTHON, [READER, 'info', path], { encoding: 'utf8', maxBuffer: 64 << 20 });
        expect(run.status, run.stderr).toBe(status);
      }
    },
    120_000,
  );
});

describe('bounded resources in the pipe reader', () => {
  it('an ancillary section that claims 2^40 bytes is refused at its header, before anything is read or skipped', async () => {
    const { header, sections } = takeApart(base);
    const body = seal(header, sections.slice(0, 1));
    const prefix = Buffer.concat([
      body.subarray(0, 64 + 32 + sections[0].payload.length),
      encodeSectionHeader('noTe', { length: 2 ** 40, checksum: 0n }),
    ]);
    let pulled = 0;
    async function* endless() {
      yield prefix;
      for (;;) {
        pulled++;
        yield new Uint8Array(1 << 20);
      }
    }
    let failure: unknown;
    try {
      for await (const _event of readSnapshotStream(endless(), { threads: 0 }));
    } catch (error) {
      failure = error;
    }
    expect((failure as VmsnapError).code).toBe('limit-exceeded');
    expect(pulled).toBeLessThan(2);
    const run = vmsnap(['verify', '-', '--json', '-q'], Buffer.concat([prefix, new Uint8Array(1 << 20)]));
    expect(run.status).toBe(1);
    expect(JSON.parse(run.stdout).problems[0].code).toBe('limit-exceeded');
  });

  it('an unknown ancillary section within its limit is skipped piece by piece, from a stream that sends one byte at a time', async () => {
    const bytes = forge((s) => s.splice(3, 0, other('noTe', new Uint8Array(100_000).fill(5))));
    async function* bytewise() {
      for (let at = 0; at < bytes.length; at += at < 200_000 ? 997 : 1) yield bytes.subarray(at, Math.min(at + 997, bytes.length));
    }
    const events: string[] = [];
    for await (const event of readSnapshotStream(bytewise(), { threads: 0 })) events.push(event.type);
    expect(events).toContain('skipped');
  });

  it('a stream that never sends ends with a stream-idle error naming offset 0', async () => {
    const silent = new Readable({ read() {} });
    let failure: unknown;
    try {
      for await (const _event of readSnapshotStream(silent, { threads: 0, idleTimeoutMs: 50 }));
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(StreamIdleError);
    expect(failure).toMatchObject({ code: 'stream-idle', kind: 'io', offset: 0n });
    expect(silent.destroyed).toBe(true);
  });

  it('a writer that stalls after the metadata: verify and restore end with stream-idle at the offset reached', async () => {
    const sent = 64 + 32 + takeApart(base).sections[0].payload.length;
    const stalled = () => {
      const stream = new Readable({ read() {} });
      stream.push(Buffer.from(base.subarray(0, sent)));
      return stream;
    };
    const report = await verifySnapshot(stalled(), { threads: 0, idleTimeoutMs: 50 });
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toMatchObject({ code: 'stream-idle', offset: BigInt(sent) });
    await expect(restoreSnapshot(stalled(), new SimulatedVmFactory(), { threads: 0, idleTimeoutMs: 50 })).rejects.toMatchObject({
      code: 'stream-idle',
      kind: 'io',
      offset: BigInt(sent),
    });
  });

  it('vmsnap verify - --idle-timeout ends a stalled pipe with stream-idle', async () => {
    const child = spawn(process.execPath, [CLI, 'verify', '-', '--json', '-q', '--idle-timeout', '100'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, VMSNAP_DEBUG: '' },
    });
    child.stdin.write(Buffer.from(base.subarray(0, 100)));
    let stdout = '';
    child.stdout.on('data', (data) => {
      stdout += data;
    });
    const status = await new Promise<number | null>((done) => child.on('exit', done));
    child.stdin.destroy();
    expect(status).toBe(1);
    expect(JSON.parse(stdout).problems[0]).toMatchObject({ code: 'stream-idle', offset: '100' });
  });
});
