/**
 * Runs one benchmark step as a child process under GNU time, so vmsnap and
 * the tools it is compared with are measured the same way: wall-clock time
 * around the process, and its peak resident set size (the largest process of
 * the step, worker threads included, as the kernel's ru_maxrss counts it).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';

export interface StepResult {
  readonly name: string;
  readonly command: string;
  readonly ms: number;
  readonly maxRssBytes: number;
  /** CPU time, user plus system, of the median run. */
  readonly cpuMs: number;
  /** Every run's time; `ms` is their median. */
  readonly runsMs: readonly number[];
  /** vmsnap's own account of the median run, milliseconds by phase (src/parallel/phase-clock.ts). */
  readonly phases?: Readonly<Record<string, number>>;
}

export class BenchStepError extends Error {
  override name = 'BenchStepError';
}

const TIME = '/usr/bin/time';

export function checkTools(): void {
  if (!existsSync(TIME)) throw new BenchStepError(`${TIME} (GNU time) is needed to measure peak memory; install the "time" package`);
  const zstd = spawnSync('zstd', ['--version'], { encoding: 'utf8' });
  if (zstd.status !== 0) throw new BenchStepError('the zstd command is needed as the baseline; install the "zstd" package');
}

/** Writes dirty pages out between steps, so one step's writeback is not billed to the next. */
export function settle(): void {
  spawnSync('sync');
}

/**
 * Runs `command` with sh (for redirections) and measures it, after removing
 * `outputs`. With `phasesFile`, the command (vmsnap) is told to write its
 * time by phase there (VMSNAP_PHASES), and the result carries it.
 */
export function measure(name: string, command: string, outputs: readonly string[] = [], phasesFile?: string): StepResult {
  for (const path of [...outputs, ...(phasesFile ? [phasesFile] : [])]) rmSync(path, { recursive: true, force: true });
  settle();
  const env = phasesFile ? { ...process.env, VMSNAP_PHASES: phasesFile } : process.env;
  const started = performance.now();
  const run = spawnSync(TIME, ['-v', 'sh', '-c', command], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env });
  const ms = performance.now() - started;
  if (run.status !== 0) throw new BenchStepError(`${name} failed (exit ${run.status}): ${command}\n${run.stderr}`);
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(run.stderr);
  const user = /User time \(seconds\): ([\d.]+)/.exec(run.stderr);
  const system = /System time \(seconds\): ([\d.]+)/.exec(run.stderr);
  if (!rss || !user || !system) throw new BenchStepError(`${name}: no peak memory or CPU time in the output of ${TIME} -v`);
  const cpuMs = (Number(user[1]) + Number(system[1])) * 1000;
  const phases =
    phasesFile && existsSync(phasesFile) ? (JSON.parse(readFileSync(phasesFile, 'utf8')) as Record<string, number>) : undefined;
  return { name, command, ms, maxRssBytes: Number(rss[1]) * 1024, cpuMs, runsMs: [ms], phases };
}

export interface StepPlan {
  readonly name: string;
  readonly command: string;
  /** Files the step writes: removed (untimed) before each run, so no run pays for freeing the last run's blocks. */
  readonly outputs: readonly string[];
  /** Where vmsnap writes its time by phase; absent for the other tools. */
  readonly phasesFile?: string;
  /** Runs (untimed) after every run of the step: e.g. checks its output. */
  readonly afterRun?: () => void;
  /**
   * Removes the outputs (untimed) right after every run, once `afterRun` has
   * seen them: no later step reads them, and a 16 GiB guest's copies would
   * not fit the disk all at once.
   */
  readonly discard?: boolean;
}

/**
 * Runs the whole plan `repeat` times, step after step, so that a burst of
 * load on the host hits vmsnap and its baseline alike; reports each step's
 * median time and its highest peak RSS.
 */
export function measureInterleaved(plan: readonly StepPlan[], repeat: number): StepResult[] {
  const runs: StepResult[][] = plan.map(() => []);
  for (let round = 0; round < Math.max(1, repeat); round++)
    plan.forEach((step, i) => {
      runs[i].push(measure(step.name, step.command, step.outputs, step.phasesFile));
      step.afterRun?.();
      if (step.discard) for (const path of step.outputs) rmSync(path, { recursive: true, force: true });
    });
  return plan.map((step, i) => {
    const times = runs[i].map((r) => r.ms);
    const median = [...runs[i]].sort((a, b) => a.ms - b.ms)[Math.floor(runs[i].length / 2)];
    return {
      name: step.name,
      command: step.command,
      ms: median.ms,
      cpuMs: median.cpuMs,
      maxRssBytes: Math.max(...runs[i].map((r) => r.maxRssBytes)),
      runsMs: times,
      phases: median.phases,
    };
  });
}
