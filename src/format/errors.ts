/**
 * One error type for everything wrong with a snapshot's bytes. It names where:
 * the section (type and file offset), the byte offset of the bad field, and the
 * guest address when the fault concerns guest memory.
 */

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

export class SnapshotFormatError extends Error {
  constructor(
    readonly code: FormatErrorCode,
    message: string,
    readonly location: FormatErrorLocation = {},
  ) {
    super(`${message}${describeLocation(location)}`);
    this.name = 'SnapshotFormatError';
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
