/**
 * What the parent and the child of the "other process" tag copy exchange
 * (other-process-copy-main.ts is the child): the request on the command line
 * as JSON, the answer as one JSON line on stdout.
 */
import type { CopyMteTagsRequest } from '../../src/vm/vm.js';

/** The request as it crosses the process boundary: bigints as decimal strings, the buffer as hex. */
export interface SerialisedCopyRequest {
  guestIpa: string;
  length: string;
  flags: string;
  reserved: [string, string];
  buffer: string | null;
}

export type OtherProcessAnswer = { result: number } | { errno: string } | { error: string };

export const INHERITED_VM_FD = 3;

export function serialiseCopyRequest(request: CopyMteTagsRequest): SerialisedCopyRequest {
  return {
    guestIpa: request.guestIpa.toString(),
    length: request.length.toString(),
    flags: request.flags.toString(),
    reserved: [request.reserved[0].toString(), request.reserved[1].toString()],
    buffer: request.buffer ? Buffer.from(request.buffer).toString('hex') : null,
  };
}

export function deserialiseCopyRequest(text: string): CopyMteTagsRequest {
  const s = JSON.parse(text) as SerialisedCopyRequest;
  return {
    guestIpa: BigInt(s.guestIpa),
    length: BigInt(s.length),
    flags: BigInt(s.flags),
    reserved: [BigInt(s.reserved[0]), BigInt(s.reserved[1])],
    buffer: s.buffer === null ? null : Uint8Array.from(Buffer.from(s.buffer, 'hex')),
  };
}
