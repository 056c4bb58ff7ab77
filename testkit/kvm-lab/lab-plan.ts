/**
 * Every check the emulated host runs, in order. The host-side test runner
 * reads the same list to know which results to expect.
 */
import { CONFORMANCE_CHECKS } from './conformance-checks.js';
import { FORENSICS_CHECKS } from './forensics-checks.js';
import { GUEST_CHECKS } from './guest-checks.js';
import { BACKEND_CHECKS, type LabCheck } from './lab-checks.js';
import { LIVE_CHECKS } from './live-checks.js';
import { SNAPSHOT_CHECKS } from './snapshot-checks.js';

export function labPlan(): readonly LabCheck[] {
  return [...BACKEND_CHECKS, ...GUEST_CHECKS, ...CONFORMANCE_CHECKS, ...SNAPSHOT_CHECKS, ...FORENSICS_CHECKS, ...LIVE_CHECKS];
}

export function expectedLabCheckNames(): string[] {
  return labPlan().map((check) => check.name);
}
