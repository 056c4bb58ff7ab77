/**
 * vmsnap's errors. Every error the library throws on purpose is a
 * `VmsnapError`: a stable `code` a program can test, and a `kind` that says
 * whose fault it is, from which the CLI picks its exit code. Nothing is
 * classified by class name or message text.
 *
 * The base class lives in the bottom layer so that every layer, the format
 * included, can extend it; `src/errors.ts` gathers all error classes for the
 * public API, and docs/errors.md lists every code.
 *
 * A format error names where: the section (type and file offset), the byte
 * offset of the bad field, and the guest address when it concerns guest memory.
 */

/**
 * Whose fault an error is:
 *  - invalid-input: a snapshot, core, layout or raw file is malformed or inconsistent (exit 1);
 *  - usage: the caller asked for something impossible or meaningless (exit 2);
 *  - io: the file system or a stream failed (exit 3);
 *  - backend: KVM, the host or the VM refused or failed (exit 3);
 *  - difference: a comparison found the two sides differ (exit 4).
 */
export type ErrorKind = 'invalid-input' | 'usage' | 'io' | 'backend' | 'difference';

export class VmsnapError extends Error {
  constructor(
    /** Stable and documented (docs/errors.md): test it, not the message. */
    readonly code: string,
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export interface FormatErrorLocation {
  /** Section type ("RAMC", "META", ...) or a part of the file ("header", "trailer"). */
  section?: string;
  /** File offset of the bad field or section. */
  offset?: bigint | number;
  region?: number;
  /** Guest physical address concerned. */
  guestAddress?: bigint;
}

export type FormatErrorCode =
  | 'bad-magic'
  | 'unsupported-version'
  | 'bad-header'
  | 'checksum-mismatch'
  | 'truncated'
  | 'limit-exceeded'
  | 'unknown-critical-section'
  | 'bad-section'
  | 'bad-chunk'
  | 'bad-metadata'
  | 'bad-index'
  | 'bad-trailer'
  | 'decompression-failed'
  | 'layout-mismatch';

/** The bytes of a snapshot break a rule of spec/FORMAT.md. */
export class SnapshotFormatError extends VmsnapError {
  declare readonly code: FormatErrorCode;
  constructor(
    code: FormatErrorCode,
    message: string,
    readonly location: FormatErrorLocation = {},
  ) {
    super(code, 'invalid-input', `${message}${describeLocation(location)}`);
  }
}

export function describeLocation(location: FormatErrorLocation): string {
  const parts: string[] = [];
  if (location.section) parts.push(`section ${location.section}`);
  if (location.offset !== undefined) parts.push(`offset ${location.offset} (0x${location.offset.toString(16)})`);
  if (location.region !== undefined) parts.push(`region ${location.region}`);
  if (location.guestAddress !== undefined) parts.push(`IPA 0x${location.guestAddress.toString(16)}`);
  return parts.length ? ` [${parts.join(', ')}]` : '';
}
