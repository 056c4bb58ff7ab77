/**
 * What the rows share: a VM with MTE and one small memslot, request builders,
 * and checks that throw ConformanceMismatch naming the call and what differed.
 * Expectations about kernel versions are written here independently of the
 * simulator's own table, so a wrong table in the simulator is caught.
 */

import { GRANULE_SIZE } from '../../src/format/constants.js';
import {
  type CopyMteTagsRequest,
  ERRNO,
  type ErrnoName,
  type MemoryBacking,
  TAGS_FROM_GUEST,
  TAGS_TO_GUEST,
  type Vm,
} from '../../src/vm/vm.js';
import { ConformanceMismatch, type ConformanceTarget } from './types.js';

/** Where rows put their slot: 1 GiB, aligned for every host page size, inside every IPA space. */
export const SLOT_IPA = 0x4000_0000n;
export const SLOT_NUMBER = 0;
/** The memslot of the guest code that rows with guest accesses run: in SLOT_IPA's 1 GiB block, past any row's slot. */
export const GUEST_CODE_SLOT = 1;
export const GUEST_CODE_IPA = SLOT_IPA + 0x2000_0000n;
/** 64 KiB: the code, its page-table page, a whole page on every host page size. */
export const GUEST_CODE_BYTES = 0x1_0000n;

export interface SlotFixture {
  readonly vm: Vm;
  readonly pageSize: number;
  /** Tag bytes per host page: pageSize / 16. */
  readonly tagsPerPage: number;
  readonly slotIpa: bigint;
  readonly pages: number;
  /** IPA of page `n` of the slot. */
  pageIpa(n: number): bigint;
}

export interface SlotOptions {
  readonly pages?: number;
  readonly readOnly?: boolean;
  readonly backing?: MemoryBacking;
  /** Default true. */
  readonly mte?: boolean;
}

export function atLeast(target: ConformanceTarget, major: number, minor: number): boolean {
  const [have, haveMinor] = target.kernelVersion;
  return have > major || (have === major && haveMinor >= minor);
}

/** Runs `body` on a fresh VM with MTE enabled and one slot at SLOT_IPA, closing the VM afterwards. */
export async function withSlot(
  target: ConformanceTarget,
  options: SlotOptions,
  body: (fixture: SlotFixture) => void | Promise<void>,
): Promise<void> {
  const vm = target.createVm();
  try {
    if (options.mte ?? true) vm.enableMte();
    const pages = options.pages ?? 4;
    vm.addMemorySlot({
      slot: SLOT_NUMBER,
      name: 'conformance',
      guestAddress: SLOT_IPA,
      size: BigInt(pages * target.pageSize),
      readOnly: options.readOnly ?? false,
      backing: options.backing ?? 'anonymous-private',
    });
    await body(slotFixture(vm, target.pageSize, pages));
  } finally {
    vm.close();
  }
}

export function slotFixture(vm: Vm, pageSize: number, pages: number): SlotFixture {
  return {
    vm,
    pageSize,
    tagsPerPage: pageSize / GRANULE_SIZE,
    slotIpa: SLOT_IPA,
    pages,
    pageIpa: (n) => SLOT_IPA + BigInt(n * pageSize),
  };
}

export function request(guestIpa: bigint, length: number | bigint, flags: bigint, buffer: Uint8Array | null): CopyMteTagsRequest {
  return { guestIpa, length: BigInt(length), flags, reserved: [0n, 0n], buffer };
}

export function toGuest(guestIpa: bigint, length: number | bigint, buffer: Uint8Array | null): CopyMteTagsRequest {
  return request(guestIpa, length, TAGS_TO_GUEST, buffer);
}

export function fromGuest(guestIpa: bigint, length: number | bigint, buffer: Uint8Array | null): CopyMteTagsRequest {
  return request(guestIpa, length, TAGS_FROM_GUEST, buffer);
}

export function describe(req: CopyMteTagsRequest): string {
  const direction =
    req.flags === TAGS_TO_GUEST ? 'TO_GUEST' : req.flags === TAGS_FROM_GUEST ? 'FROM_GUEST' : `flags=0x${req.flags.toString(16)}`;
  const buffer = req.buffer ? `${req.buffer.length}-byte buffer` : 'NULL buffer';
  return `copyMteTags(${direction} ipa=0x${req.guestIpa.toString(16)} length=0x${req.length.toString(16)} ${buffer})`;
}

/** Tags 1..15 that change every granule, from a seed: never all zero, never one value. */
export function tagPattern(count: number, seed: number): Uint8Array {
  const tags = new Uint8Array(count);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    tags[i] = 1 + (state % 15);
  }
  return tags;
}

function errnoOf(error: unknown): number | undefined {
  const errno = (error as { errno?: unknown } | null)?.errno;
  return typeof errno === 'number' ? errno : undefined;
}

function nameOf(errno: number | undefined): string {
  const entry = Object.entries(ERRNO).find(([, value]) => value === errno);
  return entry ? entry[0] : `errno ${errno}`;
}

/** `call` must fail with errno `code` (a VmErrnoError or anything carrying `errno`). */
export function expectErrno(code: ErrnoName, what: string, call: () => unknown): void {
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    const errno = errnoOf(error);
    if (errno === ERRNO[code]) return;
    const detail = errno === undefined ? String(error) : nameOf(errno);
    throw new ConformanceMismatch(`${what}: expected ${code}, got ${detail}`);
  }
  throw new ConformanceMismatch(`${what}: expected ${code}, got return value ${String(result)}`);
}

/** `call` must return `expected` without throwing. */
export function expectReturn(expected: number, what: string, call: () => number): void {
  let result: number;
  try {
    result = call();
  } catch (error) {
    const errno = errnoOf(error);
    throw new ConformanceMismatch(`${what}: expected ${expected}, got ${errno === undefined ? String(error) : nameOf(errno)}`);
  }
  if (result !== expected) throw new ConformanceMismatch(`${what}: expected ${expected}, got ${result}`);
}

export function expectCopy(vm: Vm, req: CopyMteTagsRequest, expected: number): void {
  expectReturn(expected, describe(req), () => vm.copyMteTags(req));
}

export function expectCopyErrno(vm: Vm, req: CopyMteTagsRequest, code: ErrnoName): void {
  expectErrno(code, describe(req), () => vm.copyMteTags(req));
}

export function expectBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.length !== expected.length) {
    throw new ConformanceMismatch(`${what}: expected ${expected.length} bytes, got ${actual.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      throw new ConformanceMismatch(`${what}: byte ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

export function expectTrue(condition: boolean, what: string): void {
  if (!condition) throw new ConformanceMismatch(what);
}

/** Reads `pages` pages of tags from `ipa` (FROM_GUEST must succeed). */
export function readTags(vm: Vm, ipa: bigint, pages: number, pageSize: number): Uint8Array {
  const buffer = new Uint8Array((pages * pageSize) / GRANULE_SIZE).fill(0xee);
  expectCopy(vm, fromGuest(ipa, pages * pageSize, buffer), pages * pageSize);
  return buffer;
}

/** Writes whole pages of tags at `ipa` (TO_GUEST must succeed). */
export function writeTags(vm: Vm, ipa: bigint, tags: Uint8Array): void {
  const length = tags.length * GRANULE_SIZE;
  expectCopy(vm, toGuest(ipa, length, tags), length);
}

export function zeros(count: number): Uint8Array {
  return new Uint8Array(count);
}
