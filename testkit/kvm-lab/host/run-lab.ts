/**
 * One run of the emulated-host test tier: fetch (or reuse) the packages,
 * pack the built project into an initramfs, boot it under QEMU with a
 * timeout, and return the suite's results from the serial console.
 *
 * The project must have been built for the lab (`npm run build:lab`) first:
 * the emulated host runs that build, not the TypeScript sources.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type LabResult, parseResults } from '../lab-report.js';
import { buildInitramfs, LAB_BUILD, SUITE_ENTRY } from './initramfs.js';
import { arm64NativePackages, type LabAssets, LabSetupError, LabUnavailableError, prepareLabAssets } from './lab-packages.js';
import { bootEmulatedHost, writeShellLauncher } from './qemu-boot.js';

export interface LabRunOptions {
  readonly repositoryRoot: string;
  /** Defaults to <repository>/.cache/kvm-lab. */
  readonly cacheDirectory?: string;
  readonly timeoutMs?: number;
  /** Run only the checks whose names contain one of these (default: all). */
  readonly only?: readonly string[];
}

export type LabRun =
  | { readonly status: 'unavailable'; readonly reason: string }
  | {
      readonly status: 'ran';
      readonly assets: LabAssets;
      readonly results: LabResult[];
      readonly exitCode: number | null;
      readonly timedOut: boolean;
      readonly serialLog: string;
      readonly serialTail: string;
      readonly seconds: { readonly prepare: number; readonly initramfs: number; readonly boot: number };
      readonly initramfsBytes: number;
    };

const DEFAULT_TIMEOUT_MS = 6 * 60_000;

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
  writeShellLauncher(assets, initramfs, join(cache, 'shell.sh'));
  const t2 = Date.now();
  const serialLog = join(cache, 'serial.log');
  const boot = await bootEmulatedHost(assets, { initramfs, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, serialLog });
  return {
    status: 'ran',
    assets,
    results: parseResults(boot.serial),
    exitCode: boot.exitCode,
    timedOut: boot.timedOut,
    serialLog,
    serialTail: boot.serial.replace(/\r/g, '').split('\n').slice(-40).join('\n'),
    seconds: { prepare: (t1 - t0) / 1000, initramfs: (t2 - t1) / 1000, boot: boot.seconds },
    initramfsBytes,
  };
}
