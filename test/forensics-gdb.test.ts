/**
 * GDB as an independent reader of our ELF cores: Debian's gdb-multiarch
 * (GDB 13) loads each exported core in batch mode and prints allocation tags
 * (`memory-tag print-allocation-tag`, `x/…m`), memory and pointer checks;
 * every answer must equal vmsnap's own, over many granules of every region.
 *
 * Needs gdb-multiarch: skipped, saying so, where it is missing, except in CI
 * (VMSNAP_REQUIRE_TOOLS=1), which installs it and fails without it.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportCore } from '../src/forensics/core-export.js';
import { importCore } from '../src/forensics/core-import.js';
import { checkPointer } from '../src/forensics/pointer-check.js';
import type { SnapshotReader, SnapshotRegion } from '../src/format/model.js';
import { openSnapshot } from '../src/reader/open.js';
import { createSimulatedGuest } from '../src/workload/simulated-guest.js';
import { saveSnapshot } from '../src/writer/save.js';
import { SCENARIO_A, saveGuest, temporaryDirectory } from './forensics-fixtures.js';
import { titled } from './support/external-tool.js';
import { gdb, runGdb } from './support/gdb.js';
import { LINUX_CORE, writeLinuxProcessCore } from './support/linux-process-core.js';

/** Granules asked one by one per MTE region, besides the first and last. */
const SAMPLED_GRANULES = 150;
/** Bytes of each x/…m window, and windows per region. */
const X_WINDOW = 512;
const X_WINDOWS = 12;

const dir = temporaryDirectory();
afterAll(() => dir.remove());

