/**
 * A digest of a guest's state as a migration carries it, computed on each
 * side on its own: the source's after its pause, the destination's after the
 * stream was received. Equal digests say the destination holds what the paused
 * source held, granule for granule, whatever the rounds were: a check beyond
 * the stream's frame checksums, which only say the bytes arrived as they were
 * sent. Memory and tags are one digest, vCPU registers another, because raw
 * files keep no registers. Read in pieces of bounded size, whatever the guest's.
 */
import { createHash, type Hash } from 'node:crypto';
import { GRANULE_SIZE } from '../format/constants.js';
import { readGuestTags } from '../vm/tag-copy.js';
import type { VmSource } from '../vm/vm.js';
import type { StreamLayout } from './stream-layout.js';

/** Guest bytes read at once. */
const PIECE_BYTES = 1024 * 1024;

export interface StateDigest {
  /** SHA-256 of every slot's memory, in the layout's order, and of the tags of its tagged slots: hex. */
  readonly memory: string;
  /** SHA-256 of every vCPU's registers (id order, then register id and value): hex; null where the VM keeps no registers. */
  readonly vcpus: string | null;
}

function updateU64(hash: Hash, value: bigint): void {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  hash.update(bytes);
}

/** The memory and tag digest of `vm`, slot by slot as `layout` lists them (the stream's layout: both sides agree on it). */
export function memoryDigest(vm: VmSource, layout: StreamLayout): string {
  const hash = createHash('sha256');
  const piece = new Uint8Array(Math.max(PIECE_BYTES, layout.pageSize));
  const tags = new Uint8Array(piece.length / GRANULE_SIZE);
  for (const slot of layout.slots) {
    updateU64(hash, slot.guestAddress);
    updateU64(hash, slot.size);
    hash.update(Uint8Array.of(slot.tagged ? 1 : 0));
    for (let offset = 0n; offset < slot.size; offset += BigInt(piece.length)) {
      const length = Number(slot.size - offset < BigInt(piece.length) ? slot.size - offset : BigInt(piece.length));
      const address = slot.guestAddress + offset;
      vm.readMemory(address, piece.subarray(0, length));
      hash.update(piece.subarray(0, length));
      if (slot.tagged) {
        readGuestTags(vm, address, tags.subarray(0, length / GRANULE_SIZE));
        hash.update(tags.subarray(0, length / GRANULE_SIZE));
      }
    }
  }
  return hash.digest('hex');
}

/** The digest of every vCPU's registers, in vCPU id order. */
export function vcpuDigest(vm: VmSource): string {
  const hash = createHash('sha256');
  const vcpus = [...vm.vcpus()].sort((a, b) => a.id - b.id);
  for (const vcpu of vcpus) {
    updateU64(hash, BigInt(vcpu.id));
    for (const id of [...vcpu.registerIds()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      const value = vcpu.getRegister(id);
      updateU64(hash, id);
      updateU64(hash, BigInt(value.length));
      hash.update(value);
    }
  }
  return hash.digest('hex');
}

export function stateDigest(vm: VmSource, layout: StreamLayout, keepsRegisters = true): StateDigest {
  return { memory: memoryDigest(vm, layout), vcpus: keepsRegisters ? vcpuDigest(vm) : null };
}
