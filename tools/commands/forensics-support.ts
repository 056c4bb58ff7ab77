/**
 * What the forensics commands share: opening snapshots and the `tags`,
 * `export` and `import` command groups.
 */
import type { Command } from 'commander';
import { type VirtualAddressSpace, virtualAddressSpace } from '../../src/forensics/virtual-addresses.js';
import type { SnapshotReader } from '../../src/format/model.js';
import { findChain, openChain } from '../../src/reader/chain.js';
import { openSnapshot } from '../../src/reader/open.js';
import { checkInputFile } from '../cli-support.js';
import { parseInteger } from '../units.js';

export { EXIT_CODES_HELP, examples, printJson, printLine } from '../help.js';

/** A whole number of items (a count, a page size). */
export function parseCount(text: string, what: string): number {
  return parseInteger(text, what, 0, Number.MAX_SAFE_INTEGER);
}

/** The subcommand `name` of `program`, created on first use so several modules can add to it. */
export function commandGroup(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

/** Opens a snapshot; a diff is opened with its chain (its parents found beside it), so that it reads as the guest it stands for. */
export async function openGuestSnapshot(path: string): Promise<SnapshotReader> {
  const reader = await openSnapshot(path);
  if (!reader.diff) return reader;
  await reader.close();
  return openChain(findChain(path));
}

export async function withSnapshot<T>(path: string, use: (reader: SnapshotReader) => Promise<T>): Promise<T> {
  checkInputFile(path);
  const reader = await openGuestSnapshot(path);
  try {
    return await use(reader);
  } finally {
    await reader.close();
  }
}

/** The options of commands that can take a guest virtual address: `--vcpu` picks whose page tables. */
export interface VirtualAddressOptions {
  vcpu?: string;
}

export const VCPU_OPTION_HELP = "vCPU whose saved page tables translate virtual addresses (default 0; a guest's vCPUs share the kernel's)";

/** The address space of the vCPU named by `--vcpu` (default 0). */
export function addressSpaceOf(reader: SnapshotReader, options: VirtualAddressOptions): Promise<VirtualAddressSpace> {
  return virtualAddressSpace(reader, parseCount(options.vcpu ?? '0', '--vcpu'));
}
