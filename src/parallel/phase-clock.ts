/**
 * Where a save or restore spends its time, by phase, summed over the process:
 * the bench prints it so that the next bottleneck is visible (issue 10).
 *
 * Phases on the calling thread (zero detection, checksums, writing, waiting)
 * add up to at most the wall time; phases that run on libuv's thread pool
 * (reading, compression, decompression) are summed over the calls in flight,
 * so they can pass the wall time when several overlap. Work done inside
 * worker threads (the fallback without libzstd) is not counted.
 */

export type Phase =
  | 'reading'
  | 'zero detection'
  | 'compression'
  | 'decompression'
  | 'checksums'
  | 'expanding'
  | 'writing'
  | 'waiting on results';

const totals = new Map<Phase, number>();

export function addPhaseTime(phase: Phase, ms: number): void {
  totals.set(phase, (totals.get(phase) ?? 0) + ms);
}

/** Runs `work` and counts its time to `phase`. */
export function timed<T>(phase: Phase, work: () => T): T {
  const started = performance.now();
  try {
    return work();
  } finally {
    addPhaseTime(phase, performance.now() - started);
  }
}

/** Awaits `work` and counts the time until it settles to `phase`. */
export async function timedAsync<T>(phase: Phase, work: Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work;
  } finally {
    addPhaseTime(phase, performance.now() - started);
  }
}

/** Milliseconds per phase so far, in the order phases were first seen. */
export function phaseTimes(): Record<string, number> {
  return Object.fromEntries(totals);
}
