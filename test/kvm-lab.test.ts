/**
 * The emulated arm64 host tier (`npm run test:kvm`): boots an arm64 Linux
 * under QEMU with EL2 and MTE, once per lab kernel (6.1 with 4 KiB pages and
 * 6.12 with 16 KiB pages), and turns the results of the checks run there, on
 * its real KVM, into test results here, one per check and kernel. Off unless
 * VMSNAP_KVM_LAB=1 (it downloads packages and takes minutes).
 *
 * It never passes silently: when the packages cannot be reached it skips,
 * saying why, except under VMSNAP_REQUIRE_LAB=1 (CI), where that is a
 * failure; a group of checks whose node process died by a signal runs again
 * inside the host, a boot whose suite died so is booted again, and each is
 * reported as a flake (a line here, an annotation, and the run's summary).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { exportCore } from '../src/forensics/core-export.js';
import { importCore } from '../src/forensics/core-import.js';
import { readProcessCore } from '../src/forensics/process-core.js';
import { openSnapshot } from '../src/reader/open.js';
import { PROCESS, PROCESS_CORE_FILE } from '../testkit/kvm-lab/forensics-checks.js';
import { diedBySignal, type KernelBoot, type LabRun, runKvmLab } from '../testkit/kvm-lab/host/run-lab.js';
import { expectedLabCheckNames } from '../testkit/kvm-lab/lab-plan.js';
import { GROUP_ATTEMPTS, type LabCrash } from '../testkit/kvm-lab/lab-report.js';
import { titled } from './support/external-tool.js';
import { gdb, runGdb } from './support/gdb.js';

const repositoryRoot = resolve(import.meta.dirname, '..');
const enabled = process.env.VMSNAP_KVM_LAB === '1';
/** CI: a lab that cannot be set up is a failure, not a skip. */
const required = process.env.VMSNAP_REQUIRE_LAB === '1';

/** VMSNAP_KVM_LAB_ONLY="a,b": run only the checks whose names contain a or b (the others then fail as unreported). */
const only = process.env.VMSNAP_KVM_LAB_ONLY?.split(',').filter(Boolean);
/** VMSNAP_KVM_LAB_KERNELS="6.12-16k": boot only these lab kernels (by id). */
const kernels = process.env.VMSNAP_KVM_LAB_KERNELS?.split(',').filter(Boolean);

const run: LabRun | null = enabled ? await runKvmLab({ repositoryRoot, only, kernels }) : null;

function summary(boot: KernelBoot): string {
  return `exit ${boot.exitCode}${boot.timedOut ? ' (timed out)' : ''}; serial log ${boot.serialLog}; last lines:\n${boot.serialTail}`;
}

function flakeLine(id: string, flake: KernelBoot): string {
  return (
    `FLAKE: kvm lab (${id}): node in the emulated host died by signal ${(flake.exitCode ?? 0) - 128}; ` +
    `booted again (first boot's serial log ${flake.serialLog})`
  );
}

/**
 * GDB on the kernel's core and on vmsnap's import then export of it, with the same commands: the fault (signal,
 * si_code, the tagged address and both tags), registers, mappings, auxv, and tags and words of the tagged mapping.
 */