/** A deterministic sample of granule addresses in a region: first, last and spread ones. */
function sampleGranules(region: SnapshotRegion, count: number, seed: number): bigint[] {
  const granules = region.size / 16n;
  const picks = new Set<bigint>([0n, granules - 1n]);
  let x = BigInt(seed) | 1n;
  while (picks.size < count + 2) {
    x = (x * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    picks.add((x >> 20n) % granules);
  }
  return [...picks].sort((a, b) => (a < b ? -1 : 1)).map((g) => region.guestAddress + g * 16n);
}

async function tagAt(reader: SnapshotReader, address: bigint): Promise<number> {
  return (await reader.readTags(address, 16))[0];
}

/** Pulls "<Allocation Tag 0xT for range [0xA,0xB)>" lines out of x/…m output. */
function allocationTagLines(output: string): Map<bigint, number> {
  const out = new Map<bigint, number>();
  for (const m of output.matchAll(/<Allocation Tag (0x[0-9a-f]+) for range \[(0x[0-9a-f]+),(0x[0-9a-f]+)\)>/g))
    out.set(BigInt(m[2]), Number(m[1]));
  return out;
}

async function compareWithGdb(snapshotPath: string, label: string): Promise<void> {
  const reader = await openSnapshot(snapshotPath);
  const core = join(dir.path, `${label}.core`);
  try {
    await exportCore(reader, core);
    const mteRegions = reader.regions.filter((r) => r.mte);
    expect(mteRegions.length).toBeGreaterThan(0);

    // 1. print-allocation-tag, granule by granule, in every MTE region.
    const asked = mteRegions.flatMap((r, i) => sampleGranules(r, SAMPLED_GRANULES, 17 + i));
    const printed = await runGdb(
      core,
      asked.map((a) => `memory-tag print-allocation-tag 0x${a.toString(16)}`),
    );
    const values = [...printed.matchAll(/^\$\d+ = (0x[0-9a-f]+)$/gm)].map((m) => Number(m[1]));
    expect(values.length, printed.slice(0, 2000)).toBe(asked.length);
    const ours = await Promise.all(asked.map((a) => tagAt(reader, a)));
    expect(values).toEqual(ours);
    expect(new Set(ours).size, 'the sample must see more than one tag value').toBeGreaterThan(1);

    // 2. x/…m over windows of every MTE region: one tag line per granule, and the data.
    const windows = mteRegions.flatMap((r, i) =>
      sampleGranules(r, X_WINDOWS, 99 + i)
        .map((g) => g - (g % BigInt(X_WINDOW)))
        .filter((w) => w + BigInt(X_WINDOW) <= r.guestAddress + r.size),
    );
    const dumped = await runGdb(
      core,
      windows.map((w) => `x/${X_WINDOW / 8}xgm 0x${w.toString(16)}`),
    );
    const lines = allocationTagLines(dumped);
    for (const w of windows) {
      const tags = await reader.readTags(w, X_WINDOW);
      for (const [g, tag] of tags.entries())
        expect(lines.get(w + BigInt(g * 16)), `x/m at 0x${(w + BigInt(g * 16)).toString(16)}`).toBe(tag);
    }
    const words = [...dumped.matchAll(/^(0x[0-9a-f]+):\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)$/gm)];
    expect(words.length).toBe((windows.length * X_WINDOW) / 16);
    for (const m of words.slice(0, 400)) {
      const bytes = Buffer.from(await reader.readMemory(BigInt(m[1]), 16));
      expect([BigInt(m[2]), BigInt(m[3])]).toEqual([bytes.readBigUInt64LE(0), bytes.readBigUInt64LE(8)]);
    }

    // 3. memory-tag check agrees with check-pointer, for matching and mismatching logical tags.
    const pointers = asked.slice(0, 40).map((a, i) => (BigInt(i % 16) << 56n) | a);
    const checked = await runGdb(
      core,
      pointers.map((p) => `memory-tag check 0x${p.toString(16)}`),
    );
    const verdicts = [...checked.matchAll(/^(Memory tags for address .* match|Logical tag .* does not match)/gm)].map((m) =>
      m[1].startsWith('Memory'),
    );
    const mine = await Promise.all(pointers.map(async (p) => (await checkPointer(reader, p)).match));
    expect(verdicts).toEqual(mine);

    // 4. Regions without tags: GDB reads their memory but finds no tags.
    for (const region of reader.regions.filter((r) => !r.mte)) {
      const out = await runGdb(core, [
        `x/2xg 0x${region.guestAddress.toString(16)}`,
        `memory-tag print-allocation-tag 0x${region.guestAddress.toString(16)}`,
      ]);
      const bytes = Buffer.from(await reader.readMemory(region.guestAddress, 16));
      expect(out).toContain(`0x${bytes.readBigUInt64LE(0).toString(16).padStart(16, '0')}`);
      expect(out).toMatch(/not in a region mapped with a memory tagging flag/);
    }
  } finally {
    await reader.close();
  }
}

