/**
 * `npm run bench`: vmsnap against the zstd CLI and a plain copy, in one run,
 * on the same bytes.
 *
 *   1. generate a guest (default 1 GiB of RAM plus a 4 MiB flash) as raw
 *      files: RAM image, tag file (one tag per granule), layout JSON;
 *   2. save:    vmsnap save (raw files -> snapshot)  vs  zstd -1 -T2 on RAM+tags  vs  cp;
 *   3. restore: vmsnap restore (snapshot -> raw files)  vs  zstd -d;
 *   4. check after every restore that the restored files equal the originals;
 *   5. unless --no-commands: every other command once, on the same guest and
 *      snapshot, for its peak RSS (bench/command-rss.ts).
 *
 * With --sizes it does this for each size in turn and prints vmsnap's peak
 * memory across them: it must stay flat, whatever the guest size. A size
 * whose files would not fit the free disk is skipped, with a message.
 *
 * Every step is a child process timed from outside, with its peak RSS from
 * GNU time, run --repeat times (median time, highest RSS). Before every run
 * the step's previous output is deleted and `sync` runs, untimed; outputs no
 * later step reads are deleted right after their run, so that a 16 GiB guest
 * needs about 2.7 times its size free rather than 6; vmsnap fsyncs what it writes, and zstd and cp are timed
 * up to a `sync` after them, so every step pays for making its output durable.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { type CommandRss, measureCommands, printCommandRss } from './command-rss.js';
import { filesEqual } from './compare-files.js';
import { checkTools, measureInterleaved, type StepPlan } from './measure.js';
import { type RawGuestFiles, writeRawGuest } from './raw-guest.js';

const MiB = 1024 * 1024;
/** The targets of the performance issue: vmsnap against the native tools on the same bytes, in the same run. */
const TARGETS = { saveVsZstd: 0.8, restoreVsZstd: 0.8, storedVsCopy: 1.2, peakRssBytes: 128 * MiB, tagPercentOfRam: 1 } as const;
const VMSNAP = fileURLToPath(new URL('../tools/vmsnap.js', import.meta.url));

interface BenchOptions {
  size?: string;
  sizes?: string;
  seed: string;
  pageSize: string;
  threads?: string;
  repeat: string;
  dir?: string;
  keep?: boolean;
  json?: boolean;
  commands: boolean;
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
  // 64-bit values come as decimal strings (docs/api.md, "JSON").
  return { fileBytes: Number(info.fileBytes), tagBytes: Number(info.totals.tagBytes), guestBytes: Number(info.totals.guestBytes) };
}

/**
 * Bytes a size needs free at most. The speed steps: the raw files, the
 * snapshot and zstd's output (kept: later steps read them), and the largest
 * output of one run (a copy of the raw files, or zstd -d's), since every
 * other output is removed after its run. Snapshots are taken as a quarter of
 * the data (the generated guest compresses about 5:1). The commands: the raw
 * files, the snapshot, the files some commands keep for later ones (a second
 * snapshot, a diff, a sparse core, a store) and one more output.
 */
function diskNeeded(sizeMiB: number): { steps: number; commands: number } {
  const data = sizeMiB * MiB * (1 + 1 / 16);
  return { steps: Math.ceil(data * (2 + 2 / 4)), commands: Math.ceil(data * (1 + 5 / 4 + 1 / 2)) };
}

function freeBytes(directory: string): number {
  const stats = statfsSync(directory);
  return stats.bavail * stats.bsize;
}

