/**
 * The bench's per-command peak memory (issue 10: every command under 128 MiB,
 * and flat from 1 to 16 GiB). After the speed steps, on the same generated
 * guest and snapshot, each command that reads or writes a whole snapshot runs
 * once under GNU time (measure.ts) and its peak RSS is recorded; across sizes
 * the table shows whether it grows with the guest.
 *
 * COMMANDS is the list: one entry per command, in the order they run (a few
 * make the files later ones read: a second snapshot, a diff, a core, a store).
 * To cover a new command, add an entry. Everything is written in the bench
 * directory (TMPDIR included, for the demo's temporary snapshot) and removed.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { measure } from './measure.js';

const MiB = 1024 * 1024;
export const RSS_CAP_BYTES = 128 * MiB;
/**
 * A command is flat when its peak RSS at the largest size measured is less
 * than this above the smallest. GC timing moves a Node process's peak by a
 * few MiB between runs; anything that keeps a few bytes per guest page (an
 * array of page states, a list of changed pages) adds 4 bytes x 262144 pages
 * = 1 MiB per GiB, so 16 MiB is passed by such a structure between 1 and
 * 16 GiB, and by one of about 20 bytes per page between 1 and 4 GiB.
 */
export const FLAT_GROWTH_BYTES = 16 * MiB;

/** What a command line may refer to: the bench's files and the guest size. */
export interface CommandContext {
  /** `node .../vmsnap.js` */
  readonly vmsnap: string;
  /** A path in the bench directory, shell-quoted. */
  readonly path: (name: string) => string;
  /** The raw files the guest was generated as, shell-quoted. */
  readonly ram: string;
  readonly tags: string;
  readonly layout: string;
  /** The guest RAM size, e.g. 1024MiB (demo, save --sim, migrate send). */
  readonly size: string;
  /** The guest RAM size in bytes. */
  readonly ramBytes: number;
  /** The snapshot the speed steps saved (guest.vmsnap). */
  readonly snapshot: string;
  /** ` --threads N` when the bench was given --threads, else empty. */
  readonly threads: string;
}

export interface CommandCase {
  readonly name: string;
  readonly command: (c: CommandContext) => string;
  /** Files (bench-directory names) the command writes, removed after it; those later commands read go in `keeps`. */
  readonly outputs?: readonly string[];
  /** Files this command writes that later commands read: removed at the end. */
  readonly keeps?: readonly string[];
}

/** Guest RAM starts at 1 GiB in the generated layout (src/workload/workload-layout.ts). */
const RAM_IPA = '0x40000000';

