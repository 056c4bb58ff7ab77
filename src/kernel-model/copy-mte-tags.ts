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
import { keepLowNibbles } from '../format/tag-packing.js';
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

/** Pages copied with one store call at most: bounds the scratch space of a write (4 MiB of tags with 64 KiB pages). */
const MAX_RUN_PAGES = 1024n;

/** `source` with each byte's high nibble cleared, in `into`. */
function lowNibbles(source: Uint8Array, into: Uint8Array): Uint8Array {
  into.set(source);
  keepLowNibbles(into);
  return into;
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
  // Page by page as the kernel goes, a run of pages in one memslot at a time: the first page that faults ends the copy.
  while (done < length) {
    const index = done / pageSize;
    const run = copier.copyRun(context, guestIpa + done, Number(index), pages - index, write);
    done += BigInt(run.pages) * pageSize;
    if (run.fault) {
      if (done === 0n) throw new VmErrnoError(run.fault.code, OPERATION, run.fault.detail);
      break;
    }
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

/** Moves tags between the guest and the user buffer, a run of pages at a time; owns the scratch space. */
class PageCopier {
  private readonly granulesPerPage: number;
  private scratch = new Uint8Array(0);

  constructor(
    private readonly pageSize: number,
    private readonly buffer: Uint8Array | null,
  ) {
    this.granulesPerPage = pageSize / GRANULE_SIZE;
  }

  /**
   * Copies pages from `ipa` on (`pageIndex` of the request, at most `remaining`)
   * while they stay in one memslot: what copying them one by one would do,
   * with one store call per run of pages. Stops at the first page that faults.
   */
  copyRun(
    context: TagCopyContext,
    ipa: bigint,
    pageIndex: number,
    remaining: bigint,
    write: boolean,
  ): { pages: number; fault: PageFault | null } {
    const slot = context.memslots.find(ipa);
    if (!slot) return { pages: 0, fault: new PageFault('EFAULT', `IPA ${hex(ipa)} has no memslot`) };
    const mappingFault = write ? this.checkWritable(slot, ipa) : null;
    if (mappingFault) return { pages: 0, fault: mappingFault };
    const page = Number((ipa - slot.info.guestAddress) / BigInt(this.pageSize));
    const inSlot = Math.min(Number(remaining < MAX_RUN_PAGES ? remaining : MAX_RUN_PAGES), slot.storage.pageCount - page);
    // Pages the user buffer covers whole; the page after them (if any in this run) is where the buffer ends.
    const whole = Math.min(inSlot, Math.floor(this.userBytesAvailable(pageIndex * this.granulesPerPage, inSlot) / this.granulesPerPage));
    if (whole > 0) {
      if (write) this.writePages(slot, page, pageIndex * this.granulesPerPage, whole);
      else this.readTags(slot, page, pageIndex * this.granulesPerPage, whole * this.granulesPerPage);
    }
    if (whole === inSlot) return { pages: whole, fault: null };
    const endIpa = ipa + BigInt(whole * this.pageSize);
    return { pages: whole, fault: this.copyPartialPage(context, slot, endIpa, page + whole, pageIndex + whole, write) };
  }

  /** The page where the user buffer ends (or a NULL buffer): what of it can be copied is, then it faults. */
  private copyPartialPage(
    context: TagCopyContext,
    slot: ModelSlot,
    ipa: bigint,
    page: number,
    pageIndex: number,
    write: boolean,
  ): PageFault {
    const userOffset = pageIndex * this.granulesPerPage;
    const available = this.userBytesAvailable(userOffset, 1);
    if (write) this.writePartialPage(context.behaviour, slot, page, userOffset, available);
    else if (available > 0) this.readTags(slot, page, userOffset, available);
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

  /** How many tag bytes of `pages` pages from `userOffset` the user buffer maps (a NULL or short buffer maps fewer). */
  private userBytesAvailable(userOffset: number, pages: number): number {
    if (!this.buffer) return 0;
    return Math.max(0, Math.min(pages * this.granulesPerPage, this.buffer.length - userOffset));
  }

  /**
   * mte_copy_tags_to_user, or clear_user for pages never tagged: `granules`
   * tags from the start of `page` on, one store call per run of tagged pages.
   */
  private readTags(slot: ModelSlot, page: number, userOffset: number, granules: number): void {
    const storage = slot.storage;
    const perPage = this.granulesPerPage;
    const tagged = (p: number) => storage.tagAccess !== 'none' && storage.isPageTagged(page + p);
    for (let first = 0; first * perPage < granules; ) {
      const kind = tagged(first);
      let end = first + 1;
      while (end * perPage < granules && tagged(end) === kind) end++;
      const destination = this.buffer!.subarray(userOffset + first * perPage, userOffset + Math.min(end * perPage, granules));
      if (kind) storage.readTags(page + first, 0, destination);
      else destination.fill(0);
      first = end;
    }
  }

  /** mte_copy_tags_from_user for whole pages: the hardware keeps only the low nibble of each byte. */
  private writePages(slot: ModelSlot, page: number, userOffset: number, pages: number): void {
    const granules = pages * this.granulesPerPage;
    slot.storage.writeTags(page, 0, lowNibbles(this.buffer!.subarray(userOffset, userOffset + granules), this.scratchOf(granules)));
    for (let p = 0; p < pages; p++) slot.storage.markPageTagged(page + p);
  }

  /** The page the user buffer ends inside: 6.1 leaves it half written, 6.2+ clears its tags; 6.2+ marks it tagged. */
  private writePartialPage(behaviour: KernelBehaviour, slot: ModelSlot, page: number, userOffset: number, available: number): void {
    const storage = slot.storage;
    if (available > 0 && this.buffer) {
      storage.writeTags(page, 0, lowNibbles(this.buffer.subarray(userOffset, userOffset + available), this.scratchOf(available)));
    }
    if (behaviour.clearsTagsOnFaultedWrite) {
      // 6.2+: "uaccess failed, don't leave stale tags", then the page counts as tagged.
      storage.clearPageTags(page);
      storage.markPageTagged(page);
    }
  }

  private scratchOf(length: number): Uint8Array {
    if (this.scratch.length < length) this.scratch = new Uint8Array(length);
    return this.scratch.subarray(0, length);
  }
}