function rate(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

async function main(): Promise<void> {
  const program = new Command('bench')
    .description('vmsnap save/restore against zstd and cp on a generated guest with MTE tags')
    .option('--size <size>', 'guest RAM (1GiB, 4GiB, 512MiB); default 1GiB')
    .option('--sizes <list>', 'several guest sizes, one after another, e.g. 1GiB,4GiB,16GiB: peak memory must stay flat')
    .option('--seed <n>', 'workload seed', '1')
    .option('--page-size <bytes>', 'host page size', '4096')
    .option('--threads <n>', 'vmsnap worker threads (default: one per core)')
    .option('--dir <path>', 'work directory (default: a new one under the system temp directory)')
    .option('--repeat <n>', 'runs per step; the median time is reported, and the highest peak RSS', '3')
    .option('--keep', 'keep the generated and written files')
    .option('--json', 'print the results as JSON')
    .option('--no-commands', 'skip the peak RSS of every other command (bench/command-rss.ts)')
    .parse(process.argv);
  const options = program.opts<BenchOptions>();
  checkTools();
  if (options.size && options.sizes) throw new Error('give --size or --sizes, not both');
  const sizes = (options.sizes ?? options.size ?? '1GiB').split(',').map(parseMiB);
  const base = options.dir ?? tmpdir();
  const log = (line: string) => (options.json ? process.stderr : process.stdout).write(`${line}\n`);
  const results: (BenchResult & { commands?: { size: string; commands: CommandRss[] } })[] = [];
  for (const sizeMiB of sizes) {
    const needed = diskNeeded(sizeMiB);
    const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
    const skip = (what: string, bytes: number) =>
      log(`skipping ${what} at ${sizeMiB} MiB: it needs about ${gib(bytes)} free in ${base}, there are ${gib(freeBytes(base))}`);
    if (needed.steps > freeBytes(base)) {
      skip('every step', needed.steps);
      continue;
    }
    const directory = mkdtempSync(join(base, 'vmsnap-bench-'));
    try {
      const started = performance.now();
      const files = writeRawGuest(directory, { sizeMiB, seed: Number(options.seed), pageSize: Number(options.pageSize) });
      log(`generated ${sizeMiB} MiB guest as raw files in ${((performance.now() - started) / 1000).toFixed(1)} s (${directory})`);
      const result: BenchResult & { commands?: { size: string; commands: CommandRss[] } } = runSteps(directory, files, options);
      if (!options.json) printResult(result);
      // zstd's output served the speed steps only; the commands need its room.
      rmSync(join(directory, 'guest.zst'), { force: true });
      if (options.commands && needed.commands > freeBytes(base)) skip('the commands', needed.commands);
      else if (options.commands) {
        const size = sizeMiB % 1024 ? `${sizeMiB} MiB` : `${sizeMiB / 1024} GiB`;
        result.commands = { size, commands: runCommands(directory, files, sizeMiB, options) };
      }
      results.push(result);
      if (!result.restoredIdentical) process.exitCode = 1;
    } finally {
      if (!options.keep) rmSync(directory, { recursive: true, force: true });
    }
  }
  if (options.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    if (results.length > 1) printRssCurve(results);
    printCommandRss(results.flatMap((r) => (r.commands ? [r.commands] : [])));
  }
}

/** Every other command's peak RSS, once each, on this size's guest and snapshot (bench/command-rss.ts). */
function runCommands(directory: string, files: RawGuestFiles, sizeMiB: number, options: BenchOptions): CommandRss[] {
  const threads = options.threads === undefined ? '' : ` --threads ${Number(options.threads)}`;
  const context = {
    vmsnap: `node ${quote(VMSNAP)}`,
    ram: quote(files.ram),
    tags: quote(files.tags),
    layout: quote(files.layout),
    size: `${sizeMiB}MiB`,
    ramBytes: sizeMiB * MiB,
    snapshot: quote(join(directory, 'guest.vmsnap')),
    threads,
  };
  return measureCommands(directory, context, quote);
}

function runSteps(directory: string, files: RawGuestFiles, options: BenchOptions) {
  const o = (name: string) => join(directory, name);
  const p = (name: string) => quote(o(name));
  const threads = options.threads === undefined ? '' : ` --threads ${Number(options.threads)}`;
  const vmsnap = `node ${quote(VMSNAP)}`;
  const inputs = `${quote(files.ram)} ${quote(files.tags)}`;
  // Every restore's output is compared with the originals, then removed with the other outputs no later step reads.
  let restoredIdentical = true;
  const checkRestored = () => {
    restoredIdentical &&= filesEqual(files.ram, o('out.ram')) && filesEqual(files.tags, o('out.tags'));
  };
  // vmsnap fsyncs what it writes; `sync` gives zstd and cp the same durability, so disk writeback is billed to everyone.
  const plan: StepPlan[] = [
    {
      name: 'vmsnap save -0',
      outputs: [o('stored.vmsnap')],
      discard: true,
      phasesFile: o('phases-save-0.json'),
      command:
        `${vmsnap} save --level 0 --ram ${quote(files.ram)} --tags ${quote(files.tags)} ` +
        `--layout ${quote(files.layout)} -o ${p('stored.vmsnap')} -q${threads}`,
    },
    {
      name: 'vmsnap save',
      outputs: [o('guest.vmsnap')],
      phasesFile: o('phases-save.json'),
      command:
        `${vmsnap} save --ram ${quote(files.ram)} --tags ${quote(files.tags)} ` +
        `--layout ${quote(files.layout)} -o ${p('guest.vmsnap')} -q${threads}`,
    },
    { name: 'zstd -1 -T2', outputs: [o('guest.zst')], command: `zstd -1 -T2 -q -c ${inputs} > ${p('guest.zst')} && sync` },
    { name: 'cp', outputs: [o('copy')], discard: true, command: `mkdir ${p('copy')} && cp ${inputs} ${p('copy')}/ && sync` },
    {
      name: 'vmsnap restore',
      outputs: [o('out.ram'), o('out.tags')],
      afterRun: checkRestored,
      discard: true,
      phasesFile: o('phases-restore.json'),
      command: `${vmsnap} restore ${p('guest.vmsnap')} --ram-out ${p('out.ram')} --tags-out ${p('out.tags')} -q${threads}`,
    },
    { name: 'zstd -d', outputs: [o('unzstd.bin')], discard: true, command: `zstd -d -q -c ${p('guest.zst')} > ${p('unzstd.bin')} && sync` },
  ];
  const steps = measureInterleaved(plan, Number(options.repeat));
  const byName = (name: string) => steps.find((s) => s.name === name)!;
  const snapshot = snapshotFacts(join(directory, 'guest.vmsnap'));
  const dataBytes = Number(files.ramBytes + files.tagFileBytes);
  const zstdBytes = statSync(join(directory, 'guest.zst')).size;
  const saveRatio = byName('vmsnap save').ms / byName('zstd -1 -T2').ms;
  const restoreRatio = byName('vmsnap restore').ms / byName('zstd -d').ms;
  const storedRatio = byName('vmsnap save -0').ms / byName('cp').ms;
  const peak = Math.max(...steps.filter((s) => s.name.startsWith('vmsnap')).map((s) => s.maxRssBytes));
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
    ratios: { saveVsZstd: saveRatio, restoreVsZstd: restoreRatio, storedVsCopy: storedRatio },
    targets: {
      saveVsZstd: saveRatio <= TARGETS.saveVsZstd,
      restoreVsZstd: restoreRatio <= TARGETS.restoreVsZstd,
      storedVsCopy: storedRatio <= TARGETS.storedVsCopy,
      peakRss: peak < TARGETS.peakRssBytes,
      tagsUnder1PercentOfRam: tagPercentOfRam < TARGETS.tagPercentOfRam,
    },
    peakRssBytes: peak,
    restoredIdentical,
  };
}

