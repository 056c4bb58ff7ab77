/**
 * Errors of the forensics module. Each names the place it is about (a guest
 * address, a region, a file offset) so a researcher can go and look.
 */
import { VmsnapError } from '../format/errors.js';

export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

/** The asked address or range lies in no region of the snapshot, or straddles two. */
export class AddressNotMappedError extends VmsnapError {
  constructor(
    readonly guestAddress: bigint,
    detail = 'no region of the snapshot holds it',
  ) {
    super('address-not-mapped', 'usage', `guest address ${hex(guestAddress)}: ${detail}`);
  }
}

/** Tags were asked for in a region whose tags the snapshot does not hold. */
export class RegionNotTaggedError extends VmsnapError {
  constructor(
    readonly guestAddress: bigint,
    readonly region: string,
  ) {
    super(
      'region-not-tagged',
      'usage',
      `guest address ${hex(guestAddress)} is in region "${region}", which is not an MTE region (no tags saved)`,
    );
  }
}

/** A command-line value (address, range, region name) could not be understood. */
export class ForensicsArgumentError extends VmsnapError {
  constructor(message: string) {
    super('bad-argument', 'usage', message);
  }
}

/** An ELF core file is malformed or is not an AArch64 core; `offset` is where in the file. */
export class ElfCoreFormatError extends VmsnapError {
  constructor(
    readonly path: string,
    readonly offset: bigint | number,
    detail: string,
  ) {
    super('bad-elf-core', 'invalid-input', `${path}: ELF core at file offset ${hex(offset)}: ${detail}`);
  }
}

/** Two snapshots cannot be compared (different page size, or no region in common). */
export class SnapshotMismatchError extends VmsnapError {
  constructor(detail: string) {
    super('snapshots-not-comparable', 'usage', `snapshots cannot be compared: ${detail}`);
  }
}
