/** The kernel-semantics conformance suite: rows any `Vm` backend must pass for the kernel it claims. */
export { conformanceRows, formatConformanceReport, runConformance, runConformanceRow } from './runner.js';
export { type SimulatedTargetOptions, simulatedConformanceTarget } from './simulated-target.js';
export {
  ConformanceMismatch,
  type ConformanceResult,
  type ConformanceRow,
  type ConformanceStatus,
  type ConformanceTarget,
} from './types.js';
