/**
 * Whole-range tag copies on top of KVM_ARM_MTE_COPY_TAGS, whose calls may stop
 * partway: each call is bounded (glibc's ioctl returns an int, and kernels
 * since ~6.3 refuse more than INT_MAX bytes), a partial return moves on from
 * where the kernel stopped, and a failure names the IPA it stopped at.
 */
import { VmsnapError } from '../format/errors.js';
import { type GuestAddress, TAGS_FROM_GUEST, TAGS_TO_GUEST, VmErrnoError, type VmSource } from './vm.js';

/** The part of a VM that copies tags (every source and target has it). */
export type TagCopier = Pick<VmSource, 'pageSize' | 'copyMteTags'>;

import { GRANULE_SIZE } from '../format/constants.js';

/** Guest bytes per ioctl: far below 1 GiB, and a whole number of 64 KiB pages. */
export const MAX_TAG_COPY_BYTES = 256 * 1024 * 1024;

export class TagCopyError extends VmsnapError {
  constructor(
    readonly direction: 'from-guest' | 'to-guest',
    readonly guestAddress: GuestAddress,
    readonly errno: string,
    cause?: unknown,
  ) {
    super(
      'tag-copy-failed',
      'backend',
      `copying tags ${direction === 'from-guest' ? 'from' : 'to'} the guest failed at IPA 0x${guestAddress.toString(16)}: ${errno}`,
      { cause },
    );
  }
}

function copyTags(vm: TagCopier, guestAddress: GuestAddress, tags: Uint8Array, flags: bigint): void {
  const direction = flags === TAGS_FROM_GUEST ? 'from-guest' : 'to-guest';
  const total = tags.length * GRANULE_SIZE;
  let done = 0;
  while (done < total) {
    const length = Math.min(total - done, MAX_TAG_COPY_BYTES);
    const at = guestAddress + BigInt(done);
    let copied: number;
    try {
      copied = vm.copyMteTags({
        guestIpa: at,
        length: BigInt(length),
        flags,
        reserved: [0n, 0n],
        buffer: tags.subarray(done / GRANULE_SIZE, (done + length) / GRANULE_SIZE),
      });
    } catch (error) {
      throw new TagCopyError(direction, at, error instanceof VmErrnoError ? error.code : String(error), error);
    }
    // A partial return is a whole number of pages; the next call starts at the page that failed.
    if (copied <= 0 || copied > length || copied % vm.pageSize !== 0) {
      throw new TagCopyError(direction, at + BigInt(Math.max(copied, 0)), `no progress (returned ${copied})`);
    }
    done += copied;
  }
}

/** Reads the tags of [guestAddress, guestAddress + tags.length * 16) into `tags`, one per granule. */
export function readGuestTags(vm: TagCopier, guestAddress: GuestAddress, tags: Uint8Array): void {
  copyTags(vm, guestAddress, tags, TAGS_FROM_GUEST);
}

/** The tags of `length` guest bytes at `guestAddress`, one per granule, in a new buffer. */
export function guestTags(vm: TagCopier, guestAddress: GuestAddress, length: number): Uint8Array {
  const tags = new Uint8Array(length / GRANULE_SIZE);
  readGuestTags(vm, guestAddress, tags);
  return tags;
}

/** Writes one tag per granule from `tags` to [guestAddress, guestAddress + tags.length * 16). */
export function writeGuestTags(vm: TagCopier, guestAddress: GuestAddress, tags: Uint8Array): void {
  copyTags(vm, guestAddress, tags, TAGS_TO_GUEST);
}
