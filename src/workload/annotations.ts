/**
 * The annotations by which a snapshot of the seeded workload guest records
 * how to regenerate it, so that a restore can be compared, page for page and
 * granule for granule, with the very guest that was saved.
 */

/** The parameters that determine a workload guest. */
export interface WorkloadSpec {
  readonly sizeMiB: number;
  readonly seed: number;
  readonly pageSize: number;
}

/** Annotation keys that record how to regenerate the guest. */
const KEYS = { size: 'sim.size-mib', seed: 'sim.seed', pageSize: 'sim.page-size' } as const;

export function workloadAnnotations(spec: WorkloadSpec): Record<string, string> {
  return { [KEYS.size]: String(spec.sizeMiB), [KEYS.seed]: String(spec.seed), [KEYS.pageSize]: String(spec.pageSize) };
}

/** The workload a snapshot recorded, or undefined when it records none (or a malformed one). */
export function workloadFromAnnotations(annotations: Readonly<Record<string, string>>): WorkloadSpec | undefined {
  const fields = [annotations[KEYS.size], annotations[KEYS.seed], annotations[KEYS.pageSize]];
  if (fields.some((field) => field === undefined || !/^\d{1,10}$/.test(field))) return undefined;
  const [sizeMiB, seed, pageSize] = fields.map(Number);
  return { sizeMiB, seed, pageSize };
}
