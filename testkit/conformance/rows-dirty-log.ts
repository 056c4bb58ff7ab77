/**
 * Dirty logging as KVM does it (KVM_MEM_LOG_DIRTY_PAGES, KVM_GET_DIRTY_LOG,
 * KVM_CLEAR_DIRTY_LOG, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): which calls fail
 * how, what marks a page dirty and what clears it. The rows with guest
 * accesses run guest code (the store probe on KVM, the kernel model's guest
 * stores on the simulator); one of them settles whether a tag-only store
 * (STG, data untouched) marks its page, which a live checkpoint relies on.
 */
import {
  type ClearDirtyLogRequest,
  DIRTY_LOG_INITIALLY_SET,
  DIRTY_LOG_MANUAL_PROTECT,
  dirtyBitmapBytes,
  dirtyPages,
  type Vm,
} from '../../src/vm/vm.js';
import {
  atLeast,
  expectBytes,
  expectErrno,
  expectTrue,
  fromGuest,
  readTags,
  SLOT_NUMBER,
  tagPattern,
  toGuest,
  withSlot,
  zeros,
} from './fixtures.js';
import { ConformanceMismatch, type ConformanceRow, type ConformanceTarget, type GuestAccess } from './types.js';

/** Measured on the lab's KVM (Linux 6.1, QEMU's emulated arm64 host): a tag-only store marks its page dirty. */
const TAG_ONLY_STORE_MARKS_DIRTY = true;

function expectDirty(vm: Vm, expected: number[], what: string): void {
  const pages = dirtyPages(vm.getDirtyLog(SLOT_NUMBER));
  if (pages.join(',') !== expected.join(',')) {
    throw new ConformanceMismatch(`${what}: dirty pages [${pages.join(', ')}], expected [${expected.join(', ')}]`);
  }
}

function clearRequest(firstPage: number, numPages: number, pages: number[], bytes = dirtyBitmapBytes(numPages)): ClearDirtyLogRequest {
  const bitmap = new Uint8Array(bytes);
  for (const page of pages) bitmap[(page - firstPage) >> 3] |= 1 << ((page - firstPage) & 7);
  return { slot: SLOT_NUMBER, firstPage, numPages, bitmap };
}

function guestOf(target: ConformanceTarget, vm: Vm): GuestAccess {
  if (!target.guestAccess) throw new Error(`${target.name} runs no guest code`);
  return target.guestAccess(vm);
}

const hasGuest = (target: ConformanceTarget): boolean => target.guestAccess !== undefined;

