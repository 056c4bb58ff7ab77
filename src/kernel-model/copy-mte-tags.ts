/**
 * KVM_ARM_MTE_COPY_TAGS as arch/arm64/kvm/guest.c implements it
 * (kvm_vm_ioctl_mte_copy_tags), the one place the model keeps its rules:
 *
 *   1. argument checks, in the kernel's order: MTE enabled, reserved words,
 *      flags, page alignment of guest_ipa and length, then (6.3+) length above
 *      INT_MAX, then (6.12+) EBUSY for TO_GUEST while dirty logging is on;
 *   2. a loop over host pages: no memslot (or a read-only one for a write)
 *      faults; FROM_GUEST copies the tags of a tagged page or zeros; TO_GUEST
 *      stores the low nibble of each byte and marks the page tagged;
 *   3. a user buffer that ends inside a page faults there: FROM_GUEST has
 *      written what fit, TO_GUEST leaves the page half written (6.1) or clears
 *      its tags and marks it tagged (6.2+);
 *   4. the return value counts guest bytes of whole pages done; an error with
 *      nothing done is thrown as VmErrnoError.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import { type CopyMteTagsRequest, type ErrnoName, TAGS_FROM_GUEST, VmErrnoError } from '../vm/vm.js';
import type { KernelBehaviour } from './kernel-version.js';
import { hex, type MemslotTable, type ModelSlot } from './memslot-table.js';

const OPERATION = 'KVM_ARM_MTE_COPY_TAGS';
const INT_MAX = 0x7fffffffn;
const U64 = (value: bigint): bigint => BigInt.asUintN(64, value);

export interface TagCopyContext {
  readonly pageSize: number;
  readonly behaviour: KernelBehaviour;
  readonly mteEnabled: boolean;
  readonly memslots: MemslotTable;
}

/** Why a page could not be copied; becomes the thrown error if it was the first page. */
class PageFault {
  constructor(
    readonly code: ErrnoName,
    readonly detail: string,
  ) {}
}

export function copyMteTags(context: TagCopyContext, request: CopyMteTagsRequest): number {
  checkArguments(context, request);
  const guestIpa = U64(request.guestIpa);
  const length = U64(request.length);
  const write = (U64(request.flags) & TAGS_FROM_GUEST) === 0n;
  if (write && context.behaviour.busyWritingTagsWhileDirtyLogging && context.memslots.anyDirtyLogging()) {
    throw new VmErrnoError('EBUSY', OPERATION, 'TO_GUEST while a memslot has dirty logging enabled (Linux 6.12+)');
  }

  const pageSize = BigInt(context.pageSize);
  const pages = length / pageSize;
  const copier = new PageCopier(context.pageSize, request.buffer);
  let done = 0n;
  for (let index = 0n; index < pages; index++) {
    const ipa = guestIpa + index * pageSize;
    const fault = copier.copyPage(context, ipa, Number(index), write);
    if (fault) {
      if (done === 0n) throw new VmErrnoError(fault.code, OPERATION, fault.detail);
      break;
    }
    done += pageSize;
  }
  return returnValue(context.behaviour, done);
}

function checkArguments(context: TagCopyContext, request: CopyMteTagsRequest): void {
  const fail = (detail: string): never => {
    throw new VmErrnoError('EINVAL', OPERATION, detail);
  };
  if (!context.mteEnabled) fail('MTE is not enabled on this VM');
  if (U64(request.reserved[0]) !== 0n || U64(request.reserved[1]) !== 0n) fail('reserved words must be zero');
  if ((U64(request.flags) & ~TAGS_FROM_GUEST) !== 0n) fail(`flags ${hex(U64(request.flags))} is neither TO_GUEST (0) nor FROM_GUEST (1)`);
  const pageMask = BigInt(context.pageSize - 1);
  if ((U64(request.length) & pageMask) !== 0n || (U64(request.guestIpa) & pageMask) !== 0n) {
    fail(`IPA ${hex(U64(request.guestIpa))} or length ${hex(U64(request.length))} not aligned to the ${context.pageSize}-byte host page`);
  }
  if (context.behaviour.rejectsLengthAboveIntMax && U64(request.length) > INT_MAX) {
    fail(`length ${hex(U64(request.length))} above INT_MAX (Linux 6.3+)`);
  }
}