export const COMMANDS: readonly CommandCase[] = [
  {
    name: 'save raw -> file',
    command: (c) => `${c.vmsnap} save --ram ${c.ram} --tags ${c.tags} --layout ${c.layout} -o ${c.path('c-save.vmsnap')} -q${c.threads}`,
    outputs: ['c-save.vmsnap'],
  },
  {
    name: 'save raw -> pipe',
    command: (c) =>
      `${c.vmsnap} save --ram ${c.ram} --tags ${c.tags} --layout ${c.layout} -o - -q${c.threads} | cat > ${c.path('c-pipe.vmsnap')}`,
    outputs: ['c-pipe.vmsnap'],
  },
  {
    name: 'save --sim (seed 2)',
    command: (c) => `${c.vmsnap} save --sim --size ${c.size} --seed 2 -o ${c.path('sim2.vmsnap')} -q${c.threads}`,
    keeps: ['sim2.vmsnap'],
  },
  {
    name: 'save --sim --parent (diff)',
    command: (c) =>
      `${c.vmsnap} save --sim --size ${c.size} --seed 2 --parent ${c.snapshot} --parent-chain ${c.snapshot} ` +
      `-o ${c.path('diff.vmsnap')} -q${c.threads}`,
    keeps: ['diff.vmsnap'],
  },
  {
    name: 'restore file -> raw',
    command: (c) => `${c.vmsnap} restore ${c.snapshot} --ram-out ${c.path('c-out.ram')} --tags-out ${c.path('c-out.tags')} -q${c.threads}`,
    outputs: ['c-out.ram', 'c-out.tags'],
  },
  {
    name: 'restore pipe -> raw',
    command: (c) =>
      `cat ${c.snapshot} | ${c.vmsnap} restore - --ram-out ${c.path('c-out.ram')} --tags-out ${c.path('c-out.tags')} -q${c.threads}`,
    outputs: ['c-out.ram', 'c-out.tags'],
  },
  {
    name: 'restore diff -> raw',
    command: (c) =>
      `${c.vmsnap} restore ${c.path('diff.vmsnap')} --chain ${c.snapshot},${c.path('diff.vmsnap')} ` +
      `--ram-out ${c.path('c-out.ram')} --tags-out ${c.path('c-out.tags')} -q${c.threads}`,
    outputs: ['c-out.ram', 'c-out.tags'],
  },
  {
    name: 'restore --compare-sim',
    command: (c) => `${c.vmsnap} restore ${c.path('sim2.vmsnap')} --compare-sim -q${c.threads}`,
  },
  { name: 'verify FILE', command: (c) => `${c.vmsnap} verify ${c.snapshot} -q${c.threads} > /dev/null` },
  { name: 'verify -', command: (c) => `cat ${c.snapshot} | ${c.vmsnap} verify - -q${c.threads} > /dev/null` },
  { name: 'info', command: (c) => `${c.vmsnap} info ${c.snapshot} > /dev/null` },
  { name: 'show', command: (c) => `${c.vmsnap} show ${c.snapshot} > /dev/null` },
  { name: 'tags stats', command: (c) => `${c.vmsnap} tags stats ${c.snapshot} > /dev/null` },
  {
    // A range tool: 256 MiB of tags is 1 M lines of text, minutes at 4 GiB for the whole RAM, and says the same.
    name: 'tags dump (256 MiB)',
    command: (c) => `${c.vmsnap} tags dump ${c.snapshot} --ipa ${RAM_IPA} --length ${Math.min(c.ramBytes, 256 * MiB)} > /dev/null`,
  },
  { name: 'tags diff', command: (c) => `${c.vmsnap} tags diff ${c.snapshot} ${c.path('sim2.vmsnap')} > /dev/null` },
  { name: 'tags diff --list', command: (c) => `${c.vmsnap} tags diff ${c.snapshot} ${c.path('sim2.vmsnap')} --list > /dev/null` },
  { name: 'tags map', command: (c) => `${c.vmsnap} tags map ${c.snapshot} -o ${c.path('c-map.svg')}`, outputs: ['c-map.svg'] },
  {
    name: 'tags map --against',
    command: (c) => `${c.vmsnap} tags map ${c.path('sim2.vmsnap')} --against ${c.snapshot} -o ${c.path('c-map.svg')}`,
    outputs: ['c-map.svg'],
  },
  { name: 'tags allocs', command: (c) => `${c.vmsnap} tags allocs ${c.snapshot} > /dev/null` },
  { name: 'tags search', command: (c) => `${c.vmsnap} tags search ${c.snapshot} --string vmsnap > /dev/null` },
  { name: 'scan pointers', command: (c) => `${c.vmsnap} scan pointers ${c.snapshot} -q > /dev/null` },
  {
    name: 'check-pointer', // Exit 4 is its answer for a tag mismatch, not a failure.
    command: (c) => `${c.vmsnap} check-pointer ${c.snapshot} 0x0a000000${RAM_IPA.slice(2)} > /dev/null || test $? -eq 4`,
  },
  {
    name: 'export core',
    command: (c) => `${c.vmsnap} export core ${c.snapshot} -o ${c.path('guest.core')} > /dev/null`,
    keeps: ['guest.core'],
  },
  {
    name: 'import core',
    command: (c) => `${c.vmsnap} import core ${c.path('guest.core')} -o ${c.path('c-import.vmsnap')} > /dev/null`,
    outputs: ['c-import.vmsnap'],
  },
  {
    name: 'flatten (diff chain)',
    command: (c) => `${c.vmsnap} flatten ${c.snapshot} ${c.path('diff.vmsnap')} -o ${c.path('c-flat.vmsnap')} -q${c.threads}`,
    outputs: ['c-flat.vmsnap'],
  },
  {
    name: 'push (directory store)',
    command: (c) => `${c.vmsnap} push ${c.snapshot} ${c.path('store')} --key-file ${c.path('store.key')} --name g > /dev/null`,
    keeps: ['store'],
  },
  {
    name: 'pull',
    command: (c) => `${c.vmsnap} pull ${c.path('store')}/g --key-file ${c.path('store.key')} -o ${c.path('c-pull.vmsnap')} -q${c.threads}`,
    outputs: ['c-pull.vmsnap'],
  },
  {
    name: 'store verify',
    command: (c) => `${c.vmsnap} store verify ${c.path('store')} --key-file ${c.path('store.key')} -q > /dev/null`,
  },
  {
    name: 'migrate send | receive',
    command: (c) =>
      `${c.vmsnap} migrate send --sim --size ${c.size} --to - -q | ${c.vmsnap} migrate receive -o ${c.path('c-mig.vmsnap')} -q`,
    outputs: ['c-mig.vmsnap'],
  },
  { name: 'demo', command: (c) => `${c.vmsnap} demo --size ${c.size} -q${c.threads} > /dev/null` },
];

