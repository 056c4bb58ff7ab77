/**
 * `npm run bench`: vmsnap against the zstd CLI and a plain copy, in one run,
 * on the same bytes.
 *
 *   1. generate a guest (default 1 GiB of RAM plus a 4 MiB flash) as raw
 *      files: RAM image, tag file (one tag per granule), layout JSON;
 *   2. save:    vmsnap save (raw files -> snapshot)  vs  zstd -1 -T2 on RAM+tags  vs  cp;
 *   3. restore: vmsnap restore (snapshot -> raw files)  vs  zstd -d;
 *   4. check that the restored files equal the originals.
 *
 * Every step is a child process timed from outside, with its peak RSS from
 * GNU time, run --repeat times (median time, highest RSS). Before every run
 * the step's previous output is deleted and `sync` runs, untimed; vmsnap fsyncs what it writes, and zstd and cp are timed
 * up to a `sync` after them, so every step pays for making its output durable.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { filesEqual } from './compare-files.js';
import { checkTools, measureInterleaved, type StepPlan } from './measure.js';
import { type RawGuestFiles, writeRawGuest } from './raw-guest.js';

const MiB = 1024 * 1024;
const TARGETS = { timeRatio: 1.25, peakRssBytes: 256 * MiB, tagPercentOfRam: 1 } as const;
const VMSNAP = fileURLToPath(new URL('../tools/vmsnap.js', import.meta.url));

interface BenchOptions {
  size: string;
  seed: string;
  pageSize: string;
  threads?: string;
  repeat: string;
  dir?: string;
  keep?: boolean;
  json?: boolean;
}

function parseMiB(text: string): number {
  const match = /^(\d+)\s*(MiB|M|GiB|G)$/i.exec(text.trim());
  if (!match) throw new Error(`--size: "${text}" is not a size like 1GiB or 512MiB`);
  return Number(match[1]) * (/^g/i.test(match[2]) ? 1024 : 1);
}

function quote(path: string): string {
  return `'${path.replace(/'/g, `'\\''`)}'`;
}

interface Snapshot {
  fileBytes: number;
  tagBytes: number;
  guestBytes: number;
}

/** Size and tag bytes of the snapshot, as `vmsnap info --json` reports them. */
function snapshotFacts(path: string): Snapshot {
  const info = JSON.parse(execFileSync('node', [VMSNAP, 'info', path, '--json'], { encoding: 'utf8', maxBuffer: 16 * MiB }));
  return { fileBytes: info.fileBytes, tagBytes: info.totals.tagBytes, guestBytes: info.totals.guestBytes };
}

