/**
 * Puts what pre-copy sends into a fresh VM as it arrives, in KVM's restore
 * order: MTE and memslots from the layout, then memory and tags page run by
 * page run (a later round overwrites an earlier one), and the vCPUs only at
 * the very end. The VM never logs dirty pages, so TO_GUEST works on 6.12+
 * (where it is EBUSY under dirty logging). Used by the migration receiver
 * and by a live checkpoint's staging VM.
 */
import { GRANULE_SIZE } from '../format/constants.js';
import type { VcpuState } from '../format/registers.js';
import { writeGuestTags } from '../vm/tag-copy.js';
import type { VmFactory, VmTarget } from '../vm/vm.js';
import { MigrationStreamError, type PagesFrame } from './migration-frames.js';
import type { StreamLayout, StreamSlot } from './stream-layout.js';

export class TargetApplier<T extends VmTarget> {
  private vm: T | null = null;
  private readonly slots = new Map<number, StreamSlot>();
  private pageSize = 0;

  constructor(private readonly factory: VmFactory<T>) {}

  /** The VM being filled (after the layout). */
  get target(): T | null {
    return this.vm;
  }

  layout(layout: StreamLayout, offset = 0): void {
    if (this.vm) throw new MigrationStreamError('migration-bad-frame', offset, 'a second LAYOUT frame');
    const vm = this.factory.createVm({ pageSize: layout.pageSize });
    this.vm = vm;
    if (vm.pageSize !== layout.pageSize) {
      throw new MigrationStreamError(
        'migration-bad-frame',
        offset,
        `the source's ${layout.pageSize}-byte pages cannot be restored into a ${vm.backend} VM of ${vm.pageSize}-byte pages`,
      );
    }
    this.pageSize = layout.pageSize;
    if (layout.mteEnabled) vm.enableMte();
    for (const slot of layout.slots) {
      vm.addMemorySlot({ slot: slot.slot, name: slot.name, guestAddress: slot.guestAddress, size: slot.size, readOnly: slot.readOnly });
      this.slots.set(slot.slot, slot);
    }
  }

  pages(frame: PagesFrame, offset = 0): void {
    const vm = this.requireVm(offset);
    const slot = this.slots.get(frame.slot);
    const fail = (detail: string): never => {
      throw new MigrationStreamError('migration-bad-frame', offset, `PAGES frame of slot ${frame.slot}: ${detail}`);
    };
    if (!slot) {
      fail('the layout has no such slot');
      return;
    }
    const slotPages = Number(slot.size / BigInt(this.pageSize));
    if (frame.pageCount === 0 || frame.firstPage + frame.pageCount > slotPages) {
      fail(`pages ${frame.firstPage}+${frame.pageCount} outside its ${slotPages} pages`);
    }
    if ((frame.tags !== null) !== slot.tagged) fail(slot.tagged ? 'no tags for a tagged slot' : 'tags for a slot without tags');
    if (frame.memory.length !== frame.pageCount * this.pageSize) fail('memory length does not match the page count');
    const address = slot.guestAddress + BigInt(frame.firstPage * this.pageSize);
    vm.writeMemory(address, frame.memory);
    if (frame.tags) {
      if (frame.tags.length !== frame.memory.length / GRANULE_SIZE) fail('tag length does not match the page count');
      // Every tag is written, zeros included: an earlier round may have left other tags on the page.
      writeGuestTags(vm, address, frame.tags);
    }
  }

  /** Creates the vCPUs and sets their registers: the last step, once everything else arrived. */
  finish(vcpus: readonly VcpuState[], offset = 0): T {
    const vm = this.requireVm(offset);
    for (const state of vcpus) {
      const vcpu = vm.createVcpu(state.id);
      for (const register of state.registers) vcpu.setRegister(register.id, register.value);
    }
    return vm;
  }

  /** Releases the VM of a transfer that failed: nothing of it runs. */
  abort(): void {
    this.vm?.close();
    this.vm = null;
  }

  private requireVm(offset: number): T {
    if (!this.vm) throw new MigrationStreamError('migration-bad-frame', offset, 'a frame before the LAYOUT frame');
    return this.vm;
  }
}
