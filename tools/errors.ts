/**
 * Turns the operating system's errors into one line that says what failed
 * and on which file ("cannot open snap.vmsnap: no such file or directory"),
 * with the I/O exit code. Library errors already name their place (section,
 * offset, IPA) and pass through to runMain unchanged.
 */
import { CliError, EXIT } from './cli-support.js';

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

export function describeSystemError(error: unknown): CliError | undefined {
  if (!isSystemError(error)) return undefined;
  const reason = REASONS[error.code] ?? error.message;
  const what = error.syscall ? `cannot ${error.syscall}${error.path ? ` ${error.path}` : ''}` : 'I/O failed';
  return new CliError(`${what}: ${reason} (${error.code})`, EXIT.io);
}

/** Wraps a command action so system errors come out as one located line. */
export function reportingSystemErrors<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      throw describeSystemError(error) ?? error;
    }
  };
}
