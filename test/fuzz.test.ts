/**
 * The structure-aware fuzzer (issue 9): hostile files made from valid ones by
 * test/support/fuzz-mutations.ts, every checksum recomputed, run through both
 * readers and every command's library call, in process. Its oracles:
 *  - nothing but a VmsnapError is ever thrown (a stack trace in the CLI is a
 *    bug), and a refusal of the file is of kind invalid-input (exit 1);
 *  - no call hangs (each has a deadline);
 *  - memory stays under a cap;
 *  - one verdict per file: the file and pipe readers, verify from a file and
 *    from a pipe, restore from both and export core, which read everything,
 *    all accept the file or all refuse it; info and tags stats, which read
 *    parts, accept it when those do, and refuse it when the fault lies in a
 *    section they read.
 * Diff snapshots (format 1.1) are fuzzed too, their chain restored with the parent.
 * Seeded and bounded here; VMSNAP_FUZZ_CASES=N (and VMSNAP_FUZZ_SEED) runs longer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedVm, SimulatedVmFactory } from '../src/backends/simulated/simulated-vm.js';
import { exportCore } from '../src/forensics/core-export.js';
import { tagStatistics } from '../src/forensics/tag-stats.js';
import { SnapshotFormatError, VmsnapError } from '../src/format/errors.js';
import { ChainError, openChain } from '../src/reader/chain.js';
import { openSnapshot } from '../src/reader/open.js';
import { restoreSnapshot } from '../src/reader/restore.js';
import { describeSnapshot } from '../src/reader/snapshot-info.js';
import { readSnapshotStream } from '../src/reader/stream.js';
import { verifySnapshot } from '../src/validate/verify.js';
import { writeGuestTags } from '../src/vm/tag-copy.js';
import { saveSnapshot } from '../src/writer/save.js';
import { type FuzzCase, fuzzCase } from './support/fuzz-mutations.js';

const CASES = Number(process.env.VMSNAP_FUZZ_CASES ?? 300);
const FIRST_SEED = Number(process.env.VMSNAP_FUZZ_SEED ?? 1);
/** A call that takes longer than this on a file of a few hundred KiB is hanging. */
const DEADLINE_MS = 20_000;
/** Resident memory the whole test process may reach: the files are tiny, so growth means a declared size was believed. */
const RSS_CAP_BYTES = 1536 * 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Valid files to mutate: page sizes, codecs, chunk sizes, MTE and plain regions, vCPUs and blobs. */
async function seedFiles(diffs: Array<{ parent: string; bytes: Uint8Array }> = []): Promise<Uint8Array[]> {
  const files: Uint8Array[] = [];
  for (const [pageSize, level, pagesPerChunk] of [
    [4096, 1, 2],
    [16384, 0, 3],
    [65536, 3, 1],
  ]) {
    const vm = new SimulatedVm({ pageSize });
    vm.enableMte();
    vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: BigInt(4 * pageSize) });
    vm.addMemorySlot({ slot: 3, name: 'rom', guestAddress: 0x1000_0000n, size: BigInt(pageSize), readOnly: true });
    vm.writeMemory(0x4000_0000n, new TextEncoder().encode('tagged heap '.repeat(200)));
    vm.writeMemory(
      0x4000_0000n + BigInt(2 * pageSize),
      new Uint8Array(pageSize).map((_, i) => (i * 2654435761) >>> 24),
    );
    vm.writeMemory(0x1000_0000n, Uint8Array.of(1, 2, 3));
    writeGuestTags(
      vm,
      0x4000_0000n + BigInt(pageSize),
      new Uint8Array(pageSize / 16).map((_, i) => (i >> 2) & 15),
    );
    for (const id of [0, 1]) {
      const vcpu = vm.createVcpu(id);
      const reg = vcpu.registerIds()[id];
      vcpu.setRegister(reg, new Uint8Array(vcpu.getRegister(reg).length).fill(id + 1));
    }
    const path = join(dir, `seed-${pageSize}.vmsnap`);
    await saveSnapshot(vm, path, { level, pagesPerChunk, threads: 0, blobs: [{ name: 'uart', data: Uint8Array.of(1, 2) }] });
    const { readFileSync } = await import('node:fs');
    files.push(readFileSync(path));
    // A diff of it (format 1.1): data changed, data zeroed, tags zeroed, tags changed alone.
    vm.writeMemory(0x4000_0000n + BigInt(3 * pageSize), new TextEncoder().encode('changed page '.repeat(30)));
    vm.writeMemory(0x4000_0000n + BigInt(2 * pageSize), new Uint8Array(pageSize));
    writeGuestTags(vm, 0x4000_0000n + BigInt(pageSize), new Uint8Array(pageSize / 16));
    writeGuestTags(vm, 0x4000_0000n, new Uint8Array(pageSize / 16).fill(7));
    const parent = await openChain([path], { threads: 0 });
    const diffPath = join(dir, `seed-${pageSize}-diff.vmsnap`);
    await saveSnapshot(vm, diffPath, { level, threads: 0, diff: { parent } });
    await parent.close();
    diffs.push({ parent: path, bytes: readFileSync(diffPath) });
    vm.close();
  }
  return files;
}

