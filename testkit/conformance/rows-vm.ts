/** VM-level rules around the tag ioctl: when MTE may be enabled, and who may call. */
import { expectErrno, expectTrue, fromGuest, SLOT_IPA, withSlot, zeros } from './fixtures.js';
import type { ConformanceRow } from './types.js';

export const vmRows: ConformanceRow[] = [
  {
    id: 'mte-after-vcpu',
    title: 'KVM_ENABLE_CAP(MTE) after a vCPU exists: EINVAL; before: enabled',
    run: (target) => {
      const late = target.createVm();
      try {
        late.createVcpu(0);
        expectErrno('EINVAL', 'enableMte() after createVcpu(0)', () => {
          late.enableMte();
          return 'enabled';
        });
        expectTrue(!late.mteEnabled, 'mteEnabled is true after the refused enableMte()');
      } finally {
        late.close();
      }
      const early = target.createVm();
      try {
        early.enableMte();
        early.createVcpu(0);
        expectTrue(early.mteEnabled, 'mteEnabled is false after enableMte() before any vCPU');
      } finally {
        early.close();
      }
    },
  },
  {
    id: 'other-process-eio',
    title: 'the ioctl from a process that did not create the VM: EIO, before any argument check',
    appliesTo: (target) => target.copyMteTagsFromOtherProcess !== undefined,
    run: (target) =>
      withSlot(target, {}, ({ vm, pageSize, tagsPerPage }) => {
        const call = target.copyMteTagsFromOtherProcess!.bind(target);
        const valid = fromGuest(SLOT_IPA, pageSize, zeros(tagsPerPage));
        expectErrno('EIO', 'valid FROM_GUEST from another process', () => call(vm, valid));
        const invalid = { ...valid, reserved: [1n, 0n] as const };
        expectErrno('EIO', 'FROM_GUEST with reserved words set, from another process', () => call(vm, invalid));
      }),
  },
];
