/**
 * How the suite inside the emulated host reports to the test runner outside
 * it: one line per check on the serial console,
 *
 *   VMSNAP-LAB-RESULT {"name":...,"outcome":"pass"|"fail"|"skip","detail":...,"ms":...}
 *
 * which the host side parses back into test results, and one line per group
 * whose node process died by a signal (lab-suite.ts then runs the group once more),
 *
 *   VMSNAP-LAB-CRASH {"group":...,"signal":...,"attempt":...,"lastCheck":...,"kernelLog":[...]}
 *
 * which the host side reports as a flake, never hides.
 */

export const RESULT_MARKER = 'VMSNAP-LAB-RESULT';
export const CRASH_MARKER = 'VMSNAP-LAB-CRASH';
/** Runs of one group whose process dies by a signal: a crash on the last one fails the lab. */
export const GROUP_ATTEMPTS = 2;

export type LabOutcome = 'pass' | 'fail' | 'skip';

export interface LabResult {
  readonly name: string;
  readonly outcome: LabOutcome;
  readonly detail: string;
  readonly ms: number;
}

export function formatResult(result: LabResult): string {
  return `${RESULT_MARKER} ${JSON.stringify(result)}`;
}

/** A group's node process killed by a signal: where, and what the kernel logged about it. */
export interface LabCrash {
  readonly group: string;
  readonly signal: string;
  /** 1 for the first run of the group; the group runs at most twice. */
  readonly attempt: number;
  /** The check that was running (its "running" line came last), if any. */
  readonly lastCheck: string | null;
  /** The kernel log's last lines (the unhandled-exception report with pc, far and esr). */
  readonly kernelLog: readonly string[];
}

export function formatCrash(crash: LabCrash): string {
  return `${CRASH_MARKER} ${JSON.stringify(crash)}`;
}

/** The JSON payloads of the lines with `marker`, in order; other lines (kernel messages) are ignored. */
function parseMarked<T>(serial: string, marker: string): T[] {
  const found: T[] = [];
  for (const line of serial.replace(/\r/g, '').split('\n')) {
    const at = line.indexOf(`${marker} `);
    if (at < 0) continue;
    try {
      found.push(JSON.parse(line.slice(at + marker.length + 1)) as T);
    } catch {
      // A line broken by interleaved console output: a missing result fails on the host.
    }
  }
  return found;
}

/** The results found in a serial log, in order (a group run again after a crash reports its checks again). */
export function parseResults(serial: string): LabResult[] {
  return parseMarked<LabResult>(serial, RESULT_MARKER);
}

export function parseCrashes(serial: string): LabCrash[] {
  return parseMarked<LabCrash>(serial, CRASH_MARKER);
}
