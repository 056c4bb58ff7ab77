/** The kernel-semantics conformance suite: rows any `Vm` backend must pass for the kernel it claims. */
export { conformanceRows, formatConformanceReport, runConformance, runConformanceRow } from './runner.js';
export { ConformanceMismatch, type ConformanceResult, type ConformanceRow, type ConformanceStatus, type ConformanceTarget } from './types.js';
export { simulatedConformanceTarget, type SimulatedTargetOptions } from './simulated-target.js';
