/**
 * `vmsnap run`: the live checkpoint and restore of a real MTE guest on this
 * host's KVM, by hand. The built-in test guest fills memory with a pattern of
 * data and tags and stops at its checkpoint; vmsnap saves the VM to a file and
 * destroys it, restores the file into a new VM and resumes it; the guest then
 * checks every tag and word and reports. Needs /dev/kvm on an arm64 host with
 * MTE (for example the emulated host of `npm run test:kvm`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { KvmVmFactory } from '../../src/backends/kvm/kvm-factory.js';
import type { Vm } from '../../src/vm/vm.js';
import { checkpointToSnapshot, resumeFromSnapshot } from '../../src/vmm/live-checkpoint.js';
import { DEFAULT_LAYOUT, describeReport, type GuestReport, layoutForFill, type MteGuestLayout } from '../../src/vmm/mte-guest-protocol.js';
import { damageTag, type TagDamage } from '../../src/vmm/tag-damage.js';
import { CliError, EXIT, toJson } from '../cli-support.js';
import { helpAfter, printLine } from '../help.js';
import { formatBytes, hex, parseByteSize, parseGuestAddress } from '../units.js';
import { describeRestore } from './restore.js';
import { describeSave } from './save.js';

interface RunOptions {
  snapshot?: string;
  checkpointOnly?: boolean;
  resume?: string;
  corruptTag?: string;
  seed?: string;
  fill?: string;
  json?: boolean;
}

const MIB = 1n << 20n;
/** The fill must stay in the code's 1 GiB block (see mte-test.S). */
const MAX_FILL = 512n * MIB;

/** The test guest's layout from --fill and --seed; shared with `migrate send --kvm`. */
export function layoutFrom(options: Pick<RunOptions, 'fill' | 'seed'>): MteGuestLayout {
  const fillLength = options.fill === undefined ? DEFAULT_LAYOUT.fillLength : parseByteSize(options.fill, '--fill');
  if (fillLength < MIB || fillLength > MAX_FILL || fillLength % MIB !== 0n)
    throw new CliError('--fill: a whole number of MiB from 1MiB to 512MiB', 'usage');
  const seed = options.seed === undefined ? DEFAULT_LAYOUT.seed : parseGuestAddress(options.seed, '--seed');
  if (seed === 0n || seed >= 1n << 64n) throw new CliError('--seed: a nonzero 64-bit number', 'usage');
  return layoutForFill(fillLength, seed);
}

/** This host's KVM, or a backend error saying what `command` needs; shared with `migrate --kvm`. */
export function openKvm(command = 'vmsnap run'): KvmVmFactory {
  try {
    return new KvmVmFactory();
  } catch (error) {
    throw new CliError(
      `${error instanceof Error ? error.message : String(error)}; ` +
        `${command} needs an arm64 host with KVM and MTE (npm run test:kvm boots one under QEMU)`,
      'backend',
    );
  }
}

function verdict(report: GuestReport, corruption: TagDamage | undefined, json: boolean): void {
  if (json) printLine(toJson({ report, corruption }));
  else {
    if (corruption)
      printLine(
        `damaged the tag of granule ${hex(corruption.guestAddress)} after restore: ${corruption.original} -> ${corruption.damaged}`,
      );
    printLine(`guest: ${describeReport(report)}`);
  }
  if (report.status !== 'verified') process.exitCode = EXIT.differs;
}

async function run(options: RunOptions): Promise<void> {
  if (options.checkpointOnly && !options.snapshot) throw new CliError('--checkpoint-only needs --snapshot FILE to keep', 'usage');
  if (options.resume && (options.snapshot || options.checkpointOnly || options.seed || options.fill)) {
    throw new CliError(
      '--resume FILE restores a checkpoint as it is: it takes no --snapshot, --checkpoint-only, --seed or --fill',
      'usage',
    );
  }
  const kvm = openKvm();
  const quiet = options.json === true;
  const say = (line: string): void => (quiet ? undefined : printLine(line));

  let file = options.resume ?? options.snapshot;
  const scratch = file ? undefined : mkdtempSync(join(tmpdir(), 'vmsnap-run-'));
  file ??= join(scratch!, 'checkpoint.vmsnap');
  try {
    if (!options.resume) {
      const layout = layoutFrom(options);
      const saved = await checkpointToSnapshot(kvm, file, { layout });
      say(
        `guest: filled ${formatBytes(layout.fillLength)} at ${hex(layout.ramBase + layout.fillOffset)} ` +
          `with data and tags (seed ${hex(layout.seed)}) and stopped at its checkpoint`,
      );
      say(describeSave(saved));
      say('VM destroyed');
      if (options.checkpointOnly) return;
    }
    const damageAt = options.corruptTag === undefined ? undefined : parseGuestAddress(options.corruptTag, '--corrupt-tag');
    let corruption: TagDamage | undefined;
    const beforeResume =
      damageAt === undefined
        ? undefined
        : (vm: Vm) => {
            corruption = damageTag(vm, damageAt);
          };
    const { report, restore } = await resumeFromSnapshot(file, kvm, { beforeResume });
    say(describeRestore(restore, 'a new KVM VM, resumed'));
    verdict(report, corruption, quiet);
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description("Checkpoint and restore a running MTE test guest on this host's KVM, and let the guest verify every tag and word")
    .option('--snapshot <file>', 'keep the checkpoint in this file (default: a temporary file)')
    .option('--checkpoint-only', 'stop after saving the checkpoint (with --snapshot)')
    .option('--resume <file>', 'restore a checkpoint saved by vmsnap run and resume the guest')
    .option('--corrupt-tag <ipa>', 'damage the tag of the granule at this IPA after restore, to see the guest catch it')
    .option('--seed <n>', "seed of the guest's pattern (default 0x9e3779b97f4a7c15)")
    .option('--fill <bytes>', 'how much memory the guest fills, 1MiB..512MiB (default 4MiB)')
    .option('--json', "print the guest's report as JSON")
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap run',
        'vmsnap run --snapshot guest.vmsnap --checkpoint-only && vmsnap info guest.vmsnap',
        'vmsnap run --resume guest.vmsnap',
        'vmsnap run --resume guest.vmsnap --corrupt-tag 0x40300130   # exits 4: the guest reports the damaged tag',
      ]),
    )
    .action(async (options: RunOptions) => run(options));
}
