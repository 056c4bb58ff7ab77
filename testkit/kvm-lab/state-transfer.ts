/**
 * Moves a whole VM's state into a fresh VM of any backend without a file, in
 * the restore order KVM requires (MTE before vCPUs, RAM before tags, tags
 * before dirty logging, registers last). The lab uses it to check the
 * backend on its own, apart from the snapshot format.
 */

import { guestTags, writeGuestTags } from '../../src/vm/tag-copy.js';
import type { Vm } from '../../src/vm/vm.js';

/** RAM moves through the VMM in pieces of this size. */
const RAM_PIECE = 1n << 20n;

export function transferVmState(source: Vm, target: Vm): void {
  if (source.mteEnabled) target.enableMte();
  for (const { dirtyLogging: _dirtyLogging, ...spec } of source.memorySlots()) {
    target.addMemorySlot(spec);
    for (let offset = 0n; offset < spec.size; offset += RAM_PIECE) {
      const piece = new Uint8Array(Number(spec.size - offset < RAM_PIECE ? spec.size - offset : RAM_PIECE));
      source.readMemory(spec.guestAddress + offset, piece);
      target.writeMemory(spec.guestAddress + offset, piece);
    }
    if (source.mteEnabled) writeGuestTags(target, spec.guestAddress, guestTags(source, spec.guestAddress, Number(spec.size)));
  }
  for (const vcpu of source.vcpus()) {
    const copy = target.createVcpu(vcpu.id);
    for (const id of vcpu.registerIds()) copy.setRegister(id, vcpu.getRegister(id));
  }
}