async function gdbOnKernelCore(id: string, core: Buffer): Promise<{ before: string; after: string; faultAddress: bigint }> {
  const directory = mkdtempSync(join(tmpdir(), `vmsnap-lab-core-${id}-`));
  try {
    const original = join(directory, PROCESS_CORE_FILE);
    writeFileSync(original, core);
    const snapshot = join(directory, 'process.vmsnap');
    const again = join(directory, 'process-again.core');
    await importCore(original, snapshot);
    const reader = await openSnapshot(snapshot);
    let faultAddress: bigint;
    try {
      faultAddress = (await readProcessCore(reader))?.signal?.faultAddress ?? 0n;
      await exportCore(reader, again);
    } finally {
      await reader.close();
    }
    const granule = faultAddress & 0x00ff_ffff_ffff_fff0n;
    const commands = [
      'info threads',
      'p $_siginfo.si_signo',
      'p $_siginfo.si_code',
      'p/x $_siginfo._sifields._sigfault.si_addr',
      'info registers pc sp x0 x19 tpidr tag_ctl',
      'info proc mappings',
      'info auxv',
      `x/8gx 0x${(granule - 32n).toString(16)}`,
      ...[-32n, -16n, 0n, 16n].map((offset) => `memory-tag print-allocation-tag 0x${(granule + offset).toString(16)}`),
    ];
    return { before: await runGdb(original, commands), after: await runGdb(again, commands), faultAddress };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

function crashLine(id: string, crash: LabCrash): string {
  const where = crash.lastCheck ? ` in "${crash.lastCheck}"` : '';
  const attempt = `run ${crash.attempt} of ${GROUP_ATTEMPTS}`;
  return `FLAKE: kvm lab (${id}): the ${crash.group} group's node process died by ${crash.signal}${where} (${attempt})`;
}

describe.skipIf(!enabled)('emulated arm64 host with real KVM and MTE (set VMSNAP_KVM_LAB=1, or npm run test:kvm)', () => {
  if (!run) {
    test('runs only under npm run test:kvm (it boots an emulated arm64 host)', () => {});
    return;
  }
  if (run.status === 'unavailable') {
    if (required)
      test('the lab can be set up (VMSNAP_REQUIRE_LAB=1: unreachable packages are a failure)', () => {
        expect.fail(run.reason);
      });
    else test.skip(`skipped: ${run.reason}`, () => {});
    return;
  }
  const lab = run;
  process.stdout.write(
    `kvm lab: ${lab.assets.qemuVersion}; initramfs ${(lab.initramfsBytes / 2 ** 20).toFixed(1)} MiB; ` +
      `prepare ${lab.seconds.prepare.toFixed(1)} s, initramfs ${lab.seconds.initramfs.toFixed(1)} s\n`,
  );

  for (const boot of lab.kernels) {
    const { id, pageSize } = boot.kernel.kernel;
    process.stdout.write(`kvm lab (${id}): kernel ${boot.kernel.version}; boot and suite ${boot.seconds.toFixed(1)} s\n`);
    if (boot.flake) process.stdout.write(`${flakeLine(id, boot.flake)}; serial log tail:\n${boot.flake.serialTail}\n`);
    for (const crash of boot.crashes) process.stdout.write(`${crashLine(id, crash)}; kernel log:\n${crash.kernelLog.join('\n')}\n`);

    describe(`Linux ${boot.kernel.version} (${id}, ${pageSize / 1024} KiB pages)`, () => {
      test('the emulated host ran the whole suite and exited 0', () => {
        expect(boot.timedOut, summary(boot)).toBe(false);
        expect(boot.exitCode, summary(boot)).toBe(0);
      });

      test('node did not die by a signal (a crashed group runs again, a crashed boot boots again: reported as flakes)', async (context) => {
        if (boot.flake) await context.annotate(flakeLine(id, boot.flake), 'flake');
        for (const crash of boot.crashes) await context.annotate(crashLine(id, crash), 'flake');
        // The last run decides: a group that crashed on its last attempt, or a second crashed boot, fails.
        expect(boot.crashes.filter((crash) => crash.attempt >= GROUP_ATTEMPTS).map((crash) => crashLine(id, crash))).toEqual([]);
        expect(diedBySignal(boot), summary(boot)).toBe(false);
      });

      for (const name of expectedLabCheckNames()) {
        test(name, (context) => {
          // The last report counts: a group run again after a crash reports its checks again.
          const result = boot.results.filter((candidate) => candidate.name === name).at(-1);
          expect(result, `the emulated host never reported this check; ${summary(boot)}`).toBeDefined();
          if (result?.outcome === 'skip') context.skip(result.detail);
          expect(result?.outcome, result?.detail).toBe('pass');
        });
      }

      test.skipIf(gdb.skip)(
        titled("GDB reads the core the kernel wrote of the MTE process, and vmsnap's import and export of it, alike", gdb),
        async () => {
          const core = boot.files.get(PROCESS_CORE_FILE);
          expect(core, boot.brokenFiles.get(PROCESS_CORE_FILE) ?? 'the forensics check handed over no core').toBeDefined();
          const { before, after, faultAddress } = await gdbOnKernelCore(id, core!);
          expect(before).toContain('Program terminated with signal SIGSEGV, Segmentation fault.');
          expect(before).toMatch(/^\$2 = 9$/m); // SEGV_MTESERR
          expect(before).toContain(
            `Logical tag (0x${PROCESS.faultTag.toString(16)}) does not match the allocation tag (0x${PROCESS.tagOf(5).toString(16)}).`,
          );
          expect(before).toContain(`0x${faultAddress.toString(16)}`);
          expect(before).toMatch(new RegExp(`tpidr\\s+0x${PROCESS.tls.toString(16)}`));
          expect(after).toBe(before);
        },
      );

      test('the emulated host reported no check the plan does not know', () => {
        const known = new Set(expectedLabCheckNames());
        expect(boot.results.map((result) => result.name).filter((name) => !known.has(name))).toEqual([]);
      });
    });
  }
});