describe.skipIf(gdb.skip)(titled('GDB reads the tags of exported cores', gdb), () => {
  it('finds gdb-multiarch', () => {
    expect(gdb.available, gdb.reason).toBe(true);
  });

  it('loads a core quietly: threads from PRSTATUS, registers, no signal', async () => {
    const path = await saveGuest(SCENARIO_A, join(dir.path, 'scenario.vmsnap'));
    const reader = await openSnapshot(path);
    const core = join(dir.path, 'scenario.core');
    await exportCore(reader, core);
    await reader.close();
    const out = await runGdb(core, ['info threads', 'thread 2', 'info registers x0 x30 pc']);
    expect(out).toMatch(/LWP 1/);
    expect(out).toMatch(/LWP 2/);
    expect(out).toMatch(/x0\s+0x11110001/);
    expect(out).toMatch(/x30\s+0xdeadbeef0001/);
    expect(out).toMatch(/pc\s+0x40000804/);
    expect(out).not.toMatch(/warning|Program terminated with signal/i);
  });

  it.each([false, true])(
    'reports the tag violation of a Linux MTE process core after import and export as on the original (keepEmptyLoads %s)',
    async (keepEmptyLoads) => {
      const original = join(dir.path, 'process.core');
      await writeLinuxProcessCore(original);
      const snapshot = join(dir.path, `process-${keepEmptyLoads}.vmsnap`);
      // With --keep-empty-loads the MADV_DONTDUMP mapping comes back as a PT_LOAD with no bytes and no tags.
      await importCore(original, snapshot, { keepEmptyLoads });
      const reader = await openSnapshot(snapshot);
      const again = join(dir.path, `process-again-${keepEmptyLoads}.core`);
      try {
        await exportCore(reader, again);
      } finally {
        await reader.close();
      }
      const heapGranule = `0x${LINUX_CORE.loads.heap.toString(16)}`;
      const commands = [
        'info threads',
        'p $_siginfo.si_signo',
        'p $_siginfo.si_code',
        'p/x $_siginfo._sifields._sigfault.si_addr',
        'info registers pc sp x0 tpidr tag_ctl pauth_dmask pauth_cmask',
        'thread 2',
        'info registers pc tpidr tag_ctl',
        'info proc mappings',
        'info auxv',
        `memory-tag print-allocation-tag ${heapGranule}`,
        `memory-tag print-allocation-tag 0x${(LINUX_CORE.faultAddress & 0xffff_ffff_ffffn).toString(16)}`,
        // Last: GDB stops the script at the first error, and a MADV_DONTDUMP mapping has no tags.
        `memory-tag print-allocation-tag 0x${LINUX_CORE.loads.dontdump.toString(16)}`,
      ];
      // The command file's name (random) is in GDB's error line: not part of the comparison.
      const before = await runGdb(original, commands);
      const after = await runGdb(again, commands);
      // What GDB 13 reports of the fault on the original: the signal, SEGV_MTESERR (9), the tagged address, both tags.
      expect(before).toContain(`Core was generated by \`${LINUX_CORE.args}'.`);
      expect(before).toContain('Program terminated with signal SIGSEGV, Segmentation fault.');
      expect(before).toMatch(/^\$2 = 9$/m);
      expect(before).toContain('Logical tag (0xb) does not match the allocation tag (0x3).');
      expect(before).toMatch(/^\$3 = 0xb00ffff80001010$/m);
      expect(before).toMatch(/tpidr\s+0xffffb7ff7020/);
      expect(before).toMatch(/tag_ctl\s+0x7fff3/);
      expect(before).toMatch(/pauth_dmask\s+0x7f000000000000/);
      expect(before).toMatch(/0xffffa0000000\s+0xffffa0002000\s+0x2000\s+0x17d000 \/usr\/lib\/aarch64-linux-gnu\/libc.so.6/);
      expect(before).toMatch(/not in a region mapped with a memory tagging flag/);
      // ... and GDB says every word of it again on the core vmsnap wrote.
      expect(after).toBe(before);
    },
  );

  it('prints the same tags as vmsnap in every region of a generated 4 KiB-page guest', async () => {
    const guest = createSimulatedGuest({ sizeMiB: 24, seed: 11, pageSize: 4096, flashMiB: 2 });
    const path = join(dir.path, 'guest4k.vmsnap');
    await saveSnapshot(guest.vm, path, { threads: 0 });
    guest.vm.close();
    await compareWithGdb(path, 'guest4k');
  });

  it('prints the same tags as vmsnap on a hand-made guest with three regions', async () => {
    const path = await saveGuest(SCENARIO_A, join(dir.path, 'scenario2.vmsnap'));
    await compareWithGdb(path, 'scenario2');
  });

  it('prints the same tags as vmsnap for a 64 KiB-page guest', async () => {
    const guest = createSimulatedGuest({ sizeMiB: 16, seed: 5, pageSize: 65536, flashMiB: 1 });
    const path = join(dir.path, 'guest64k.vmsnap');
    await saveSnapshot(guest.vm, path, { threads: 0 });
    guest.vm.close();
    await compareWithGdb(path, 'guest64k');
  });
});
