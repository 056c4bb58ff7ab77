/**
 * errno from a failed libc call, turned into the typed errors the rest of
 * vmsnap understands: `VmErrnoError` (src/vm/vm.ts) for the errnos the
 * KVM paths are known to return, `HostCallError` for anything else.
 */
import { VmsnapError } from '../../format/errors.js';
import { ERRNO, type ErrnoName, VmErrnoError } from '../../vm/vm.js';
import { lastErrno } from './libc.js';

/** errno values the backend tests by number but the Vm interface does not name. */
export const EINTR = 4;

const NAME_BY_NUMBER = new Map<number, ErrnoName>(Object.entries(ERRNO).map(([name, value]) => [value, name as ErrnoName]));

/** A libc call failed with an errno the KVM interface does not name. */
export class HostCallError extends VmsnapError {
  constructor(
    readonly errno: number,
    readonly operation: string,
    detail?: string,
  ) {
    super('host-call-failed', 'backend', `${operation}: errno ${errno}${detail ? ` (${detail})` : ''}`);
  }
}

export function errnoError(errno: number, operation: string, detail?: string): VmErrnoError | HostCallError {
  const name = NAME_BY_NUMBER.get(errno);
  return name ? new VmErrnoError(name, operation, detail) : new HostCallError(errno, operation, detail);
}

/** Throws the typed error for the current errno when a libc call returned -1. */
export function check(result: number, operation: string, detail?: string): number {
  if (result < 0) throw errnoError(lastErrno(), operation, detail);
  return result;
}
