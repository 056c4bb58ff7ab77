/**
 * A digest of a guest's state as a migration carries it, computed on each
 * side on its own: the source's after its pause, the destination's after the
 * stream was received. Equal digests say the destination holds what the paused
 * source held, granule for granule, whatever the rounds were: a check beyond
 * the stream's frame checksums, which only say the bytes arrived as they were
 * sent. Memory and tags are read from each side's VM; the vCPU registers are
 * digested as the stream carries them, sent and received, because raw files
 * keep none and KVM reads some back moved (the virtual timer's counter). Memory
 * is read in pieces of bounded size, whatever the guest's.
 */
import { createHash, type Hash } from 'node:crypto';
import { GRANULE_SIZE } from '../format/constants.js';
import { readGuestTags } from '../vm/tag-copy.js';
import type { VcpuState, VmSource } from '../vm/vm.js';
import type { StreamLayout } from './stream-layout.js';

/** Guest bytes read at once. */
const PIECE_BYTES = 1024 * 1024;

export interface StateDigest {
  /** SHA-256 of every slot's memory, in the layout's order, and of the tags of its tagged slots: hex. */
  readonly memory: string;
  /** SHA-256 of every vCPU's registers (id order, then register id and value) as the stream carries them: hex. */
  readonly vcpus: string;
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

/** The digest of vCPU register states (as the stream's VCPU frames carry them), in vCPU id and register id order. */
export function vcpuDigest(vcpus: readonly VcpuState[]): string {
  const hash = createHash('sha256');
  for (const vcpu of [...vcpus].sort((a, b) => a.id - b.id)) {
    updateU64(hash, BigInt(vcpu.id));
    for (const register of [...vcpu.registers].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      updateU64(hash, register.id);
      updateU64(hash, BigInt(register.value.length));
      hash.update(register.value);
    }
  }
  return hash.digest('hex');
}

export function stateDigest(vm: VmSource, layout: StreamLayout, vcpus: readonly VcpuState[]): StateDigest {
  return { memory: memoryDigest(vm, layout), vcpus: vcpuDigest(vcpus) };
}