export interface CommandRss {
  readonly name: string;
  readonly command: string;
  readonly maxRssBytes: number;
  readonly ms: number;
  /** Why it did not run to the end (its exit and standard error), when it failed. */
  readonly error?: string;
}

/**
 * Runs every command once on the bench directory's guest and snapshot and
 * returns its peak RSS. A command that fails is reported (not thrown), so one
 * regression does not hide the others' figures.
 */
export function measureCommands(directory: string, context: Omit<CommandContext, 'path'>, quote: (path: string) => string): CommandRss[] {
  const file = (name: string) => join(directory, name);
  const c: CommandContext = { ...context, path: (name) => quote(file(name)) };
  writeFileSync(file('store.key'), randomBytes(32), { mode: 0o600 });
  const tmp = file('tmp');
  rmSync(tmp, { recursive: true, force: true });
  const results: CommandRss[] = [];
  const kept: string[] = ['store.key'];
  try {
    for (const entry of COMMANDS) {
      const outputs = [...(entry.outputs ?? []), ...(entry.keeps ?? [])].map(file);
      const command = `mkdir -p ${quote(tmp)} && export TMPDIR=${quote(tmp)} && ${entry.command(c)}`;
      kept.push(...(entry.keeps ?? []));
      try {
        const step = measure(entry.name, command, outputs);
        results.push({ name: entry.name, command: entry.command(c), maxRssBytes: step.maxRssBytes, ms: step.ms });
      } catch (error) {
        results.push({ name: entry.name, command: entry.command(c), maxRssBytes: Number.NaN, ms: Number.NaN, error: why(error) });
      }
      for (const path of entry.outputs ?? []) rmSync(file(path), { recursive: true, force: true });
      rmSync(tmp, { recursive: true, force: true });
    }
  } finally {
    for (const path of kept) rmSync(file(path), { recursive: true, force: true });
  }
  return results;
}

/** vmsnap's own error lines from a failed step (GNU time's report left out), else the first line. */
function why(error: unknown): string {
  const text = String(error instanceof Error ? error.message : error);
  const own = text.split('\n').filter((line) => line.startsWith('vmsnap: '));
  return own.length ? own.join('; ') : text.split('\n')[0];
}

const mib = (bytes: number) => (Number.isNaN(bytes) ? 'failed' : `${(bytes / MiB).toFixed(1)} MiB`);

/** One row per command, one column per size; met/MISSED against the cap; growth from the smallest to the largest size. */
export function printCommandRss(bySize: readonly { size: string; commands: readonly CommandRss[] }[]): void {
  if (bySize.length === 0) return;
  const sizes = bySize.map((s) => s.size);
  console.log(
    `\npeak RSS per command (cap ${mib(RSS_CAP_BYTES)}; flat: grows < ${mib(FLAT_GROWTH_BYTES)} from the smallest size to the largest)`,
  );
  console.log(`${'command'.padEnd(28)}${sizes.map((s) => s.padStart(20)).join('')}   growth`);
  for (const [i, entry] of bySize[0].commands.entries()) {
    const cells = bySize.map((s) => {
      const rss = s.commands[i]?.maxRssBytes ?? Number.NaN;
      return `${mib(rss)} ${Number.isNaN(rss) ? '' : rss < RSS_CAP_BYTES ? 'met' : 'MISSED'}`.padStart(20);
    });
    const first = bySize[0].commands[i].maxRssBytes;
    const last = bySize[bySize.length - 1].commands[i]?.maxRssBytes ?? Number.NaN;
    const growth =
      bySize.length < 2
        ? '(one size)'
        : Number.isNaN(first) || Number.isNaN(last)
          ? '?'
          : `${mib(last - first)} ${last - first < FLAT_GROWTH_BYTES ? 'flat' : 'GROWS'}`;
    console.log(`${entry.name.padEnd(28)}${cells.join('')}   ${growth}`);
  }
  for (const s of bySize)
    for (const failed of s.commands.filter((c) => c.error)) console.log(`  failed at ${s.size}: ${failed.name}: ${failed.error}`);
}
