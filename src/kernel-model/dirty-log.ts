/**
 * KVM's dirty log as virt/kvm/kvm_main.c keeps it (kvm_get_dirty_log_protect,
 * kvm_clear_dirty_log_protect, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2), for the
 * kernel model:
 *
 *  - a slot gets a bitmap, one bit per host page, when KVM_MEM_LOG_DIRTY_PAGES
 *    turns on (all pages set under manual protect with INITIALLY_SET) and
 *    loses it when logging turns off;
 *  - a guest store (and, as measured on the lab's KVM, a guest tag store)
 *    sets its page's bit; the VMM's own writes through its mapping and
 *    KVM_ARM_MTE_COPY_TAGS never do: they do not go through stage 2;
 *  - KVM_GET_DIRTY_LOG returns the bitmap and, without manual protect, clears
 *    it; KVM_CLEAR_DIRTY_LOG clears the bits it is given, in 64-page units.
 *
 * Errors follow the kernel's order: slot id (EINVAL), then for CLEAR the
 * first page's alignment (EINVAL), then a slot without a log (ENOENT), then
 * the range (EINVAL), then the user buffer (EFAULT).
 */
import { type ClearDirtyLogRequest, DIRTY_LOG_INITIALLY_SET, DIRTY_LOG_MANUAL_PROTECT, dirtyBitmapBytes, VmErrnoError } from '../vm/vm.js';
import { MAX_USER_MEMSLOTS } from './memslot-table.js';

/** The flags KVM_CHECK_EXTENSION(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) reports on arm64 (KVM_DIRTY_LOG_MANUAL_CAPS). */
export const MANUAL_DIRTY_LOG_CAPS = DIRTY_LOG_MANUAL_PROTECT | DIRTY_LOG_INITIALLY_SET;

/**
 * Whether a guest tag store (STG and friends) to a page whose data it does not write marks the page dirty. Measured
 * on the lab's KVM (conformance row dirty-log-tag-store-only, docs/vmm-guide.md): the architecture makes a tag store a
 * write access at stage 2, so the write-protected page faults into KVM, which logs it.
 */
export const GUEST_TAG_STORES_MARK_DIRTY = true;

/** as_id = slot >> 16 must be 0 on arm64 and the id below KVM_USER_MEM_SLOTS. */
function checkSlotId(slot: number, operation: string): void {
  const id = slot & 0xffff;
  if (!Number.isInteger(slot) || slot < 0 || slot >>> 16 !== 0 || id >= MAX_USER_MEMSLOTS) {
    throw new VmErrnoError('EINVAL', operation, `slot ${slot} is not a user memslot of address space 0`);
  }
}

export class DirtyLog {
  private readonly bitmaps = new Map<number, { pages: number; bits: Uint8Array }>();
  private manualFlags = 0;

  /** KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): INITIALLY_SET is only allowed together with manual protect. */
  enableManualProtect(flags: number): void {
    const allowed = flags & DIRTY_LOG_MANUAL_PROTECT ? MANUAL_DIRTY_LOG_CAPS : DIRTY_LOG_MANUAL_PROTECT;
    if (!Number.isInteger(flags) || flags < 0 || (flags & ~allowed) !== 0) {
      throw new VmErrnoError('EINVAL', 'KVM_ENABLE_CAP', `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags 0x${flags.toString(16)}`);
    }
    this.manualFlags = flags;
  }

  private get manualProtect(): boolean {
    return (this.manualFlags & DIRTY_LOG_MANUAL_PROTECT) !== 0;
  }

  /** KVM_SET_USER_MEMORY_REGION changed KVM_MEM_LOG_DIRTY_PAGES of a slot of `pages` pages. */
  loggingChanged(slot: number, pages: number, enabled: boolean): void {
    if (!enabled) {
      this.bitmaps.delete(slot);
      return;
    }
    if (this.bitmaps.has(slot)) return;
    const bits = new Uint8Array(dirtyBitmapBytes(pages));
    if (this.manualProtect && this.manualFlags & DIRTY_LOG_INITIALLY_SET) for (let page = 0; page < pages; page++) setBit(bits, page);
    this.bitmaps.set(slot, { pages, bits });
  }

  /** mark_page_dirty: a guest write reached `page` of `slot` through stage 2. */
  markDirty(slot: number, page: number): void {
    const log = this.bitmaps.get(slot);
    if (log) setBit(log.bits, page);
  }

  get(slot: number): Uint8Array {
    const operation = 'KVM_GET_DIRTY_LOG';
    checkSlotId(slot, operation);
    const log = this.logOf(slot, operation);
    const copy = log.bits.slice();
    if (!this.manualProtect) log.bits.fill(0);
    return copy;
  }

  clear(request: ClearDirtyLogRequest): void {
    const operation = 'KVM_CLEAR_DIRTY_LOG';
    checkSlotId(request.slot, operation);
    const { firstPage, numPages } = request;
    if (!Number.isInteger(firstPage) || firstPage < 0 || firstPage % 64 !== 0) {
      throw new VmErrnoError('EINVAL', operation, `first page ${firstPage} is not a multiple of 64`);
    }
    const log = this.logOf(request.slot, operation);
    const rest = log.pages - firstPage;
    if (
      !Number.isInteger(numPages) ||
      numPages < 0 ||
      firstPage > log.pages ||
      numPages > rest ||
      (numPages < rest && numPages % 64 !== 0)
    ) {
      throw new VmErrnoError(
        'EINVAL',
        operation,
        `pages ${firstPage}+${numPages} of a ${log.pages}-page slot: the count must be a multiple of 64 or reach the slot's end`,
      );
    }
    const bytes = dirtyBitmapBytes(numPages);
    if (request.bitmap.length < bytes) {
      throw new VmErrnoError('EFAULT', operation, `bitmap of ${request.bitmap.length} bytes, the kernel reads ${bytes}`);
    }
    // Whole 64-bit words, as the kernel's loop: bits past numPages in the last word clear pages past the range too.
    for (let byte = 0; byte < bytes; byte++) {
      const target = firstPage / 8 + byte;
      if (target < log.bits.length) log.bits[target] &= ~request.bitmap[byte];
    }
  }

  private logOf(slot: number, operation: string): { pages: number; bits: Uint8Array } {
    const log = this.bitmaps.get(slot);
    if (!log) throw new VmErrnoError('ENOENT', operation, `slot ${slot} does not exist or does not log dirty pages`);
    return log;
  }
}

function setBit(bits: Uint8Array, page: number): void {
  bits[page >> 3] |= 1 << (page & 7);
}
