/**
 * Forensics against the real MMU: the MTE test guest maps a region at a
 * non-identity virtual address with its own TTBR1 tables (a 2 MiB block and
 * 512 pages in reverse order) and writes a known pattern and tags through it.
 * After a checkpoint, vmsnap walks those tables from the snapshot file and
 * must read the same bytes and tags through the same virtual addresses, and
 * translate each page where the guest's own tables put it.
 *
 * And against the real kernel's core dumps: a process of the emulated host
 * (testkit/mte-core-process) tags 64 KiB and dies on a tag check fault; the
 * kernel's core must import granule for granule, with the fault, the TLS and
 * the tagged-address control decoded from its notes, and export back with
 * the same Linux notes.
 */

import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportCore } from '../../src/forensics/core-export.js';
import { importCore } from '../../src/forensics/core-import.js';
import { ElfCore } from '../../src/forensics/elf-core-reader.js';
import type { ElfNote } from '../../src/forensics/elf-notes.js';
import { dumpGranules } from '../../src/forensics/granule-dump.js';
import { type ProcessCore, readProcessCore } from '../../src/forensics/process-core.js';
import { virtualAddressSpace } from '../../src/forensics/virtual-addresses.js';
import { openSnapshot } from '../../src/reader/open.js';
import { checkpointToSnapshot } from '../../src/vmm/live-checkpoint.js';
import { DEFAULT_LAYOUT, VA_REGION, vaRegionGranule, vaRegionTranslate } from '../../src/vmm/mte-guest-protocol.js';
import { MTE_CORE_PROCESS_EXECUTABLE } from '../mte-core-process/mte-core-process-image.js';
import { type LabCheck, LabCheckFailure } from './lab-checks.js';

const hex = (value: bigint): string => `0x${value.toString(16)}`;

/** The name the kernel's core of the MTE process is handed to the host under. */
export const PROCESS_CORE_FILE = 'mte-core-process.core';

/** What testkit/mte-core-process/mte-core-process.S does, as numbers. */
export const PROCESS = {
  length: 0x10000,
  faultGranule: 5n,
  faultTag: 7,
  tls: 0x7e5700cafe0001n,
  wordKey: 0x5a5a0000a5a5ffffn,
  tagOf: (granule: number) => (granule * 7 + 3) & 15,
} as const;

/** Runs the process with core dumps on; returns the core the kernel wrote. */
function dumpedCore(directory: string): string {
  const executable = join(directory, 'mte-core-process');
  writeFileSync(executable, MTE_CORE_PROCESS_EXECUTABLE);
  chmodSync(executable, 0o755);
  writeFileSync('/proc/sys/kernel/core_pattern', join(directory, 'core.%p'));
  const run = spawnSync('/bin/busybox', ['sh', '-c', `ulimit -c unlimited; exec ${executable}`], { encoding: 'utf8' });
  if (run.signal !== 'SIGSEGV') throw new LabCheckFailure(`the process ended with ${run.signal ?? `exit ${run.status}`}, not SIGSEGV`);
  const core = readdirSync(directory).find((name) => name.startsWith('core.'));
  if (!core) throw new LabCheckFailure(`the kernel wrote no core into ${directory}`);
  return join(directory, core);
}

/** The notes a Linux kernel writes (owner CORE or LINUX), in order. */
function linuxNotes(path: string): ElfNote[] {
  const core = ElfCore.open(path);
  try {
    return core.notes.filter((note) => note.name === 'CORE' || note.name === 'LINUX');
  } finally {
    core.close();
  }
}

function checkProcessNotes(notes: ProcessCore): bigint {
  const signal = notes.signal;
  if (signal?.name !== 'SIGSEGV' || signal.tagCheckFault !== 'sync' || signal.faultAddress === null)
    throw new LabCheckFailure(`the core's NT_SIGINFO says ${JSON.stringify(signal)}, not a synchronous tag check fault`);
  if (signal.logicalTag !== PROCESS.faultTag || notes.faultAllocationTag !== PROCESS.tagOf(Number(PROCESS.faultGranule)))
    throw new LabCheckFailure(`logical tag ${signal.logicalTag}, allocation tag ${notes.faultAllocationTag} at the fault`);
  const thread = notes.threads[0];
  if (thread?.tls !== PROCESS.tls) throw new LabCheckFailure(`TLS ${thread?.tls}, the process set ${hex(PROCESS.tls)}`);
  const ctrl = thread.taggedAddrCtrl;
  if (!ctrl?.taggedAddresses || ctrl.tcf !== 'sync' || ctrl.tagIncludeMask !== 0xfffe)
    throw new LabCheckFailure(`tagged-address control ${JSON.stringify(ctrl)}, the process set sync checks and mask 0xfffe`);
  return (signal.faultAddress & 0x00ff_ffff_ffff_ffffn) - PROCESS.faultGranule * 16n;
}

