import { describe, expect, it } from 'vitest';
import { SimulatedVm } from '../src/backends/simulated/simulated-vm.js';
import { MAX_TAG_COPY_BYTES, readGuestTags, TagCopyError, writeGuestTags } from '../src/vm/tag-copy.js';
import type { CopyMteTagsRequest, Vm } from '../src/vm/vm.js';

function mteVm(pages: number): SimulatedVm {
  const vm = new SimulatedVm({ pageSize: 4096 });
  vm.enableMte();
  vm.addMemorySlot({ slot: 0, name: 'ram', guestAddress: 0x4000_0000n, size: BigInt(pages * 4096) });
  return vm;
}

/** A VM whose ioctl does at most one page per call, as a kernel may, and records the calls. */
function onePageAtATime(vm: Vm): { vm: Vm; calls: CopyMteTagsRequest[] } {
  const calls: CopyMteTagsRequest[] = [];
  const wrapped = Object.assign(Object.create(vm), {
    copyMteTags(request: CopyMteTagsRequest) {
      calls.push(request);
      return vm.copyMteTags({ ...request, length: BigInt(vm.pageSize), buffer: request.buffer!.subarray(0, vm.pageSize / 16) });
    },
  });
  return { vm: wrapped, calls };
}

describe('whole-range tag copies', () => {
  it('loop on partial returns until the range is done, both ways', () => {
    const vm = mteVm(4);
    const tags = new Uint8Array(4 * 256).map((_, i) => i % 16);
    const partial = onePageAtATime(vm);
    writeGuestTags(partial.vm, 0x4000_0000n, tags);
    expect(partial.calls.map((c) => c.guestIpa)).toEqual([0x4000_0000n, 0x4000_1000n, 0x4000_2000n, 0x4000_3000n]);
    const back = new Uint8Array(tags.length);
    readGuestTags(onePageAtATime(vm).vm, 0x4000_0000n, back);
    expect(back).toEqual(tags);
  });

  it('name the IPA where the kernel stopped when a range runs past its slot', () => {
    const vm = mteVm(2);
    const tags = new Uint8Array(3 * 256);
    let error: unknown;
    try {
      readGuestTags(vm, 0x4000_0000n, tags);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TagCopyError);
    expect((error as TagCopyError).guestAddress).toBe(0x4000_2000n);
    expect((error as TagCopyError).errno).toBe('EFAULT');
    expect((error as Error).message).toMatch(/IPA 0x40002000: EFAULT/);
  });

  it('refuse a kernel that reports progress it cannot have made', () => {
    const vm = mteVm(2);
    const liar = Object.assign(Object.create(vm), { copyMteTags: () => 100 });
    expect(() => readGuestTags(liar, 0x4000_0000n, new Uint8Array(256))).toThrow(/no progress \(returned 100\)/);
  });

  it('keep each call far below the kernel and glibc limits', () => {
    expect(MAX_TAG_COPY_BYTES).toBeLessThan(2 ** 31 - 1);
    expect(MAX_TAG_COPY_BYTES % 65536).toBe(0);
  });
});
