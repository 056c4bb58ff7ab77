/**
 * Memory the VMM maps in its own address space: guest RAM behind a memslot,
 * and the user buffers KVM_ARM_MTE_COPY_TAGS reads or fills.
 *
 * Guest RAM can be backed the three ways the kernel tells apart on an MTE VM
 * (anonymous private, anonymous shared, a memfd), so that the conformance
 * rows can show which one a kernel accepts.
 */
import type { MemoryBacking } from '../../vm/vm.js';
import { check, errnoError } from './errno.js';
import {
  addressOf,
  close,
  ftruncate,
  isMapFailed,
  lastErrno,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  memfdCreate,
  mmap,
  mprotect,
  munmap,
  type NativePointer,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  viewOf,
} from './libc.js';

/**
 * Ranges given back by unmap() while JavaScript views of them may live on: each stays reserved (PROT_NONE) until
 * its view is collected, so a stale view faults instead of reading or writing memory the process maps again
 * (V8's heap, another VM's RAM).
 */
const reservedUntilCollected = new FinalizationRegistry<{ address: bigint; size: number }>(({ address, size }) => {
  munmap(address, size);
});

/** A range of the VMM's address space from one mmap. */
export class HostMapping {
  readonly address: bigint;
  private view: Uint8Array | null;

  constructor(
    pointer: NativePointer,
    readonly size: number,
  ) {
    this.address = addressOf(pointer);
    this.view = new Uint8Array(viewOf(pointer, size));
  }

  /** The mapping's bytes, without a copy; a RangeError once it is unmapped. */
  get bytes(): Uint8Array {
    if (!this.view) throw new RangeError(`host memory 0x${this.address.toString(16)}+0x${this.size.toString(16)} is unmapped`);
    return this.view;
  }

  /** Makes `length` bytes at `offset` inaccessible (a guard page). */
  protect(offset: number, length: number): void {
    check(mprotect(this.address + BigInt(offset), length, PROT_NONE), 'mprotect', `guard at +0x${offset.toString(16)}`);
  }

  /** Gives the memory back; the address range stays reserved while a view of it may be reachable. */
  unmap(): void {
    const view = this.view;
    if (!view) return;
    this.view = null;
    const where = `0x${this.address.toString(16)}+0x${this.size.toString(16)}`;
    const reserve = mmap(this.address, this.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (isMapFailed(reserve)) {
      check(munmap(this.address, this.size), 'munmap', where);
      return;
    }
    reservedUntilCollected.register(view.buffer, { address: this.address, size: this.size });
  }
}

function mapOrThrow(size: number, flags: number, fd: number, what: string): HostMapping {
  const pointer = mmap(0n, size, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (isMapFailed(pointer)) throw errnoError(lastErrno(), 'mmap', `${what}, ${size} bytes`);
  return new HostMapping(pointer, size);
}

/** Maps `size` bytes of zeroed memory for a memslot with the given backing. */
export function mapGuestMemory(size: number, backing: MemoryBacking): HostMapping {
  switch (backing) {
    case 'anonymous-private':
      // NORESERVE: a large, mostly untouched guest should not need commit charge up front.
      return mapOrThrow(size, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, backing);
    case 'anonymous-shared':
      return mapOrThrow(size, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, backing);
    case 'memfd': {
      const fd = check(memfdCreate('vmsnap-guest-ram', 1), 'memfd_create');
      try {
        check(ftruncate(fd, size), 'ftruncate', `memfd to ${size} bytes`);
        return mapOrThrow(size, MAP_SHARED, fd, backing);
      } finally {
        // The mapping keeps the memfd's memory alive.
        close(fd);
      }
    }
  }
}

/** Maps `size` bytes of a file descriptor shared (a vCPU's struct kvm_run). */
export function mapSharedFd(fd: number, size: number, what: string): HostMapping {
  return mapOrThrow(size, MAP_SHARED, fd, what);
}

/**
 * A user buffer of exactly `length` bytes followed by an inaccessible page,
 * so that the kernel faults (EFAULT, or a partial copy) on the first byte
 * past `length`, as it would for a real VMM buffer followed by unmapped memory.
 */
export class GuardedBuffer {
  private readonly mapping: HostMapping;
  /** Offset of the buffer's first byte inside the mapping. */
  private readonly start: number;

  constructor(
    readonly length: number,
    pageSize: number,
  ) {
    const dataPages = Math.ceil(length / pageSize);
    this.mapping = mapOrThrow((dataPages + 1) * pageSize, MAP_PRIVATE | MAP_ANONYMOUS, -1, 'tag buffer');
    this.mapping.protect(dataPages * pageSize, pageSize);
    this.start = dataPages * pageSize - length;
  }

  get address(): bigint {
    return this.mapping.address + BigInt(this.start);
  }

  /** The `length` accessible bytes. */
  get bytes(): Uint8Array {
    return this.mapping.bytes.subarray(this.start, this.start + this.length);
  }

  release(): void {
    this.mapping.unmap();
  }
}