export const FORENSICS_CHECKS: readonly LabCheck[] = [
  {
    name: 'forensics: a Linux core of an MTE process killed by a tag check fault imports granule for granule, with its notes; exports back',
    run: async ({ scratchDirectory, handOver }) => {
      const core = dumpedCore(scratchDirectory);
      // The host side runs GDB on it and on vmsnap's import and export of it (test/kvm-lab.test.ts).
      handOver(PROCESS_CORE_FILE, readFileSync(core));
      const file = join(scratchDirectory, 'process-core.vmsnap');
      await importCore(core, file);
      const reader = await openSnapshot(file);
      let base: bigint;
      try {
        const notes = await readProcessCore(reader);
        if (!notes) throw new LabCheckFailure('the imported snapshot kept no Linux notes');
        base = checkProcessNotes(notes);
        const tags = await reader.readTags(base, PROCESS.length);
        const data = await reader.readMemory(base, PROCESS.length);
        const words = new DataView(data.buffer, data.byteOffset, data.byteLength);
        for (let granule = 0; granule < PROCESS.length / 16; granule++) {
          const address = base + BigInt(granule * 16);
          if (tags[granule] !== PROCESS.tagOf(granule))
            throw new LabCheckFailure(`${hex(address)}: tag ${tags[granule]}, the process stored ${PROCESS.tagOf(granule)}`);
          if (
            words.getBigUint64(granule * 16, true) !== (address ^ PROCESS.wordKey) ||
            words.getBigUint64(granule * 16 + 8, true) !== BigInt(granule)
          )
            throw new LabCheckFailure(`${hex(address)}: the words differ from what the process stored`);
        }
        const exported = join(scratchDirectory, 'process-core.exported');
        await exportCore(reader, exported);
        const original = linuxNotes(core);
        const back = linuxNotes(exported);
        const same =
          original.length === back.length &&
          original.every((note, i) => note.type === back[i].type && Buffer.compare(note.desc, back[i].desc) === 0);
        if (!same) throw new LabCheckFailure(`the exported core's ${back.length} Linux notes differ from the kernel's ${original.length}`);
        return (
          `${PROCESS.length / 16} granules at ${hex(base)} with their tags and words; ` +
          `SIGSEGV SEGV_MTESERR at ${hex(notes.signal!.faultAddress!)} ` +
          `(logical tag ${PROCESS.faultTag}, allocation tag ${notes.faultAllocationTag}); TLS and tagged-address control as set; ` +
          `the exported core carries the kernel's ${original.length} Linux notes unchanged`
        );
      } finally {
        await reader.close();
      }
    },
  },
  {
    name: 'forensics: the VA region read from a checkpoint through the saved TTBR1 tables: every page translated, every word and tag found',
    run: async ({ factory, scratchDirectory }) => {
      const file = join(scratchDirectory, 'va-region.vmsnap');
      await checkpointToSnapshot(factory, file);
      const reader = await openSnapshot(file);
      try {
        const space = await virtualAddressSpace(reader, 0);
        for (let va = VA_REGION.va; va < VA_REGION.va + VA_REGION.size; va += VA_REGION.pageSize) {
          const walked = await space.translate(va | (0x5n << 56n)); // tagged: TBI1 ignores the top byte
          const expected = vaRegionTranslate(DEFAULT_LAYOUT, va);
          if (walked.ipa !== expected)
            throw new LabCheckFailure(`VA ${hex(va)}: vmsnap translates to ${hex(walked.ipa)}, the guest maps ${hex(expected)}`);
        }
        let granules = 0;
        for await (const line of dumpGranules(reader, VA_REGION.va, VA_REGION.size, { data: true, space })) {
          const expected = vaRegionGranule(line.address);
          const view = new DataView(line.data!.buffer, line.data!.byteOffset, 16);
          if (line.tag !== expected.tag)
            throw new LabCheckFailure(`VA ${hex(line.address)}: tag ${line.tag}, the guest stored ${expected.tag}`);
          if (view.getBigUint64(0, true) !== expected.words[0] || view.getBigUint64(8, true) !== expected.words[1])
            throw new LabCheckFailure(`VA ${hex(line.address)} (IPA ${hex(line.ipa)}): the words differ from what the guest stored`);
          granules++;
        }
        const block = await space.translate(VA_REGION.va);
        return (
          `${granules} granules read through VA ${hex(VA_REGION.va)}+${hex(VA_REGION.size)} as the guest wrote them; ` +
          `walk of the block: ${block.steps.map((s) => `L${s.level} ${s.kind}`).join(', ')}`
        );
      } finally {
        await reader.close();
      }
    },
  },
];
