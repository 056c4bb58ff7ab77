/**
 * A chunk's guest input, as the writer reads it: RAM bytes through the VMM's
 * mapping, tags through KVM_ARM_MTE_COPY_TAGS (one byte per granule), into
 * buffers reused from chunk to chunk.
 */

import type { GridChunk } from '../format/chunk-grid.js';
import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotRegion } from '../format/model.js';
import type { ChunkExecutor } from '../parallel/chunk-pool.js';
import { readGuestTags } from '../vm/tag-copy.js';
import type { VmSource } from '../vm/vm.js';

/** Spare buffers kept per length: more than the writer ever has in flight. */
const MAX_SPARE_PER_LENGTH = 16;

/**
 * Chunk input buffers, reused once a worker hands them back: a fresh buffer
 * per chunk costs a zero fill and a page fault per page, about as much as
 * reading the guest memory itself. They come from the chunk executor, whose
 * codec then reads them in place (native memory with the system libzstd).
 */
export class InputBuffers {
  private readonly spare = new Map<number, Uint8Array[]>();

  constructor(private readonly executor: Pick<ChunkExecutor, 'allocate' | 'release'>) {}

  private readonly handedOut = new WeakSet<Uint8Array>();

  take(length: number): Uint8Array {
    const reused = this.spare.get(length)?.pop();
    if (reused) return reused;
    const fresh = this.executor.allocate(length);
    this.handedOut.add(fresh);
    return fresh;
  }

  /** Gives every spare buffer back to the executor: the save is over. */
  dispose(): void {
    for (const list of this.spare.values()) for (const buffer of list) this.executor.release(buffer);
    this.spare.clear();
  }

  giveBack(buffer: Uint8Array): void {
    // Buffers come back as handed out, or whole from a worker (a view it got was copied, not moved: not ours).
    if (!this.handedOut.has(buffer) && (buffer.byteOffset !== 0 || buffer.byteLength !== buffer.buffer.byteLength)) return;
    const list = this.spare.get(buffer.length) ?? [];
    // No more spares than chunks ever in flight: a buffer that came from elsewhere must not pile up here.
    if (list.length >= MAX_SPARE_PER_LENGTH) return;
    list.push(buffer);
    this.spare.set(buffer.length, list);
  }
}

/**
 * Reads a chunk's guest input: its RAM, or its tags through
 * KVM_ARM_MTE_COPY_TAGS. RAM is read asynchronously where the backend can,
 * unless `onCallingThread`: a save that compresses keeps libuv's pool busy
 * with its zstd calls, and a read there woke a thread that took a core from
 * them (the bench's 1 GiB save: about 6% slower), where a stored save (level
 * 0) has the pool free and overlaps its reads with checksums and writes
 * (about 10% faster than reading on the calling thread).
 */
export async function readChunkInput(
  vm: VmSource,
  region: SnapshotRegion,
  chunk: GridChunk,
  buffers: Pick<InputBuffers, 'take'>,
  onCallingThread = false,
): Promise<Uint8Array> {
  const address = region.guestAddress + BigInt(chunk.firstPage) * BigInt(vm.pageSize);
  const bytes = chunk.pageCount * vm.pageSize;
  if (chunk.kind === 'ram') {
    const ram = buffers.take(bytes);
    if (vm.readMemoryAsync && !onCallingThread) await vm.readMemoryAsync(address, ram);
    else vm.readMemory(address, ram);
    return ram;
  }
  const tags = buffers.take(bytes / GRANULE_SIZE);
  readGuestTags(vm, address, tags);
  return tags;
}
