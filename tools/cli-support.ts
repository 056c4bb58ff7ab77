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
import type { Command } from 'commander';
import { CommanderError } from 'commander';

export const EXIT = { ok: 0, invalid: 1, usage: 2, io: 3, differs: 4 } as const;

/** An error that knows its exit code. Library errors are mapped by `exitCodeFor`. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = 'CliError';
  }
}

/** JSON.stringify that writes bigints as decimal numbers and byte arrays as hex. */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) => {
      if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
      if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
      return v;
    },
    2,
  );
}

export function exitCodeFor(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  const name = (error as { name?: string })?.name ?? '';
  if (/Format|Validation|Snapshot|Checksum|Corrupt/.test(name)) return EXIT.invalid;
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
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? 0 : EXIT.usage;
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`vmsnap: ${message}\n`);
    if (process.env.VMSNAP_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    process.exitCode = exitCodeFor(error);
  }
}