/** Before 6.3 kvm_vm_ioctl kept the result in an int, so large counts wrap as the caller sees them. */
function returnValue(behaviour: KernelBehaviour, done: bigint): number {
  return behaviour.rejectsLengthAboveIntMax ? Number(done) : Number(BigInt.asIntN(32, done));
}

/** Moves one page's tags between the guest and the user buffer; owns the scratch space. */
class PageCopier {
  private readonly granulesPerPage: number;
  private readonly scratch: Uint8Array;

  constructor(
    private readonly pageSize: number,
    private readonly buffer: Uint8Array | null,
  ) {
    this.granulesPerPage = pageSize / GRANULE_SIZE;
    this.scratch = new Uint8Array(this.granulesPerPage);
  }

  copyPage(context: TagCopyContext, ipa: bigint, pageIndex: number, write: boolean): PageFault | null {
    const slot = context.memslots.find(ipa);
    if (!slot) return new PageFault('EFAULT', `IPA ${hex(ipa)} has no memslot`);
    const mappingFault = write ? this.checkWritable(slot, ipa) : null;
    if (mappingFault) return mappingFault;
    const page = Number((ipa - slot.info.guestAddress) / BigInt(this.pageSize));
    const userOffset = pageIndex * this.granulesPerPage;
    const available = this.userBytesAvailable(userOffset);
    const complete = write
      ? this.writePage(context.behaviour, slot, page, userOffset, available)
      : this.readPage(slot, page, userOffset, available);
    if (complete) return null;
    const where = `user buffer of ${this.buffer?.length ?? 0} bytes ends inside the tags of IPA ${hex(ipa)}`;
    return new PageFault('EFAULT', this.buffer ? where : `NULL user buffer at IPA ${hex(ipa)}`);
  }

  /** gfn_to_pfn_prot(write = true): a read-only slot, or a store without tags, cannot take tags. */
  private checkWritable(slot: ModelSlot, ipa: bigint): PageFault | null {
    if (slot.info.readOnly) return new PageFault('EFAULT', `IPA ${hex(ipa)} is in read-only slot ${slot.info.slot} (${slot.info.name})`);
    if (slot.storage.tagAccess !== 'read-write') {
      const why = slot.storage.tagAccess === 'none' ? 'keeps no tags' : 'is read-only';
      return new PageFault('EFAULT', `IPA ${hex(ipa)} is in slot ${slot.info.slot} (${slot.info.name}) whose store ${why}`);
    }
    return null;
  }

  /** How many of this page's tag bytes the user buffer maps (a NULL or short buffer maps fewer). */
  private userBytesAvailable(userOffset: number): number {
    if (!this.buffer) return 0;
    return Math.max(0, Math.min(this.granulesPerPage, this.buffer.length - userOffset));
  }

  /** mte_copy_tags_to_user, or clear_user for a page never tagged. */
  private readPage(slot: ModelSlot, page: number, userOffset: number, available: number): boolean {
    if (available > 0 && this.buffer) {
      const destination = this.buffer.subarray(userOffset, userOffset + available);
      if (slot.storage.tagAccess !== 'none' && slot.storage.isPageTagged(page)) slot.storage.readTags(page, 0, destination);
      else destination.fill(0);
    }
    return available === this.granulesPerPage;
  }

  /** mte_copy_tags_from_user: the hardware keeps only the low nibble of each byte. */
  private writePage(behaviour: KernelBehaviour, slot: ModelSlot, page: number, userOffset: number, available: number): boolean {
    const storage = slot.storage;
    if (available > 0 && this.buffer) {
      const tags = this.scratch.subarray(0, available);
      for (let i = 0; i < available; i++) tags[i] = this.buffer[userOffset + i] & 0x0f;
      storage.writeTags(page, 0, tags);
    }
    const complete = available === this.granulesPerPage;
    if (complete) {
      storage.markPageTagged(page);
    } else if (behaviour.clearsTagsOnFaultedWrite) {
      // 6.2+: "uaccess failed, don't leave stale tags", then the page counts as tagged.
      storage.clearPageTags(page);
      storage.markPageTagged(page);
    }
    return complete;
  }
}
