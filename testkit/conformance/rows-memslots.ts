/**
 * How the tag ioctl walks memslots: partial copies at slot edges, read-only
 * slots, slots spanning two memslots, the mappings an MTE VM accepts, and
 * dirty logging.
 */
import type { MemoryBacking } from '../../src/vm/vm.js';
import {
  atLeast,
  expectBytes,
  expectCopy,
  expectCopyErrno,
  expectErrno,
  fromGuest,
  readTags,
  SLOT_IPA,
  SLOT_NUMBER,
  tagPattern,
  toGuest,
  withSlot,
  writeTags,
  zeros,
} from './fixtures.js';
import type { ConformanceRow } from './types.js';

export const memslotRows: ConformanceRow[] = [
  {
    id: 'range-starts-before-slot',
    title: 'a range starting one page before a slot: EFAULT, nothing copied',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const before = slotIpa - BigInt(pageSize);
        expectCopyErrno(vm, toGuest(before, 2 * pageSize, tagPattern(2 * tagsPerPage, 1)), 'EFAULT');
        expectCopyErrno(vm, fromGuest(before, 2 * pageSize, zeros(2 * tagsPerPage)), 'EFAULT');
        expectBytes(readTags(vm, slotIpa, 1, pageSize), zeros(tagsPerPage), 'tags of the slot first page after the failed TO_GUEST');
      }),
  },
  {
    id: 'range-runs-past-slot-end',
    title: 'the last page of a slot plus one page past its end: one page done (partial)',
    run: (target) =>
      withSlot(target, { pages: 4 }, ({ vm, pageSize, tagsPerPage, pageIpa }) => {
        const last = pageIpa(3);
        const tags = tagPattern(2 * tagsPerPage, 2);
        expectCopy(vm, toGuest(last, 2 * pageSize, tags), pageSize);
        const back = zeros(2 * tagsPerPage).fill(0xee);
        expectCopy(vm, fromGuest(last, 2 * pageSize, back), pageSize);
        expectBytes(back.subarray(0, tagsPerPage), tags.subarray(0, tagsPerPage), 'tags of the slot last page');
      }),
  },
  {
    id: 'copy-across-adjacent-slots',
    title: 'a range covering two adjacent memslots is copied whole',
    run: (target) =>
      withSlot(target, { pages: 2 }, ({ vm, pageSize, tagsPerPage, pageIpa }) => {
        vm.addMemorySlot({ slot: SLOT_NUMBER + 1, name: 'conformance-next', guestAddress: pageIpa(2), size: BigInt(2 * pageSize) });
        const tags = tagPattern(4 * tagsPerPage, 3);
        writeTags(vm, pageIpa(0), tags);
        expectBytes(readTags(vm, pageIpa(0), 4, pageSize), tags, 'tags across both slots');
      }),
  },
  {
    id: 'read-only-slot',
    title: 'a read-only memslot: FROM_GUEST works, TO_GUEST is EFAULT',
    run: (target) =>
      withSlot(target, { readOnly: true, pages: 2 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        expectBytes(readTags(vm, slotIpa, 2, pageSize), zeros(2 * tagsPerPage), 'tags of a read-only slot');
        expectCopyErrno(vm, toGuest(slotIpa, pageSize, tagPattern(tagsPerPage, 4)), 'EFAULT');
      }),
  },
  {
    id: 'shared-mapping-slot',
    title: 'MAP_SHARED memory (anonymous or memfd) behind an MTE VM: EINVAL on 6.1, accepted from 6.2',
    run: async (target) => {
      for (const backing of ['anonymous-shared', 'memfd'] as MemoryBacking[]) {
        await checkSharedBacking(target, backing);
      }
    },
  },
  {
    id: 'dirty-logging',
    title: 'dirty logging on: TO_GUEST is EBUSY from 6.12 (works on older kernels); FROM_GUEST always works',
    run: (target) =>
      withSlot(target, { pages: 2 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const tags = tagPattern(2 * tagsPerPage, 5);
        vm.setDirtyLogging(SLOT_NUMBER, true);
        const logging = vm.memorySlots().find((s) => s.slot === SLOT_NUMBER)?.dirtyLogging;
        if (logging !== true) throw new Error(`memorySlots() reports dirtyLogging=${logging} after enabling it`);
        if (atLeast(target, 6, 12)) {
          expectCopyErrno(vm, toGuest(slotIpa, 2 * pageSize, tags), 'EBUSY');
          expectBytes(readTags(vm, slotIpa, 2, pageSize), zeros(2 * tagsPerPage), 'tags after the refused TO_GUEST');
        } else {
          writeTags(vm, slotIpa, tags);
          expectBytes(readTags(vm, slotIpa, 2, pageSize), tags, 'tags written under dirty logging');
        }
        vm.setDirtyLogging(SLOT_NUMBER, false);
        writeTags(vm, slotIpa, tags);
        expectBytes(readTags(vm, slotIpa, 2, pageSize), tags, 'tags written after dirty logging was turned off');
      }),
  },
];

async function checkSharedBacking(target: Parameters<ConformanceRow['run']>[0], backing: MemoryBacking): Promise<void> {
  // A non-MTE VM takes shared memory on every kernel.
  await withSlot(target, { mte: false, backing, pages: 1 }, () => undefined);
  const vm = target.createVm();
  try {
    vm.enableMte();
    const spec = { slot: SLOT_NUMBER, name: `shared-${backing}`, guestAddress: SLOT_IPA, size: BigInt(target.pageSize), backing };
    const what = `addMemorySlot(${backing}) on an MTE VM, Linux ${target.kernelVersion.join('.')}`;
    if (!atLeast(target, 6, 2)) {
      expectErrno('EINVAL', what, () => {
        vm.addMemorySlot(spec);
        return 'accepted';
      });
      return;
    }
    vm.addMemorySlot(spec);
    const tags = tagPattern(target.pageSize / 16, 6);
    writeTags(vm, SLOT_IPA, tags);
    expectBytes(readTags(vm, SLOT_IPA, 1, target.pageSize), tags, `tags round trip on ${backing} memory`);
  } finally {
    vm.close();
  }
}
