/**
 * A complete decode of a snapshot, in the spirit of CRIU's `crit show`:
 * everything `info` summarises, plus every vCPU's registers by name and
 * value, the blobs' names and sizes, the snapshot chain (this snapshot
 * and the parent it names) and, for a snapshot imported from a Linux process
 * core, that core's notes decoded. Reads no chunk (one tag chunk at most, for
 * the allocation tag at a fault address), so it is instant on any size.
 */

import type { SnapshotReader } from '../format/model.js';
import { jsonResult } from '../json.js';
import { ChainError, findChain, readSnapshotIdentity, snapshotIdHex } from '../reader/chain.js';
import { describeSnapshot, type SnapshotInfo } from '../reader/snapshot-info.js';
import { registerName } from '../vm/arm64-registers.js';
import { type ProcessCore, readProcessCore } from './process-core.js';

export interface ShownRegister {
  readonly name: string;
  /** The KVM ONE_REG id, in hex. */
  readonly id: string;
  readonly bits: number;
  /** The value as an unsigned number (decimal string in JSON) and in hex. */
  readonly value: bigint;
  readonly hex: string;
}

export interface ShownVcpu {
  readonly id: number;
  readonly registers: ShownRegister[];
}

export interface SnapshotShow extends SnapshotInfo {
  readonly vcpuRegisters: ShownVcpu[];
  /**
   * This snapshot first, then its parents, newest first (a full snapshot's
   * chain is itself alone); a parent not found beside it has file null.
   */
  readonly chain: { snapshotId: string; file: string | null }[];
  /** For a snapshot imported from a Linux process core: its notes decoded (signal, process, threads, mappings, auxv); else null. */
  readonly processCore: ProcessCore | null;
}

function littleEndian(value: Uint8Array): bigint {
  let n = 0n;
  for (let i = value.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(value[i]);
  return n;
}

export async function showSnapshot(reader: SnapshotReader): Promise<SnapshotShow> {
  const info = await describeSnapshot(reader);
  const vcpuRegisters = (await reader.vcpus()).map((vcpu) => ({
    id: vcpu.id,
    registers: vcpu.registers.map((r) => {
      const value = littleEndian(r.value);
      return {
        name: registerName(r.id),
        id: `0x${r.id.toString(16)}`,
        bits: r.value.length * 8,
        value,
        hex: `0x${value.toString(16).padStart(r.value.length * 2, '0')}`,
      };
    }),
  }));
  return jsonResult({ ...info, vcpuRegisters, chain: chainOf(reader, info), processCore: await readProcessCore(reader) });
}

/**
 * The chain newest first: for a diff snapshot, its parents found beside it by
 * snapshot id (reader/chain.ts); a parent not found there is listed by id
 * with no file.
 */
function chainOf(reader: SnapshotReader, info: SnapshotInfo): { snapshotId: string; file: string | null }[] {
  const self = { snapshotId: info.snapshotId, file: info.file };
  if (!info.parentId) return [self];
  try {
    const older = findChain(reader.path).reverse().slice(1);
    return [self, ...older.map((file) => ({ snapshotId: snapshotIdHex(readSnapshotIdentity(file).snapshotId), file }))];
  } catch (error) {
    if (!(error instanceof ChainError)) throw error;
    return [self, { snapshotId: info.parentId, file: null }];
  }
}