interface Outcome {
  readonly reader: string;
  readonly ok: boolean;
  readonly error?: unknown;
}

function deadline<T>(what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${DEADLINE_MS} ms (a hang)`)), DEADLINE_MS);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

async function outcome(reader: string, run: () => Promise<unknown>): Promise<Outcome> {
  try {
    await deadline(reader, run());
    return { reader, ok: true };
  } catch (error) {
    return { reader, ok: false, error };
  }
}

const stream = (bytes: Uint8Array) => Readable.from([Buffer.from(bytes)]);

async function withReader(path: string, use: (reader: Awaited<ReturnType<typeof openSnapshot>>) => Promise<unknown>): Promise<void> {
  const reader = await openSnapshot(path, { threads: 0 });
  try {
    await use(reader);
  } finally {
    await reader.close();
  }
}

/** verify's report as an outcome: a refusal becomes the error the other readers throw. */
const refusedBy = (report: { ok: boolean; problems: { message: string }[] }) => {
  if (!report.ok) throw new VmsnapError('verify-refused', 'invalid-input', report.problems[0]?.message ?? '');
};

/** The readers that read a whole file: the file reader (with a diff's changed-page maps), the pipe reader, verify both ways. */
async function wholeReaderOutcomes(bytes: Uint8Array, path: string, changedPages: boolean): Promise<Outcome[]> {
  return [
    await outcome('file reader', () =>
      withReader(path, async (reader) => {
        for (const chunk of reader.chunks) await (chunk.kind === 'ram' ? reader.readRamChunk(chunk) : reader.readTagChunk(chunk));
        if (changedPages) for (const map of reader.changedPageMaps) await reader.readChangedPages(map);
        await reader.vcpus();
        await reader.blobs();
      }),
    ),
    await outcome('pipe reader', async () => {
      for await (const _event of readSnapshotStream(stream(bytes), { threads: 0 }));
    }),
    await outcome('verify', async () => refusedBy(await verifySnapshot(path, { threads: 0 }))),
    await outcome('verify -', async () => refusedBy(await verifySnapshot(stream(bytes), { threads: 0 }))),
  ];
}

/** Refusals that are not typed invalid-input errors: a crash, or the wrong kind of error. */
function untypedRefusals(outcomes: readonly Outcome[]): string[] {
  const found: string[] = [];
  for (const { reader, ok, error } of outcomes) {
    if (ok) continue;
    if (!(error instanceof VmsnapError)) found.push(`${reader} threw ${(error as Error)?.stack ?? String(error)}`);
    else if (error.kind !== 'invalid-input') found.push(`${reader} refused with kind ${error.kind} (${error.code}): ${error.message}`);
  }
  return found;
}

const say = (o: Outcome) => `${o.reader}: ${o.ok ? 'accepts' : `refuses (${(o.error as VmsnapError)?.code ?? o.error})`}`;

/** Every reader's verdict on one file. */
async function verdicts(bytes: Uint8Array, path: string): Promise<Outcome[]> {
  writeFileSync(path, bytes);
  return [
    ...(await wholeReaderOutcomes(bytes, path, false)),
    await outcome('restore', async () => (await restoreSnapshot(path, new SimulatedVmFactory(), { threads: 0 })).vm.close()),
    await outcome('restore -', async () => (await restoreSnapshot(stream(bytes), new SimulatedVmFactory(), { threads: 0 })).vm.close()),
    await outcome('info', () => withReader(path, (reader) => describeSnapshot(reader))),
    await outcome('tags stats', () => withReader(path, (reader) => tagStatistics(reader))),
    await outcome('export core', () => withReader(path, (reader) => exportCore(reader, `${path}.core`, { force: true }))),
  ];
}

/** The sections the readers that read only part of a file leave unread. */
const UNREAD: Readonly<Record<string, readonly string[]>> = { info: ['RAMC', 'TAGC'], 'tags stats': ['RAMC', 'VCPU', 'BLOB'] };

/** Where the file reader's refusal lies: a section type, or undefined for the file's structure (header, index, trailer). */
function faultSection(outcome: Outcome): string | undefined {
  return outcome.error instanceof SnapshotFormatError ? outcome.error.location.section : undefined;
}

/** What is wrong with one case's outcomes, or nothing. */
function faults(outcomes: Outcome[]): string[] {
  const found: string[] = [];
  const whole = outcomes.filter((o) => !(o.reader in UNREAD));
  const fileReader = outcomes[0];
  for (const part of outcomes.filter((o) => o.reader in UNREAD)) {
    // A part reader accepts what the whole readers accept, and refuses a fault in a section it reads; a fault
    // elsewhere it may or may not see (the index reflects every section).
    const section = faultSection(fileReader);
    if (fileReader.ok && !part.ok) found.push(`${part.reader} refuses a file every whole reader accepts: ${(part.error as Error).message}`);
    if (!fileReader.ok && part.ok && section !== undefined && !UNREAD[part.reader].includes(section)) {
      found.push(`${part.reader} accepts a file whose fault lies in ${section}, which it reads`);
    }
  }
  found.push(...untypedRefusals(outcomes));
  if (new Set(whole.map((o) => o.ok)).size > 1) found.push(`verdicts differ: ${whole.map(say).join('; ')}`);
  if (process.memoryUsage.rss() > RSS_CAP_BYTES) found.push(`resident memory ${process.memoryUsage.rss()} bytes passed the cap`);
  return found;
}

/**
 * A diff file's verdicts: the whole readers (file, pipe, verify both ways, info) must agree on the file; restoring
 * it with its parent (from the file and from a pipe) refuses what they refuse, and may refuse besides only for the
 * chain (a parent id or layout the mutation changed: a ChainError).
 */
async function diffFaults(bytes: Uint8Array, path: string, parent: string): Promise<{ refused: boolean; found: string[] }> {
  writeFileSync(path, bytes);
  const whole = await wholeReaderOutcomes(bytes, path, true);
  const chain = [
    await outcome('restore chain', async () =>
      (await restoreSnapshot(path, new SimulatedVmFactory(), { threads: 0, parents: [parent] })).vm.close(),
    ),
    await outcome('restore chain -', async () =>
      (await restoreSnapshot(stream(bytes), new SimulatedVmFactory(), { threads: 0, parents: [parent] })).vm.close(),
    ),
  ];
  const found = untypedRefusals([...whole, ...chain]);
  if (new Set(whole.map((o) => o.ok)).size > 1) found.push(`verdicts differ: ${whole.map(say).join('; ')}`);
  for (const o of chain) {
    if (!whole[0].ok && o.ok) found.push(`${o.reader} accepts a diff the readers refuse: ${whole.map(say).join('; ')}`);
    if (whole[0].ok && !o.ok && !(o.error instanceof ChainError)) found.push(`${say(o)} a diff every reader accepts`);
  }
  return { refused: !whole[0].ok, found };
}

describe('the structure-aware fuzzer', () => {
  let seeds: Uint8Array[] = [];
  const diffs: Array<{ parent: string; bytes: Uint8Array }> = [];
  beforeAll(async () => {
    seeds = await seedFiles(diffs);
  });

  it(`${Math.ceil(CASES / 3)} mutated diff snapshots: typed refusals, one verdict, chains refuse what the readers refuse`, async () => {
    const report: string[] = [];
    let refused = 0;
    const valid = await Promise.all(diffs.map((d, i) => diffFaults(d.bytes, join(dir, `valid-diff-${i}.vmsnap`), d.parent)));
    expect(valid.flatMap((v) => v.found)).toEqual([]);
    expect(valid.every((v) => !v.refused)).toBe(true);
    const cases = Math.ceil(CASES / 3);
    for (let n = 0; n < cases; n++) {
      const seed = FIRST_SEED + n;
      const base = diffs[seed % diffs.length];
      const hostile: FuzzCase = fuzzCase(base.bytes, seed);
      const result = await diffFaults(hostile.bytes, join(dir, 'diff-case.vmsnap'), base.parent);
      if (result.refused) refused++;
      for (const fault of result.found) report.push(`seed ${seed} (${hostile.description}): ${fault}`);
    }
    expect(refused).toBeGreaterThan(cases / 3);
    expect(report).toEqual([]);
  }, 600_000);

  it('finds every reader accepting the valid seed files', async () => {
    for (const [i, bytes] of seeds.entries()) {
      const outcomes = await verdicts(bytes, join(dir, `valid-${i}.vmsnap`));
      expect(outcomes.filter((o) => !o.ok).map((o) => `${o.reader}: ${(o.error as Error).message}`)).toEqual([]);
    }
  });

  it(`${CASES} mutated files from seed ${FIRST_SEED}: typed refusals only, no hang, bounded memory, one verdict per file`, async () => {
    const report: string[] = [];
    let refused = 0;
    for (let n = 0; n < CASES; n++) {
      const seed = FIRST_SEED + n;
      const hostile: FuzzCase = fuzzCase(seeds[seed % seeds.length], seed);
      const outcomes = await verdicts(hostile.bytes, join(dir, 'case.vmsnap'));
      if (!outcomes[0].ok) refused++;
      for (const fault of faults(outcomes)) report.push(`seed ${seed} (${hostile.description}): ${fault}`);
    }
    // Most mutations must produce files the readers refuse: a mutator that breaks nothing tests nothing.
    expect(refused).toBeGreaterThan(CASES / 3);
    expect(report).toEqual([]);
  }, 600_000);
});
