/**
 * What tags come back: return values in guest bytes, the low nibble only,
 * zeros for never-tagged pages, round trips, short user buffers, and the state
 * a faulted TO_GUEST leaves its page in on each kernel.
 */
import {
  atLeast,
  expectBytes,
  expectCopy,
  expectCopyErrno,
  fromGuest,
  readTags,
  tagPattern,
  toGuest,
  withSlot,
  writeTags,
  zeros,
} from './fixtures.js';
import type { ConformanceRow } from './types.js';

export const tagRows: ConformanceRow[] = [
  {
    id: 'returns-guest-bytes',
    title: 'success returns length in guest bytes (not tag bytes)',
    run: (target) =>
      withSlot(target, { pages: 3 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        expectCopy(vm, toGuest(slotIpa, 3 * pageSize, tagPattern(3 * tagsPerPage, 7)), 3 * pageSize);
        expectCopy(vm, fromGuest(slotIpa, 3 * pageSize, zeros(3 * tagsPerPage)), 3 * pageSize);
      }),
  },
  {
    id: 'low-nibble-only',
    title: 'only the low 4 bits of each tag byte count: 0xA5 reads back as 5',
    run: (target) =>
      withSlot(target, { pages: 1 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        writeTags(vm, slotIpa, zeros(tagsPerPage).fill(0xa5));
        expectBytes(readTags(vm, slotIpa, 1, pageSize), zeros(tagsPerPage).fill(5), 'tags after writing 0xA5');
      }),
  },
  {
    id: 'never-tagged-reads-zero',
    title: 'a page never tagged reads back as zeros (the buffer is overwritten)',
    run: (target) =>
      withSlot(target, { pages: 2 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        vm.writeMemory(slotIpa, new Uint8Array(pageSize).fill(0x5a));
        expectBytes(readTags(vm, slotIpa, 2, pageSize), zeros(2 * tagsPerPage), 'tags of untagged pages');
      }),
  },
  {
    id: 'round-trip',
    title: 'random tags over several pages read back exactly',
    run: (target) =>
      withSlot(target, { pages: 8 }, ({ vm, pageSize, tagsPerPage, pageIpa }) => {
        const tags = tagPattern(6 * tagsPerPage, 8);
        writeTags(vm, pageIpa(1), tags);
        expectBytes(readTags(vm, pageIpa(1), 6, pageSize), tags, 'tags of pages 1..6');
        expectBytes(readTags(vm, pageIpa(0), 1, pageSize), zeros(tagsPerPage), 'tags of page 0, never written');
        expectBytes(readTags(vm, pageIpa(7), 1, pageSize), zeros(tagsPerPage), 'tags of page 7, never written');
        const rewritten = tagPattern(tagsPerPage, 9);
        writeTags(vm, pageIpa(3), rewritten);
        const expected = tags.slice();
        expected.set(rewritten, 2 * tagsPerPage);
        expectBytes(readTags(vm, pageIpa(1), 6, pageSize), expected, 'tags after rewriting page 3');
      }),
  },
  {
    id: 'tags-leave-data-alone',
    title: 'tags and data are separate: TO_GUEST keeps the bytes, writeMemory keeps the tags',
    run: (target) =>
      withSlot(target, { pages: 1 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const data = tagPattern(pageSize, 10);
        vm.writeMemory(slotIpa, data);
        const tags = tagPattern(tagsPerPage, 11);
        writeTags(vm, slotIpa, tags);
        const back = new Uint8Array(pageSize);
        vm.readMemory(slotIpa, back);
        expectBytes(back, data, 'guest bytes after TO_GUEST');
        vm.writeMemory(slotIpa, new Uint8Array(pageSize));
        expectBytes(readTags(vm, slotIpa, 1, pageSize), tags, 'tags after writeMemory');
      }),
  },
  {
    id: 'buffer-faults-after-first-page',
    title: 'a user buffer that ends after the first page: one page done (partial), both directions',
    run: (target) =>
      withSlot(target, { pages: 3 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const tags = tagPattern(3 * tagsPerPage, 12);
        writeTags(vm, slotIpa, tags);
        const short = zeros(tagsPerPage + tagsPerPage / 2).fill(0xee);
        expectCopy(vm, fromGuest(slotIpa, 3 * pageSize, short), pageSize);
        expectBytes(short.subarray(0, tagsPerPage), tags.subarray(0, tagsPerPage), 'FROM_GUEST tags of the done page');
        const next = tagPattern(3 * tagsPerPage, 13);
        expectCopy(vm, toGuest(slotIpa, 3 * pageSize, next.subarray(0, tagsPerPage)), pageSize);
        const back = readTags(vm, slotIpa, 3, pageSize);
        expectBytes(back.subarray(0, tagsPerPage), next.subarray(0, tagsPerPage), 'TO_GUEST tags of the done page');
        // The faulting page: untouched on 6.1, cleared by 6.2+ ("don't leave stale tags").
        const faulted = atLeast(target, 6, 2) ? zeros(tagsPerPage) : tags.subarray(tagsPerPage, 2 * tagsPerPage);
        expectBytes(back.subarray(tagsPerPage, 2 * tagsPerPage), faulted, 'tags of the page where the buffer ended');
        expectBytes(back.subarray(2 * tagsPerPage), tags.subarray(2 * tagsPerPage), 'tags of the page never reached');
      }),
  },
  {
    id: 'buffer-faults-inside-first-page',
    title: 'a user buffer that ends inside the first page tags: EFAULT, both directions',
    run: (target) =>
      withSlot(target, { pages: 2 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        expectCopyErrno(vm, fromGuest(slotIpa, pageSize, zeros(tagsPerPage - 1)), 'EFAULT');
        expectCopyErrno(vm, toGuest(slotIpa, 2 * pageSize, tagPattern(tagsPerPage / 2, 14)), 'EFAULT');
        expectCopyErrno(vm, fromGuest(slotIpa, pageSize, zeros(0)), 'EFAULT');
      }),
  },
  {
    id: 'faulted-write-on-tagged-page',
    title: 'TO_GUEST faulting mid-page on a tagged page: half written on 6.1, tags cleared from 6.2',
    run: (target) =>
      withSlot(target, { pages: 1 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const before = tagPattern(tagsPerPage, 15);
        writeTags(vm, slotIpa, before);
        const half = tagsPerPage / 2;
        const after = tagPattern(half, 16);
        expectCopyErrno(vm, toGuest(slotIpa, pageSize, after), 'EFAULT');
        const expected = atLeast(target, 6, 2) ? zeros(tagsPerPage) : Uint8Array.from([...after, ...before.subarray(half)]);
        expectBytes(
          readTags(vm, slotIpa, 1, pageSize),
          expected,
          `tags after the faulted TO_GUEST (Linux ${target.kernelVersion.join('.')})`,
        );
      }),
  },
  {
    id: 'faulted-write-on-untagged-page',
    title: 'TO_GUEST faulting mid-page on a never-tagged page: the page still reads as zeros',
    run: (target) =>
      withSlot(target, { pages: 1 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        expectCopyErrno(vm, toGuest(slotIpa, pageSize, tagPattern(tagsPerPage / 2, 17)), 'EFAULT');
        expectBytes(readTags(vm, slotIpa, 1, pageSize), zeros(tagsPerPage), 'tags after the faulted TO_GUEST');
      }),
  },
];