export const dirtyLogRows: ConformanceRow[] = [
  {
    id: 'dirty-log-get',
    title: 'KVM_GET_DIRTY_LOG: ENOENT without a log, EINVAL outside the slot ids; the VMM marks nothing; logging off drops the log',
    run: (target) =>
      withSlot(target, { pages: 4 }, ({ vm, pageSize, tagsPerPage, slotIpa, pageIpa }) => {
        expectErrno('ENOENT', 'getDirtyLog of a slot that does not log', () => vm.getDirtyLog(SLOT_NUMBER));
        expectErrno('ENOENT', 'getDirtyLog of a slot that does not exist', () => vm.getDirtyLog(5));
        expectErrno('EINVAL', 'getDirtyLog of slot 32767 (KVM_USER_MEM_SLOTS)', () => vm.getDirtyLog(32767));
        expectErrno('EINVAL', 'getDirtyLog of address space 1', () => vm.getDirtyLog(1 << 16));
        vm.setDirtyLogging(SLOT_NUMBER, true);
        expectBytes(vm.getDirtyLog(SLOT_NUMBER), zeros(dirtyBitmapBytes(4)), 'the log right after logging began');
        // The VMM's own writes go through its mapping, not stage 2: the log never sees them.
        vm.writeMemory(pageIpa(1), Uint8Array.of(1, 2, 3, 4));
        readTags(vm, slotIpa, 4, pageSize);
        if (!atLeast(target, 6, 12)) {
          const tags = tagPattern(tagsPerPage, 11);
          expectTrue(vm.copyMteTags(toGuest(pageIpa(2), pageSize, tags)) === pageSize, 'TO_GUEST under dirty logging before 6.12');
        }
        expectDirty(vm, [], 'after VMM writes, FROM_GUEST and (before 6.12) TO_GUEST');
        // CLEAR needs no manual protect: it clears nothing here and succeeds.
        vm.clearDirtyLog(clearRequest(0, 4, [0, 1, 2, 3]));
        vm.setDirtyLogging(SLOT_NUMBER, false);
        expectErrno('ENOENT', 'getDirtyLog after logging was turned off', () => vm.getDirtyLog(SLOT_NUMBER));
        expectErrno('ENOENT', 'clearDirtyLog after logging was turned off', () => vm.clearDirtyLog(clearRequest(0, 4, [0])));
      }),
  },
  {
    id: 'dirty-log-manual-protect',
    title: 'manual protect: flags 3 offered, INITIALLY_SET alone refused; every page starts dirty, GET keeps bits, CLEAR drops given ones',
    run: (target) =>
      withSlot(target, { pages: 4 }, ({ vm }) => {
        const flags = vm.manualDirtyLogProtectFlags();
        expectTrue(flags === 3, `KVM_CHECK_EXTENSION(MANUAL_DIRTY_LOG_PROTECT2) is ${flags}, expected 3`);
        expectErrno('EINVAL', 'enable INITIALLY_SET without MANUAL_PROTECT', () => vm.enableManualDirtyLogProtect(DIRTY_LOG_INITIALLY_SET));
        expectErrno('EINVAL', 'enable an unknown flag', () => vm.enableManualDirtyLogProtect(4 | DIRTY_LOG_MANUAL_PROTECT));
        vm.enableManualDirtyLogProtect(DIRTY_LOG_MANUAL_PROTECT | DIRTY_LOG_INITIALLY_SET);
        vm.setDirtyLogging(SLOT_NUMBER, true);
        expectDirty(vm, [0, 1, 2, 3], 'INITIALLY_SET: the log when logging began');
        expectDirty(vm, [0, 1, 2, 3], 'a second GET under manual protect');
        expectErrno('EINVAL', 'clearDirtyLog from page 1 (not a multiple of 64)', () => vm.clearDirtyLog(clearRequest(1, 3, [1])));
        expectErrno('EINVAL', 'clearDirtyLog of 2 of 4 pages (neither 64-page units nor to the end)', () =>
          vm.clearDirtyLog(clearRequest(0, 2, [1])),
        );
        expectErrno('EINVAL', 'clearDirtyLog of 5 pages of a 4-page slot', () => vm.clearDirtyLog(clearRequest(0, 5, [1])));
        expectErrno('EINVAL', 'clearDirtyLog from page 64 of a 4-page slot', () => vm.clearDirtyLog(clearRequest(64, 0, [])));
        expectErrno('EFAULT', 'clearDirtyLog with a 4-byte bitmap (the kernel reads 8)', () =>
          vm.clearDirtyLog(clearRequest(0, 4, [1], 4)),
        );
        expectDirty(vm, [0, 1, 2, 3], 'after the refused clears');
        vm.clearDirtyLog(clearRequest(0, 4, [1, 2]));
        expectDirty(vm, [0, 3], 'after clearing pages 1 and 2');
        vm.setDirtyLogging(SLOT_NUMBER, false);
        vm.setDirtyLogging(SLOT_NUMBER, true);
        expectDirty(vm, [0, 1, 2, 3], 'INITIALLY_SET again when logging was turned off and on');
      }),
  },
  {
    id: 'dirty-log-guest-stores',
    title: 'guest stores mark their page, loads do not; GET clears and re-arms; under manual protect only CLEAR does',
    appliesTo: hasGuest,
    run: (target) =>
      withSlot(target, { pages: 4 }, ({ vm, pageIpa }) => {
        const guest = guestOf(target, vm);
        vm.setDirtyLogging(SLOT_NUMBER, true);
        guest.load64(pageIpa(2));
        guest.store64(pageIpa(1) + 8n, 0x0123_4567_89ab_cdefn);
        expectDirty(vm, [1], 'after a load from page 2 and a store to page 1');
        const seen = new Uint8Array(8);
        vm.readMemory(pageIpa(1) + 8n, seen);
        expectTrue(new DataView(seen.buffer).getBigUint64(0, true) === 0x0123_4567_89ab_cdefn, 'the VMM reads the guest store');
        expectDirty(vm, [], 'a second GET (it cleared the first)');
        guest.store64(pageIpa(1), 1n);
        guest.store64(pageIpa(3) + 16n, 2n);
        expectTrue(guest.load64(pageIpa(3) + 16n) === 2n, 'the guest reads back its store');
        expectDirty(vm, [1, 3], 'after stores to pages 1 and 3 (page 1 was write-protected again by the GET)');
        vm.enableManualDirtyLogProtect(DIRTY_LOG_MANUAL_PROTECT);
        guest.store64(pageIpa(0), 3n);
        expectDirty(vm, [0], 'manual protect: after a store to page 0');
        expectDirty(vm, [0], 'manual protect: a second GET keeps the bit');
        vm.clearDirtyLog(clearRequest(0, 4, [0]));
        expectDirty(vm, [], 'manual protect: after CLEAR');
        guest.store64(pageIpa(0), 4n);
        expectDirty(vm, [0], 'manual protect: a store after CLEAR (it write-protected the page again)');
      }),
  },
  {
    id: 'dirty-log-tag-store-only',
    title: 'a guest tag store (STG) to a page whose data it does not write marks the page dirty; the data stays as it was',
    appliesTo: hasGuest,
    run: (target) =>
      withSlot(target, { pages: 4 }, ({ vm, pageSize, tagsPerPage, pageIpa }) => {
        const guest = guestOf(target, vm);
        vm.setDirtyLogging(SLOT_NUMBER, true);
        // Page 2 is first mapped by a load (read-only under logging), then only tagged.
        expectTrue(guest.loadTag(pageIpa(2) + 32n) === 0, 'an untouched granule has tag 0');
        expectDirty(vm, [], 'after LDG of page 2');
        guest.storeTag(pageIpa(2) + 32n, 9);
        expectDirty(vm, TAG_ONLY_STORE_MARKS_DIRTY ? [2] : [], 'after STG to page 2');
        const tags = new Uint8Array(tagsPerPage).fill(0xee);
        expectTrue(vm.copyMteTags(fromGuest(pageIpa(2), pageSize, tags)) === pageSize, 'FROM_GUEST of page 2');
        const expected = zeros(tagsPerPage);
        expected[2] = 9;
        expectBytes(tags, expected, 'tags of page 2 after STG of granule 2');
        const data = new Uint8Array(pageSize);
        vm.readMemory(pageIpa(2), data);
        expectBytes(data, zeros(pageSize), 'data of page 2 after STG');
        expectTrue(guest.loadTag(pageIpa(2) + 32n) === 9, 'the guest reads back its tag');
        // A page never touched before: the STG is its first access.
        guest.storeTag(pageIpa(3), 5);
        expectDirty(vm, TAG_ONLY_STORE_MARKS_DIRTY ? [3] : [], 'after STG as the first access of page 3');
      }),
  },
];
