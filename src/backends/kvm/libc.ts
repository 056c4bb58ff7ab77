/**
 * The libc calls the KVM backend makes, bound through koffi. Each binding has
 * a fixed prototype: ioctl is variadic in C, but on arm64 and x86_64 Linux a
 * fixed third argument (an integer or a pointer) is passed exactly as the
 * variadic one would be, so two prototypes cover every KVM ioctl.
 *
 * Nothing here knows KVM; failures come back as -1 (or MAP_FAILED) and the
 * caller reads `lastErrno()` at once, before any other libc call.
 */
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** An opaque native pointer as koffi returns it. */
export type NativePointer = unknown;

export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;

export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_FIXED = 0x10;
export const MAP_NORESERVE = 0x4000;
/** sysconf(_SC_PAGESIZE) on glibc. */
const SC_PAGESIZE = 30;

export const open = libc.func('open', 'int', ['str', 'int']) as (path: string, flags: number) => number;
export const close = libc.func('close', 'int', ['int']) as (fd: number) => number;
/** ioctl with an integer (or no) argument. */
export const ioctlValue = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (
  fd: number,
  request: number,
  argument: number | bigint,
) => number;
/** ioctl with a pointer to a struct the kernel reads or fills in place. */
export const ioctlBuffer = libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']) as (
  fd: number,
  request: number,
  argument: Buffer,
) => number;
/** mmap with the address as a number: 0 lets the kernel choose; with MAP_FIXED it maps over what is there. */
export const mmap = libc.func('mmap', 'void *', ['uint64_t', 'size_t', 'int', 'int', 'int', 'int64_t']) as (
  address: bigint,
  length: number | bigint,
  protection: number,
  flags: number,
  fd: number,
  offset: number,
) => NativePointer;
// munmap and mprotect take the address as a number so that a page inside a
// mapping can be named without pointer arithmetic on koffi pointers.
export const munmap = libc.func('munmap', 'int', ['uint64_t', 'size_t']) as (address: bigint, length: number | bigint) => number;
export const mprotect = libc.func('mprotect', 'int', ['uint64_t', 'size_t', 'int']) as (
  address: bigint,
  length: number | bigint,
  protection: number,
) => number;
export const memfdCreate = libc.func('memfd_create', 'int', ['str', 'unsigned int']) as (name: string, flags: number) => number;
export const ftruncate = libc.func('ftruncate', 'int', ['int', 'int64_t']) as (fd: number, length: number | bigint) => number;
/** pthread_self and pthread_kill: a vCPU thread is kicked out of KVM_RUN by a signal sent to that thread. */
export const pthreadSelf = libc.func('pthread_self', 'uint64_t', []) as () => bigint;
export const pthreadKill = libc.func('pthread_kill', 'int', ['uint64_t', 'int']) as (thread: bigint, signal: number) => number;
/** SIGUSR2 on arm64 and x86_64 Linux. */
export const SIGUSR2 = 12;
const sysconf = libc.func('sysconf', 'long', ['int']) as (name: number) => number;

export function lastErrno(): number {
  return koffi.errno();
}

export function hostPageSize(): number {
  return Number(sysconf(SC_PAGESIZE));
}

/** The numeric address of a native pointer (what a kernel struct's `__u64 addr` field wants). */
export function addressOf(pointer: NativePointer): bigint {
  return koffi.address(pointer);
}

/** The native memory at `pointer` as an ArrayBuffer, without a copy; valid until it is unmapped. */
export function viewOf(pointer: NativePointer, length: number): ArrayBuffer {
  return koffi.view(pointer, length);
}

/** MAP_FAILED is (void *)-1. */
export function isMapFailed(pointer: NativePointer): boolean {
  return pointer === null || koffi.address(pointer) === 0xffffffffffffffffn;
}