function rate(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

async function main(): Promise<void> {
  const program = new Command('bench')
    .description('vmsnap save/restore against zstd and cp on a generated guest with MTE tags')
    .option('--size <size>', 'guest RAM (1GiB, 4GiB, 512MiB)', '1GiB')
    .option('--seed <n>', 'workload seed', '1')
    .option('--page-size <bytes>', 'host page size', '4096')
    .option('--threads <n>', 'vmsnap worker threads (default: one per core)')
    .option('--dir <path>', 'work directory (default: a new one under the system temp directory)')
    .option('--repeat <n>', 'runs per step; the median time is reported, and the highest peak RSS', '3')
    .option('--keep', 'keep the generated and written files')
    .option('--json', 'print the results as JSON')
    .parse(process.argv);
  const options = program.opts<BenchOptions>();
  checkTools();
  const sizeMiB = parseMiB(options.size);
  const directory = mkdtempSync(join(options.dir ?? tmpdir(), 'vmsnap-bench-'));
  const log = (line: string) => (options.json ? process.stderr : process.stdout).write(`${line}\n`);
  try {
    const started = performance.now();
    const files = writeRawGuest(directory, { sizeMiB, seed: Number(options.seed), pageSize: Number(options.pageSize) });
    log(`generated ${sizeMiB} MiB guest as raw files in ${((performance.now() - started) / 1000).toFixed(1)} s (${directory})`);
    const result = runSteps(directory, files, options);
    if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else printResult(result);
    if (!result.restoredIdentical) process.exitCode = 1;
  } finally {
    if (!options.keep) rmSync(directory, { recursive: true, force: true });
  }
}

function runSteps(directory: string, files: RawGuestFiles, options: BenchOptions) {
  const o = (name: string) => join(directory, name);
  const p = (name: string) => quote(o(name));
  const threads = options.threads === undefined ? '' : ` --threads ${Number(options.threads)}`;
  const vmsnap = `node ${quote(VMSNAP)}`;
  const inputs = `${quote(files.ram)} ${quote(files.tags)}`;
  // vmsnap fsyncs what it writes; `sync` gives zstd and cp the same durability, so disk writeback is billed to everyone.
  const plan: StepPlan[] = [
    {
      name: 'vmsnap save',
      outputs: [o('guest.vmsnap')],
      command:
        `${vmsnap} save --ram ${quote(files.ram)} --tags ${quote(files.tags)} ` +
        `--layout ${quote(files.layout)} -o ${p('guest.vmsnap')} -q${threads}`,
    },
    { name: 'zstd -1 -T2', outputs: [o('guest.zst')], command: `zstd -1 -T2 -q -c ${inputs} > ${p('guest.zst')} && sync` },
    { name: 'cp', outputs: [o('copy')], command: `mkdir ${p('copy')} && cp ${inputs} ${p('copy')}/ && sync` },
    {
      name: 'vmsnap restore',
      outputs: [o('out.ram'), o('out.tags')],
      command: `${vmsnap} restore ${p('guest.vmsnap')} --ram-out ${p('out.ram')} --tags-out ${p('out.tags')} -q${threads}`,
    },
    { name: 'zstd -d', outputs: [o('unzstd.bin')], command: `zstd -d -q -c ${p('guest.zst')} > ${p('unzstd.bin')} && sync` },
  ];
  const steps = measureInterleaved(plan, Number(options.repeat));
  const byName = (name: string) => steps.find((s) => s.name === name)!;
  const snapshot = snapshotFacts(join(directory, 'guest.vmsnap'));
  const dataBytes = Number(files.ramBytes + files.tagFileBytes);
  const zstdBytes = statSync(join(directory, 'guest.zst')).size;
  const restoredIdentical = filesEqual(files.ram, join(directory, 'out.ram')) && filesEqual(files.tags, join(directory, 'out.tags'));
  const saveRatio = byName('vmsnap save').ms / byName('zstd -1 -T2').ms;
  const restoreRatio = byName('vmsnap restore').ms / byName('zstd -d').ms;
  const peak = Math.max(byName('vmsnap save').maxRssBytes, byName('vmsnap restore').maxRssBytes);
  const tagPercentOfRam = (snapshot.tagBytes / Number(files.ramBytes)) * 100;
  return {
    guest: {
      ramBytes: Number(files.ramBytes),
      tagFileBytes: Number(files.tagFileBytes),
      pageSize: Number(options.pageSize),
      threads: options.threads === undefined ? availableParallelism() : Number(options.threads),
    },
    repeat: Number(options.repeat),
    steps: steps.map((s) => ({ ...s, mbPerSecond: rate(dataBytes, s.ms) })),
    snapshot: { ...snapshot, compressionRatio: dataBytes / snapshot.fileBytes, tagPercentOfRam },
    zstd: { fileBytes: zstdBytes, compressionRatio: dataBytes / zstdBytes },
    ratios: { saveVsZstd: saveRatio, restoreVsZstd: restoreRatio },
    targets: {
      saveWithin125: saveRatio <= TARGETS.timeRatio,
      restoreWithin125: restoreRatio <= TARGETS.timeRatio,
      peakRssUnder256MiB: peak < TARGETS.peakRssBytes,
      tagsUnder1PercentOfRam: tagPercentOfRam < TARGETS.tagPercentOfRam,
    },
    peakRssBytes: peak,
    restoredIdentical,
  };
}

type BenchResult = ReturnType<typeof runSteps>;

function printResult(r: BenchResult): void {
  const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
  const yes = (ok: boolean) => (ok ? 'met' : 'MISSED');
  console.log(
    `data: ${mib(r.guest.ramBytes)} RAM + ${mib(r.guest.tagFileBytes)} tag file (one tag per byte), ` +
      `${r.guest.pageSize}-byte pages, vmsnap threads ${r.guest.threads}`,
  );
  console.log(`step             time (median of ${r.repeat})  MB/s   peak RSS   all runs`);
  for (const s of r.steps)
    console.log(
      `${s.name.padEnd(16)} ${(s.ms / 1000).toFixed(2).padStart(6)} s ${s.mbPerSecond.toFixed(0).padStart(13)}  ` +
        `${mib(s.maxRssBytes).padStart(10)}   ${s.runsMs.map((ms) => (ms / 1000).toFixed(2)).join(' ')}`,
    );
  console.log(
    `snapshot ${mib(r.snapshot.fileBytes)} (${r.snapshot.compressionRatio.toFixed(2)}:1), ` +
      `zstd ${mib(r.zstd.fileBytes)} (${r.zstd.compressionRatio.toFixed(2)}:1)`,
  );
  console.log(
    `tag data in the snapshot: ${r.snapshot.tagBytes} bytes = ${r.snapshot.tagPercentOfRam.toFixed(3)}% of RAM ` +
      `(target < 1%: ${yes(r.targets.tagsUnder1PercentOfRam)})`,
  );
  console.log(`save    vmsnap/zstd time ${r.ratios.saveVsZstd.toFixed(2)}x (target <= 1.25x: ${yes(r.targets.saveWithin125)})`);
  console.log(`restore vmsnap/zstd time ${r.ratios.restoreVsZstd.toFixed(2)}x (target <= 1.25x: ${yes(r.targets.restoreWithin125)})`);
  console.log(`vmsnap peak RSS ${mib(r.peakRssBytes)} (target < 256 MiB: ${yes(r.targets.peakRssUnder256MiB)})`);
  console.log(`restored files identical to the originals: ${r.restoredIdentical ? 'yes' : 'NO'}`);
}

await main();