type BenchResult = ReturnType<typeof runSteps>;

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');

function printResult(r: BenchResult): void {
  console.log(
    `data: ${mib(r.guest.ramBytes)} RAM + ${mib(r.guest.tagFileBytes)} tag file (one tag per byte), ` +
      `${r.guest.pageSize}-byte pages, vmsnap threads ${r.guest.threads}`,
  );
  console.log(`step              time (median of ${r.repeat})  MB/s   CPU (user+sys)   peak RSS   all runs`);
  for (const s of r.steps)
    console.log(
      `${s.name.padEnd(17)} ${(s.ms / 1000).toFixed(2).padStart(6)} s ${s.mbPerSecond.toFixed(0).padStart(13)}  ` +
        `${(s.cpuMs / 1000).toFixed(2).padStart(12)} s  ${mib(s.maxRssBytes).padStart(10)}   ` +
        s.runsMs.map((ms) => (ms / 1000).toFixed(2)).join(' '),
    );
  printPhases(r);
  console.log(
    `snapshot ${mib(r.snapshot.fileBytes)} (${r.snapshot.compressionRatio.toFixed(2)}:1), ` +
      `zstd ${mib(r.zstd.fileBytes)} (${r.zstd.compressionRatio.toFixed(2)}:1)`,
  );
  console.log(
    `tag data in the snapshot: ${r.snapshot.tagBytes} bytes = ${r.snapshot.tagPercentOfRam.toFixed(3)}% of RAM ` +
      `(target < 1%: ${verdict(r.targets.tagsUnder1PercentOfRam)})`,
  );
  const ratio = (what: string, value: number, target: number, ok: boolean) =>
    console.log(`${what} ${value.toFixed(2)}x (target <= ${target}x: ${verdict(ok)})`);
  ratio('save          vmsnap / zstd -1 -T2   ', r.ratios.saveVsZstd, TARGETS.saveVsZstd, r.targets.saveVsZstd);
  ratio('restore       vmsnap / zstd -d       ', r.ratios.restoreVsZstd, TARGETS.restoreVsZstd, r.targets.restoreVsZstd);
  ratio('stored save   vmsnap -0 / cp + sync  ', r.ratios.storedVsCopy, TARGETS.storedVsCopy, r.targets.storedVsCopy);
  console.log(`vmsnap peak RSS ${mib(r.peakRssBytes)} (target < ${mib(TARGETS.peakRssBytes)}: ${verdict(r.targets.peakRss)})`);
  console.log(`restored files identical to the originals: ${r.restoredIdentical ? 'yes' : 'NO'}`);
}

/**
 * Where vmsnap's time goes, per step (median run). Calling-thread phases add
 * up to at most the wall time; pool phases (reading, compression,
 * decompression) are summed over the calls in flight and can pass it.
 */
function printPhases(r: BenchResult): void {
  console.log("where vmsnap's time goes (ms; reading and (de)compression summed over the calls in flight):");
  for (const s of r.steps) {
    if (!s.phases) continue;
    const parts = Object.entries(s.phases)
      .sort((a, b) => b[1] - a[1])
      .map(([phase, ms]) => `${phase} ${ms.toFixed(0)}`);
    console.log(`  ${s.name.padEnd(15)} ${parts.join(', ') || '(no phases: the chunk work ran on worker threads)'}`);
  }
}

/** vmsnap's peak memory per guest size: flat means bounded by the chunk, not by the guest. */
function printRssCurve(results: readonly BenchResult[]): void {
  console.log('\nvmsnap peak RSS by guest size (save, restore):');
  for (const r of results) {
    const of = (name: string) => mib(r.steps.find((s) => s.name === name)!.maxRssBytes);
    console.log(`  ${mib(r.guest.ramBytes).padStart(12)}: ${of('vmsnap save').padStart(10)} ${of('vmsnap restore').padStart(10)}`);
  }
}

await main();
