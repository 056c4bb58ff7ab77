/**
 * Compares two VMs page by page and granule by granule: the proof that a
 * restore reproduced the guest. Reads a chunk at a time, so memory stays
 * bounded whatever the guest size.
 */

import { equalBytes } from '../format/bytes.js';
import { GRANULE_SIZE } from '../format/constants.js';
import { jsonResult } from '../json.js';
import { readGuestTags } from '../vm/tag-copy.js';
import type { VmSource } from '../vm/vm.js';

export interface VmDifference {
  readonly kind: 'layout' | 'data' | 'tag' | 'vcpu';
  readonly message: string;
  readonly guestAddress?: bigint;
}

export interface VmComparison {
  readonly equal: boolean;
  readonly pagesCompared: number;
  readonly granulesCompared: number;
  /** The first differences found, at most `limit`. */
  readonly differences: readonly VmDifference[];
}

const STEP_BYTES = 1024 * 1024;

function firstDifferentIndex(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

export interface CompareOptions {
  /** Compare allocation tags too (when both VMs have MTE on); default true. */
  readonly tags?: boolean;
  /** At most this many differences are kept; default 10. */
  readonly limit?: number;
  /** Guest bytes compared so far, of all slots' bytes; called after each step. */
  readonly onProgress?: (bytesDone: bigint, bytesTotal: bigint) => void;
}

export function compareVms(expected: VmSource, actual: VmSource, options: CompareOptions = {}): VmComparison {
  const limit = options.limit ?? 10;
  const differences: VmDifference[] = [];
  const note = (difference: VmDifference) => differences.length < limit && differences.push(difference);
  const slotsA = [...expected.memorySlots()].sort((x, y) => x.slot - y.slot);
  const slotsB = [...actual.memorySlots()].sort((x, y) => x.slot - y.slot);
  const describe = (s: (typeof slotsA)[number]) =>
    `${s.slot}:${s.name}@0x${s.guestAddress.toString(16)}+0x${s.size.toString(16)}${s.readOnly ? ':ro' : ''}`;
  if (slotsA.map(describe).join() !== slotsB.map(describe).join()) {
    note({ kind: 'layout', message: `memory slots differ: [${slotsA.map(describe).join(', ')}] vs [${slotsB.map(describe).join(', ')}]` });
    return jsonResult({ equal: false, pagesCompared: 0, granulesCompared: 0, differences });
  }
  const withTags = (options.tags ?? true) && expected.mteEnabled && actual.mteEnabled;
  let pagesCompared = 0;
  let granulesCompared = 0;
  const bytesTotal = slotsA.reduce((sum, slot) => sum + slot.size, 0n);
  let bytesDone = 0n;
  for (const slot of slotsA) {
    for (let offset = 0n; offset < slot.size; offset += BigInt(STEP_BYTES)) {
      const address = slot.guestAddress + offset;
      const length = Number(slot.size - offset < BigInt(STEP_BYTES) ? slot.size - offset : BigInt(STEP_BYTES));
      const a = new Uint8Array(length);
      const b = new Uint8Array(length);
      expected.readMemory(address, a);
      actual.readMemory(address, b);
      if (!equalBytes(a, b)) {
        const at = firstDifferentIndex(a, b);
        note({
          kind: 'data',
          guestAddress: address + BigInt(at),
          message: `byte differs: 0x${a[at].toString(16)} vs 0x${b[at].toString(16)}`,
        });
      }
      pagesCompared += length / expected.pageSize;
      if (withTags && !slot.readOnly) {
        const ta = new Uint8Array(length / GRANULE_SIZE);
        const tb = new Uint8Array(length / GRANULE_SIZE);
        readGuestTags(expected, address, ta);
        readGuestTags(actual, address, tb);
        if (!equalBytes(ta, tb)) {
          const at = firstDifferentIndex(ta, tb);
          note({
            kind: 'tag',
            guestAddress: address + BigInt(at * GRANULE_SIZE),
            message: `allocation tag differs: ${ta[at]} vs ${tb[at]}`,
          });
        }
        granulesCompared += ta.length;
      }
      bytesDone += BigInt(length);
      options.onProgress?.(bytesDone, bytesTotal);
    }
  }
  compareVcpus(expected, actual, note);
  return jsonResult({ equal: differences.length === 0, pagesCompared, granulesCompared, differences });
}

function compareVcpus(expected: VmSource, actual: VmSource, note: (d: VmDifference) => void): void {
  const a = expected.vcpus();
  const b = actual.vcpus();
  if (a.length !== b.length) {
    note({ kind: 'vcpu', message: `${a.length} vCPUs vs ${b.length}` });
    return;
  }
  a.forEach((vcpu, i) => {
    for (const id of vcpu.registerIds()) {
      const other = b[i].registerIds().includes(id) ? b[i].getRegister(id) : undefined;
      if (!other || !equalBytes(vcpu.getRegister(id), other))
        note({ kind: 'vcpu', message: `vCPU ${vcpu.id} register 0x${id.toString(16)} differs` });
    }
  });
}
