/**
 * The kernel-semantics conformance suite (testkit/conformance), unchanged, on the
 * real KVM: one lab check per row. A row passes here only when the real
 * kernel and the simulated backend, set up as the same kernel version and
 * page size, both give the row's expected answer, so the simulator the rest
 * of vmsnap is tested on is held to the kernel it claims to be.
 */
import {
  type ConformanceResult,
  type ConformanceRow,
  type ConformanceTarget,
  conformanceRows,
  runConformanceRow,
  simulatedConformanceTarget,
} from '../conformance/index.js';
import { kvmConformanceTarget } from '../conformance/kvm-target.js';
import { type LabCheck, LabCheckFailure, type LabContext } from './lab-checks.js';

interface Targets {
  readonly kvm: ConformanceTarget;
  readonly simulated: ConformanceTarget;
}

// One pair of targets for all rows: the kernel version is read once.
let targets: Targets | null = null;
function targetsFor(context: LabContext): Targets {
  if (!targets) {
    const kvm = kvmConformanceTarget(context.factory);
    targets = { kvm, simulated: simulatedConformanceTarget({ pageSize: kvm.pageSize, kernelVersion: kvm.kernelVersion }) };
  }
  return targets;
}

function describe(result: ConformanceResult): string {
  return `${result.status}${result.message ? ` (${result.message})` : ''}`;
}

function rowCheck(row: ConformanceRow): LabCheck {
  return {
    name: `conformance: ${row.id}`,
    run: async (context) => {
      const { kvm, simulated } = targetsFor(context);
      const real = await runConformanceRow(row, kvm);
      const model = await runConformanceRow(row, simulated);
      const both = `KVM ${describe(real)}; simulated ${describe(model)}`;
      if (real.status !== 'pass' || model.status !== 'pass') throw new LabCheckFailure(`${row.title}: ${both}`);
      return `${row.title}: KVM (Linux ${kvm.kernelVersion.join('.')}) and the simulated kernel agree`;
    },
  };
}

export const CONFORMANCE_CHECKS: readonly LabCheck[] = conformanceRows.map(rowCheck);
