/**
 * One run of the emulated-host test tier: fetch (or reuse) the packages,
 * pack the built project into an initramfs, boot it under QEMU with each lab
 * kernel (LAB_KERNELS, both at once) with a timeout, and return each
 * kernel's results from its serial console.
 *
 * Node inside the emulated host dies by a signal now and then (a segfault or
 * a V8 fatal error, cause not found). Inside, each group of checks runs in a
 * process of its own and a group whose process crashes runs once more
 * (lab-suite.ts), reported in `crashes`. Should the suite's own process die,
 * the kernel gets one more boot; the first boot is kept as the run's `flake`.
 * Either way the test runner reports it and never hides it.
 *
 * The project must have been built for the lab (`npm run build:lab`) first:
 * the emulated host runs that build, not the TypeScript sources.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type LabCrash, type LabResult, parseCrashes, parseFiles, parseResults } from '../lab-report.js';
import { buildInitramfs, LAB_BUILD, SUITE_ENTRY } from './initramfs.js';
import {
  arm64NativePackages,
  type LabAssets,
  LabSetupError,
  LabUnavailableError,
  type PreparedKernel,
  prepareLabAssets,
} from './lab-packages.js';
import { bootEmulatedHost, writeShellLauncher } from './qemu-boot.js';

export interface LabRunOptions {
  readonly repositoryRoot: string;
  /** Defaults to <repository>/.cache/kvm-lab. */
  readonly cacheDirectory?: string;
  readonly timeoutMs?: number;
  /** Run only the checks whose names contain one of these (default: all). */
  readonly only?: readonly string[];
  /** Boot only the kernels with these ids (default: every lab kernel). */
  readonly kernels?: readonly string[];
}

/** One boot of one kernel: what the suite reported and how the boot ended. */
export interface KernelBoot {
  readonly results: LabResult[];
  /** Groups whose process died by a signal inside the host (each ran again, up to GROUP_ATTEMPTS times). */
  readonly crashes: LabCrash[];
  /** Files checks handed over (lab-report.ts), by name; and those that arrived broken, with why. */
  readonly files: Map<string, Buffer>;
  readonly brokenFiles: Map<string, string>;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly serialLog: string;
  readonly serialTail: string;
  readonly seconds: number;
}

export interface KernelRun extends KernelBoot {
  readonly kernel: PreparedKernel;
  /** A first boot in which node died by a signal, booted again: reported as a flake. */
  readonly flake: KernelBoot | null;
}

export type LabRun =
  | { readonly status: 'unavailable'; readonly reason: string }
  | {
      readonly status: 'ran';
      readonly assets: LabAssets;
      readonly kernels: readonly KernelRun[];
      readonly seconds: { readonly prepare: number; readonly initramfs: number };
      readonly initramfsBytes: number;
    };

// Generous: on a shared 2-core machine both boots together took over 8 minutes.
const DEFAULT_TIMEOUT_MS = 30 * 60_000;
/** Exit codes above this are 128 + the signal that killed node (busybox sh's convention). */
const SIGNAL_EXIT_BASE = 128;

/** True when node in the emulated host was killed by a signal (not a failed check, not a timeout). */
export function diedBySignal(boot: KernelBoot): boolean {
  return !boot.timedOut && boot.exitCode !== null && boot.exitCode > SIGNAL_EXIT_BASE;
}

async function bootOnce(assets: LabAssets, kernel: PreparedKernel, initramfs: string, cache: string, timeoutMs: number, attempt: number) {
  const serialLog = join(cache, `serial-${kernel.kernel.id}${attempt > 1 ? `-attempt${attempt}` : ''}.log`);
  const boot = await bootEmulatedHost(assets, { kernel, initramfs, timeoutMs, serialLog });
  const { files, broken } = parseFiles(boot.serial);
  return {
    results: parseResults(boot.serial),
    crashes: parseCrashes(boot.serial),
    files,
    brokenFiles: broken,
    exitCode: boot.exitCode,
    timedOut: boot.timedOut,
    serialLog,
    serialTail: boot.serial.replace(/\r/g, '').split('\n').slice(-40).join('\n'),
    seconds: boot.seconds,
  };
}

async function runKernel(
  assets: LabAssets,
  kernel: PreparedKernel,
  initramfs: string,
  cache: string,
  timeoutMs: number,
): Promise<KernelRun> {
  const first = await bootOnce(assets, kernel, initramfs, cache, timeoutMs, 1);
  if (!diedBySignal(first)) return { kernel, ...first, flake: null };
  const second = await bootOnce(assets, kernel, initramfs, cache, timeoutMs, 2);
  return { kernel, ...second, flake: first };
}

export async function runKvmLab(options: LabRunOptions): Promise<LabRun> {
  const cache = options.cacheDirectory ?? join(options.repositoryRoot, '.cache', 'kvm-lab');
  if (!existsSync(join(options.repositoryRoot, LAB_BUILD, SUITE_ENTRY)))
    throw new LabSetupError(`${LAB_BUILD}/${SUITE_ENTRY} is missing: run npm run build:lab first`);
  const t0 = Date.now();
  let assets: LabAssets;
  try {
    assets = prepareLabAssets(cache, process.versions.node, arm64NativePackages(options.repositoryRoot));
  } catch (error) {
    if (error instanceof LabUnavailableError) return { status: 'unavailable', reason: error.message };
    throw error;
  }
  const t1 = Date.now();
  const initramfs = join(cache, 'initramfs.cpio');
  const initramfsBytes = buildInitramfs({
    output: initramfs,
    repositoryRoot: options.repositoryRoot,
    assets,
    suiteArguments: options.only ?? [],
  });
  for (const kernel of assets.kernels) writeShellLauncher(assets, kernel, initramfs, join(cache, `shell-${kernel.kernel.id}.sh`));
  writeShellLauncher(assets, assets.kernels[0], initramfs, join(cache, 'shell.sh'));
  const t2 = Date.now();
  const wanted = assets.kernels.filter((kernel) => !options.kernels || options.kernels.includes(kernel.kernel.id));
  if (wanted.length === 0) throw new LabSetupError(`no lab kernel among ${options.kernels?.join(', ')}`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const kernels = await Promise.all(wanted.map((kernel) => runKernel(assets, kernel, initramfs, cache, timeoutMs)));
  return {
    status: 'ran',
    assets,
    kernels,
    seconds: { prepare: (t1 - t0) / 1000, initramfs: (t2 - t1) / 1000 },
    initramfsBytes,
  };
}
