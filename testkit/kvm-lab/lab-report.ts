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
 * which the host side reports as a flake, never hides, and files a check
 * hands to the host (a core the kernel wrote, for GDB there), gzipped and in
 * base64 parts:
 *
 *   VMSNAP-LAB-FILE {"name":...,"part":i,"parts":n,"sha256":...,"data":...}
 */

import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';

export const RESULT_MARKER = 'VMSNAP-LAB-RESULT';
export const CRASH_MARKER = 'VMSNAP-LAB-CRASH';
export const FILE_MARKER = 'VMSNAP-LAB-FILE';
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

interface FilePart {
  readonly name: string;
  readonly part: number;
  readonly parts: number;
  /** SHA-256 of the file (not of the gzip). */
  readonly sha256: string;
  readonly data: string;
}

/** Base64 characters per line: short enough for a console line. */
const FILE_PART_CHARS = 3000;

/** The lines that hand `bytes` to the host under `name` (a file name, no directories). */
export function formatFileLines(name: string, bytes: Uint8Array): string[] {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const data = gzipSync(bytes).toString('base64');
  const parts = Math.max(1, Math.ceil(data.length / FILE_PART_CHARS));
  return Array.from({ length: parts }, (_, part) => {
    const line: FilePart = { name, part, parts, sha256, data: data.slice(part * FILE_PART_CHARS, (part + 1) * FILE_PART_CHARS) };
    return `${FILE_MARKER} ${JSON.stringify(line)}`;
  });
}

/** The files handed over whole (every part there, the SHA-256 right), by name; the others by name with why not. */
export function parseFiles(serial: string): { files: Map<string, Buffer>; broken: Map<string, string> } {
  const byName = new Map<string, FilePart[]>();
  for (const part of parseMarked<FilePart>(serial, FILE_MARKER)) byName.set(part.name, [...(byName.get(part.name) ?? []), part]);
  const files = new Map<string, Buffer>();
  const broken = new Map<string, string>();
  for (const [name, parts] of byName) {
    const { parts: count, sha256 } = parts[0];
    const ordered = Array.from({ length: count }, (_, i) => parts.find((p) => p.part === i && p.sha256 === sha256));
    if (ordered.some((p) => !p)) {
      broken.set(name, `${ordered.filter(Boolean).length} of ${count} parts arrived`);
      continue;
    }
    const bytes = gunzipSync(Buffer.from(ordered.map((p) => p!.data).join(''), 'base64'));
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) broken.set(name, 'its SHA-256 does not match');
    else files.set(name, bytes);
  }
  return { files, broken };
}
