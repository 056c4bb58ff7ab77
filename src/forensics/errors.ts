/**
 * Errors of the forensics module. Each names the place it is about (a guest
 * address, a region, a file offset) so a researcher can go and look.
 *
 * Class names matter: the CLI maps names containing "Format" to exit code 1
 * (invalid input); the others are argument errors the commands map to 2.
 */

export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

/** The asked address or range lies in no region of the snapshot, or straddles two. */
export class AddressNotMappedError extends Error {
  constructor(readonly guestAddress: bigint, detail = 'no region of the snapshot holds it') {
    super(`guest address ${hex(guestAddress)}: ${detail}`);
    this.name = 'AddressNotMappedError';
  }
}

/** Tags were asked for in a region whose tags the snapshot does not hold. */
export class RegionNotTaggedError extends Error {
  constructor(readonly guestAddress: bigint, readonly region: string) {
    super(`guest address ${hex(guestAddress)} is in region "${region}", which is not an MTE region (no tags saved)`);
    this.name = 'RegionNotTaggedError';
  }
}

/** A command-line value (address, range, region name) could not be understood. */
export class ForensicsArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForensicsArgumentError';
  }
}

/** An ELF core file is malformed or is not an AArch64 core; `offset` is where in the file. */
export class ElfCoreFormatError extends Error {
  constructor(readonly path: string, readonly offset: bigint | number, detail: string) {
    super(`${path}: ELF core at file offset ${hex(offset)}: ${detail}`);
    this.name = 'ElfCoreFormatError';
  }
}

/** Two snapshots cannot be compared (different page size, or no region in common). */
export class SnapshotMismatchError extends Error {
  constructor(detail: string) {
    super(`snapshots cannot be compared: ${detail}`);
    this.name = 'SnapshotMismatchError';
  }
}
