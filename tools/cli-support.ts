/**
 * What every command shares: exit codes, error reporting, JSON output.
 *
 * Exit codes (documented in the README and in `vmsnap --help`):
 *   0  success
 *   1  the snapshot or input is invalid (a validation or format error)
 *   2  usage error (bad arguments)
 *   3  I/O or backend failure (file system, KVM)
 *   4  a comparison found differences (verify after restore, tags diff --fail)
 */

import { statSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CommanderError } from 'commander';
// The error base alone: src/errors.ts gathers every class, and importing it would load most of the library at every start.
import { type ErrorKind, VmsnapError } from '../src/format/errors.js';
import { JSON_SCHEMA_VERSION, toJsonValue } from '../src/json.js';
import { phaseTimes } from '../src/parallel/phase-clock.js';

export const EXIT = { ok: 0, invalid: 1, usage: 2, io: 3, differs: 4 } as const;

/** The exit code of each kind of error: the README's table. */
const EXIT_BY_KIND: Readonly<Record<ErrorKind, number>> = {
  'invalid-input': EXIT.invalid,
  usage: EXIT.usage,
  io: EXIT.io,
  backend: EXIT.io,
  difference: EXIT.differs,
};

const CLI_CODES: Readonly<Record<ErrorKind, string>> = {
  'invalid-input': 'invalid-input',
  usage: 'bad-argument',
  io: 'io-failed',
  backend: 'backend-failed',
  difference: 'differs',
};

/** An error the CLI itself raises (a bad option, a refused output). */
export class CliError extends VmsnapError {
  constructor(message: string, kind: ErrorKind) {
    super(CLI_CODES[kind], kind, message);
  }
}

/** An input file must be a file: a directory gets a one-line usage error naming it (reads report EISDIR without a name). */
export function checkInputFile(path: string): void {
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory())
    throw new CliError(`${path}: is a directory; name a snapshot file`, 'usage');
}

/** A snapshot named on the command line: a path, or "-" for standard input, which must not be a terminal. */
export function snapshotInput(name: string, command: string): { source: string | NodeJS.ReadableStream; description: string } {
  if (name !== '-') {
    checkInputFile(name);
    return { source: name, description: name };
  }
  if (process.stdin.isTTY) throw new CliError(`${command} -: standard input is a terminal; pipe a snapshot into it`, 'usage');
  return { source: process.stdin, description: 'standard input' };
}

/** Standard output as a command's data output ("-o -"), which must not be a terminal. */
export function standardOutput(what: string): NodeJS.WritableStream {
  if (process.stdout.isTTY) throw new CliError(`${what}: standard output is a terminal; redirect it to a file or a pipe`, 'usage');
  return process.stdout;
}

/** A `--json` output: `schemaVersion` first, then `value` by the library's one JSON rule (src/json.ts). */
export function toJson(value: object): string {
  return JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, ...(toJsonValue(value) as object) }, null, 2);
}

/** The exit code for an error: by its kind; an operating-system error is I/O; anything else is a bug, reported as I/O. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof VmsnapError) return EXIT_BY_KIND[error.kind];
  return EXIT.io;
}

/**
 * A reader that closes our standard output early (`vmsnap info F | head -1`)
 * is not an error worth a stack trace: further output is dropped. A snapshot
 * written to standard output sees the same error through its own stream
 * handling, and fails with exit code 3.
 */
function ignoreClosedStdout(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

export async function runMain(program: Command, argv: string[]): Promise<void> {
  ignoreClosedStdout();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    // For the bench (issue 10): where the time went, by phase.
    if (process.env.VMSNAP_PHASES) writeFileSync(process.env.VMSNAP_PHASES, `${JSON.stringify(phaseTimes())}\n`);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? 0 : EXIT.usage;
      return;
    }
    const reported = error instanceof VmsnapError ? error : (describeSystemError(error) ?? error);
    const message = reported instanceof Error ? reported.message : String(reported);
    const internal = !(reported instanceof VmsnapError);
    process.stderr.write(`vmsnap: ${internal ? 'internal error: ' : ''}${message}\n`);
    if (internal) process.stderr.write('vmsnap: this is a bug; VMSNAP_DEBUG=1 prints its stack\n');
    if (process.env.VMSNAP_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    process.exitCode = exitCodeFor(reported);
  }
}

interface SystemError extends Error {
  code: string;
  syscall?: string;
  path?: string;
}

const REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent is not a directory',
  ENOSPC: 'no space left on device',
  EEXIST: 'already exists',
  EPIPE: 'the reader of the pipe went away',
  EROFS: 'read-only file system',
};

function isSystemError(error: unknown): error is SystemError {
  return error instanceof Error && typeof (error as SystemError).code === 'string' && /^E[A-Z]+$/.test((error as SystemError).code);
}

/** An operating-system error as one located line, with the I/O exit code. */
export function describeSystemError(error: unknown): CliError | undefined {
  if (!isSystemError(error)) return undefined;
  const reason = REASONS[error.code] ?? error.message;
  const what = error.syscall ? `cannot ${error.syscall}${error.path ? ` ${error.path}` : ''}` : 'I/O failed';
  return new CliError(`${what}: ${reason} (${error.code})`, 'io');
}
