/**
 * One KVM_ARM_MTE_COPY_TAGS call on a VM fd, with the `CopyMteTagsRequest`
 * semantics of src/vm/vm.ts: the tag buffer is copied into native memory
 * that ends in a guard page, so the kernel faults exactly where the caller's
 * buffer ends, and copied back after a FROM_GUEST. Values go to the kernel as
 * given (truncated to 64 bits) so invalid requests get the kernel's own errno.
 */
import { type CopyMteTagsRequest, TAGS_FROM_GUEST, TAGS_TO_GUEST } from '../../vm/vm.js';
import { errnoError } from './errno.js';
import { GuardedBuffer } from './host-memory.js';
import { KVM_ARM_COPY_MTE_TAGS_STRUCT, KVM_ARM_MTE_COPY_TAGS } from './kvm-abi.js';
import { ioctlBuffer, lastErrno } from './libc.js';

/** Returns the guest bytes done; throws VmErrnoError (or HostCallError) when the kernel returned -1. */
export function issueCopyMteTags(vmFd: number, request: CopyMteTagsRequest, pageSize: number): number {
  const native = request.buffer ? new GuardedBuffer(request.buffer.length, pageSize) : null;
  try {
    if (native && request.buffer) native.bytes.set(request.buffer);
    const result = ioctlBuffer(vmFd, KVM_ARM_MTE_COPY_TAGS, encodeCopyRequest(request, native?.address ?? 0n));
    if (result < 0) throw errnoError(lastErrno(), 'KVM_ARM_MTE_COPY_TAGS', describeCopy(request));
    if (native && request.buffer && request.flags === TAGS_FROM_GUEST) request.buffer.set(native.bytes);
    return result;
  } finally {
    native?.release();
  }
}

function encodeCopyRequest(request: CopyMteTagsRequest, bufferAddress: bigint): Buffer {
  const layout = KVM_ARM_COPY_MTE_TAGS_STRUCT;
  const struct = layout.allocate();
  layout.write(struct, 'guest_ipa', BigInt.asUintN(64, request.guestIpa));
  layout.write(struct, 'length', BigInt.asUintN(64, request.length));
  layout.write(struct, 'addr', bufferAddress);
  layout.write(struct, 'flags', BigInt.asUintN(64, request.flags));
  layout.write(struct, 'reserved', BigInt.asUintN(64, request.reserved[0]), 0);
  layout.write(struct, 'reserved', BigInt.asUintN(64, request.reserved[1]), 1);
  return struct;
}

function describeCopy(request: CopyMteTagsRequest): string {
  const direction =
    request.flags === TAGS_TO_GUEST
      ? 'TO_GUEST'
      : request.flags === TAGS_FROM_GUEST
        ? 'FROM_GUEST'
        : `flags 0x${request.flags.toString(16)}`;
  return `IPA 0x${request.guestIpa.toString(16)}, length 0x${request.length.toString(16)}, ${direction}`;
}
