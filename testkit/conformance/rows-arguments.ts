/**
 * Argument checks of KVM_ARM_MTE_COPY_TAGS: the EINVAL/EFAULT rows of the
 * reference table and the order the kernel checks them in.
 */
import { atLeast, expectCopy, expectCopyErrno, fromGuest, request, SLOT_NUMBER, toGuest, withSlot, zeros } from './fixtures.js';
import type { ConformanceRow } from './types.js';

export const argumentRows: ConformanceRow[] = [
  {
    id: 'mte-not-enabled',
    title: 'a VM without KVM_CAP_ARM_MTE: EINVAL in both directions',
    run: (target) =>
      withSlot(target, { mte: false }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        expectCopyErrno(vm, fromGuest(slotIpa, pageSize, zeros(tagsPerPage)), 'EINVAL');
        expectCopyErrno(vm, toGuest(slotIpa, pageSize, zeros(tagsPerPage)), 'EINVAL');
      }),
  },
  {
    id: 'ipa-not-page-aligned',
    title: 'guest_ipa aligned to a granule (or 4 KiB on larger pages) but not the host page: EINVAL',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const offsets = pageSize > 4096 ? [16n, 4096n] : [16n, 2048n];
        for (const offset of offsets) {
          expectCopyErrno(vm, fromGuest(slotIpa + offset, pageSize, zeros(tagsPerPage)), 'EINVAL');
          expectCopyErrno(vm, toGuest(slotIpa + offset, pageSize, zeros(tagsPerPage)), 'EINVAL');
        }
      }),
  },
  {
    id: 'length-not-page-aligned',
    title: 'length of one granule, or a page plus a granule: EINVAL',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        for (const length of [16, pageSize + 16, pageSize / 2]) {
          expectCopyErrno(vm, fromGuest(slotIpa, length, zeros(2 * tagsPerPage)), 'EINVAL');
          expectCopyErrno(vm, toGuest(slotIpa, length, zeros(2 * tagsPerPage)), 'EINVAL');
        }
      }),
  },
  {
    id: 'flags-invalid',
    title: 'flags other than 0 (TO_GUEST) or 1 (FROM_GUEST): EINVAL',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        for (const flags of [2n, 3n, 0x100n, 1n << 63n]) {
          expectCopyErrno(vm, request(slotIpa, pageSize, flags, zeros(tagsPerPage)), 'EINVAL');
        }
      }),
  },
  {
    id: 'reserved-nonzero',
    title: 'reserved[0] or reserved[1] nonzero: EINVAL',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        for (const reserved of [
          [1n, 0n],
          [0n, 1n],
        ] as const) {
          const req = { ...fromGuest(slotIpa, pageSize, zeros(tagsPerPage)), reserved };
          expectCopyErrno(vm, req, 'EINVAL');
        }
      }),
  },
  {
    id: 'no-memslot',
    title: 'an IPA with no memslot, or beyond the IPA space: EFAULT',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage, slotIpa, pages }) => {
        const unmapped = [slotIpa + BigInt(pages * pageSize) + BigInt(pageSize), 0n, 1n << 52n, 0xffff_ffff_fff0_0000n];
        for (const ipa of unmapped) {
          expectCopyErrno(vm, fromGuest(ipa, pageSize, zeros(tagsPerPage)), 'EFAULT');
          expectCopyErrno(vm, toGuest(ipa, pageSize, zeros(tagsPerPage)), 'EFAULT');
        }
      }),
  },
  {
    id: 'length-zero',
    title: 'length 0 returns 0, even with a NULL buffer',
    run: (target) =>
      withSlot(target, {}, ({ vm, slotIpa }) => {
        expectCopy(vm, fromGuest(slotIpa, 0, null), 0);
        expectCopy(vm, toGuest(slotIpa, 0, null), 0);
        expectCopy(vm, fromGuest(slotIpa, 0, zeros(16)), 0);
      }),
  },
  {
    id: 'null-buffer',
    title: 'addr NULL: EFAULT in both directions',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, slotIpa }) => {
        expectCopyErrno(vm, fromGuest(slotIpa, pageSize, null), 'EFAULT');
        expectCopyErrno(vm, toGuest(slotIpa, 2 * pageSize, null), 'EFAULT');
      }),
  },
  {
    id: 'length-above-int-max',
    title: 'length 2 GiB: EINVAL from Linux 6.3; before, the copy runs and stops at the slot end',
    run: (target) =>
      withSlot(target, { pages: 1 }, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const length = 1n << 31n;
        const req = fromGuest(slotIpa, length, zeros(tagsPerPage));
        if (atLeast(target, 6, 3)) expectCopyErrno(vm, req, 'EINVAL');
        else expectCopy(vm, req, pageSize);
      }),
  },
  {
    id: 'validation-order',
    title: 'argument checks come before the memslot walk and before EBUSY, in the kernel order',
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage, slotIpa }) => {
        const noSlot = slotIpa - BigInt(16 * pageSize);
        // Unaligned and unmapped: alignment is checked first.
        expectCopyErrno(vm, fromGuest(noSlot + 16n, pageSize, zeros(tagsPerPage)), 'EINVAL');
        // Reserved words with a NULL buffer: EINVAL, the buffer is never touched.
        expectCopyErrno(vm, { ...fromGuest(slotIpa, pageSize, null), reserved: [0n, 7n] }, 'EINVAL');
        // Bad flags at an unmapped IPA.
        expectCopyErrno(vm, request(noSlot, pageSize, 2n, zeros(tagsPerPage)), 'EINVAL');
        vm.setDirtyLogging(SLOT_NUMBER, true);
        expectCopyErrno(vm, toGuest(slotIpa + 16n, pageSize, zeros(tagsPerPage)), 'EINVAL');
        const unmappedWrite = toGuest(noSlot, pageSize, zeros(tagsPerPage));
        // 6.12+ refuses any TO_GUEST under dirty logging before looking at memslots.
        expectCopyErrno(vm, unmappedWrite, atLeast(target, 6, 12) ? 'EBUSY' : 'EFAULT');
      }),
  },
];
