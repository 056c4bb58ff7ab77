/**
 * How the suite inside the emulated host reports to the test runner outside
 * it: one line per check on the serial console,
 *
 *   VMSNAP-LAB-RESULT {"name":...,"outcome":"pass"|"fail"|"skip","detail":...,"ms":...}
 *
 * which the host side parses back into test results.
 */

export const RESULT_MARKER = 'VMSNAP-LAB-RESULT';

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

/** The results found in a serial log, in order; lines that are not results (kernel messages) are ignored. */
export function parseResults(serial: string): LabResult[] {
  const results: LabResult[] = [];
  for (const line of serial.replace(/\r/g, '').split('\n')) {
    const at = line.indexOf(`${RESULT_MARKER} `);
    if (at < 0) continue;
    try {
      results.push(JSON.parse(line.slice(at + RESULT_MARKER.length + 1)) as LabResult);
    } catch {
      // A result line broken by interleaved console output: the missing result fails on the host.
    }
  }
  return results;
}
