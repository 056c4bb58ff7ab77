/**
 * What a snapshot imported from a Linux process core says about the process
 * and its death, for `show` and `info`: the notes kept in the
 * PROCESS_NOTES_BLOB blob, decoded, plus the one fact the notes alone lack:
 * the allocation tag of the granule the faulting pointer reached, read from
 * the snapshot's tags (as GDB's "Logical tag (0xb) does not match the
 * allocation tag (0x3)" does from the core's memtag segment).
 */
import { GRANULE_SIZE } from '../format/constants.js';
import type { SnapshotReader } from '../format/model.js';
import { jsonResult } from '../json.js';
import { decodeNotes, type ElfNote } from './elf-notes.js';
import { ElfCoreFormatError } from './errors.js';
import { decodeProcessNotes, PROCESS_NOTES_BLOB, type ProcessNotes } from './process-notes.js';

export interface ProcessCore extends ProcessNotes {
  /** The allocation tag at the fault address (top byte ignored) when a tagged region holds it; else null. */
  readonly faultAllocationTag: number | null;
  /** Why the kept notes could not be read (a damaged blob), or null: a report never fails on them. */
  readonly problem: string | null;
}

/** A user address without its top byte (TBI): where a tagged pointer points. */
function untagged(address: bigint): bigint {
  return address & 0x00ff_ffff_ffff_ffffn;
}

async function allocationTagAt(reader: SnapshotReader, address: bigint): Promise<number | null> {
  const granule = address - (address % BigInt(GRANULE_SIZE));
  const region = reader.regions.find((r) => granule >= r.guestAddress && granule < r.guestAddress + r.size);
  if (!region?.mte) return null;
  return (await reader.readTags(granule, GRANULE_SIZE))[0];
}

/** The process core a snapshot was imported from, decoded; null for a snapshot that keeps no Linux notes. */
export async function readProcessCore(reader: SnapshotReader): Promise<ProcessCore | null> {
  if (!reader.blobSummaries.some((b) => b.name === PROCESS_NOTES_BLOB)) return null;
  const blob = (await reader.blobs()).find((b) => b.name === PROCESS_NOTES_BLOB)!;
  let records: ElfNote[];
  try {
    records = decodeNotes(blob.data, `${reader.path} (blob ${PROCESS_NOTES_BLOB})`, 0n);
  } catch (error) {
    if (!(error instanceof ElfCoreFormatError)) throw error;
    return jsonResult({ ...decodeProcessNotes([]), faultAllocationTag: null, problem: error.message });
  }
  const notes = decodeProcessNotes(records);
  const fault = notes.signal?.faultAddress;
  const faultAllocationTag = fault === null || fault === undefined ? null : await allocationTagAt(reader, untagged(fault));
  return jsonResult({ ...notes, faultAllocationTag, problem: null });
}
