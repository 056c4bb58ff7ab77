/**
 * Every check the emulated host runs, in order and in groups. The host-side
 * test runner reads the same list to know which results to expect.
 */
import { CONFORMANCE_CHECKS } from './conformance-checks.js';
import { FORENSICS_CHECKS } from './forensics-checks.js';
import { GUEST_CHECKS } from './guest-checks.js';
import { BACKEND_CHECKS, type LabCheck } from './lab-checks.js';
import { LIVE_CHECKS } from './live-checks.js';
import { SNAPSHOT_CHECKS } from './snapshot-checks.js';

/** A group of checks that runs in one node process of its own inside the emulated host (lab-suite.ts). */
export interface LabGroup {
  readonly name: string;
  readonly checks: readonly LabCheck[];
}

export function labGroups(): readonly LabGroup[] {
  return [
    { name: 'backend', checks: BACKEND_CHECKS },
    { name: 'guest', checks: GUEST_CHECKS },
    { name: 'conformance', checks: CONFORMANCE_CHECKS },
    { name: 'snapshot', checks: SNAPSHOT_CHECKS },
    { name: 'forensics', checks: FORENSICS_CHECKS },
    { name: 'live', checks: LIVE_CHECKS },
  ];
}

export function labPlan(): readonly LabCheck[] {
  return labGroups().flatMap((group) => group.checks);
}

export function expectedLabCheckNames(): string[] {
  return labPlan().map((check) => check.name);
}
