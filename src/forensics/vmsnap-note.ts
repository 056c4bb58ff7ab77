/**
 * The "VMSNAP" note: what a core has no Linux note for, so that import gives
 * back the snapshot that was exported: region names, slots and flags, every
 * vCPU register (not only the core ones), VMM blobs and annotations.
 *
 * GDB and other readers skip notes whose type they do not know. The payload
 * is JSON (bigints as hex strings, bytes as base64): small, and readable with
 * `readelf -n`-style tools.
 */
import type { SnapshotHeader, SnapshotMetadata, SnapshotRegion, VmmBlob } from '../format/model.js';
import type { VcpuState } from '../vm/vm.js';
import type { ElfNote, ElfNoteParts } from './elf-notes.js';
import { ElfCoreFormatError } from './errors.js';

export const VMSNAP_NOTE_NAME = 'VMSNAP';
/** "VS" + version 1: outside every type GDB's core reader knows. */
export const NT_VMSNAP_STATE = 0x56530001;

/** A region as the note records it: the snapshot's region without its list position. */
export type VmsnapRegionInfo = Omit<SnapshotRegion, 'index'>;

export interface VmsnapState {
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  readonly regions: VmsnapRegionInfo[];
  readonly vcpus: VcpuState[];
  readonly blobs: VmmBlob[];
  readonly annotations: Record<string, string>;
  /** The exported snapshot's identity, kept so import can write the same snapshot again. */
  readonly snapshotId: Uint8Array;
  readonly parentId: Uint8Array | null;
  readonly createdMs: bigint;
}

/**
 * Annotations with host file paths cut to their last component: a core is
 * handed to other people, and where the VMM kept its RAM file (raw.ram-file,
 * raw.tag-file) or a user's home directory is the host's business, not the
 * guest's. The file's name stays, so the annotation still says which file.
 */
export function withoutHostPaths(annotations: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(annotations)) {
    const isPath = /^(\/|~\/|[A-Za-z]:[\\/]|\.\.?\/)/.test(value);
    out[key] = isPath ? (value.split(/[\\/]/).filter(Boolean).pop() ?? '') : value;
  }
  return out;
}

export function vmsnapStateFrom(metadata: SnapshotMetadata, header: SnapshotHeader, vcpus: VcpuState[], blobs: VmmBlob[]): VmsnapState {
  return {
    pageSize: header.pageSize,
    pagesPerChunk: header.pagesPerChunk,
    regions: metadata.regions.map((r) => ({
      name: r.name,
      slot: r.slot,
      guestAddress: r.guestAddress,
      size: r.size,
      mte: r.mte,
      readOnly: r.readOnly,
    })),
    vcpus,
    blobs,
    annotations: { ...metadata.annotations },
    snapshotId: metadata.snapshotId,
    parentId: metadata.parentId,
    createdMs: metadata.createdMs,
  };
}

/**
 * The note, as the JSON text of VmsnapJson in pieces: the register list of
 * each vCPU and the base64 of each blob are pieces of their own, so a
 * snapshot at the format's limits (16 MiB of vCPUs, 64 MiB of blobs) is
 * never held as one string or one buffer besides its pieces.
 */
export function encodeVmsnapNote(state: VmsnapState): ElfNoteParts {
  const text = (value: string) => Buffer.from(value, 'utf8');
  const head = JSON.stringify({
    pageSize: state.pageSize,
    pagesPerChunk: state.pagesPerChunk,
    regions: state.regions.map((r) => ({ ...r, guestAddress: r.guestAddress.toString(16), size: r.size.toString(16) })),
  });
  const parts: Uint8Array[] = [text(`${head.slice(0, -1)},"vcpus":[`)];
  state.vcpus.forEach((v, i) => {
    const registers = v.registers.map((r) => [r.id.toString(16), Buffer.from(r.value).toString('hex')]);
    parts.push(text(`${i ? ',' : ''}${JSON.stringify({ id: v.id, registers })}`));
  });
  parts.push(text('],"blobs":['));
  state.blobs.forEach((b, i) => {
    parts.push(text(`${i ? ',' : ''}{"name":${JSON.stringify(b.name)},"data":"`));
    parts.push(Buffer.from(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength).toString('base64'), 'latin1'));
    parts.push(text('"}'));
  });
  const tail = JSON.stringify({
    annotations: state.annotations,
    snapshotId: Buffer.from(state.snapshotId).toString('hex'),
    parentId: state.parentId ? Buffer.from(state.parentId).toString('hex') : null,
    createdMs: state.createdMs.toString(),
  });
  parts.push(text(`],${tail.slice(1)}`));
  return { name: VMSNAP_NOTE_NAME, type: NT_VMSNAP_STATE, parts };
}

interface VmsnapJson {
  pageSize: number;
  pagesPerChunk: number;
  regions: { name: string; slot: number; guestAddress: string; size: string; mte: boolean; readOnly: boolean }[];
  vcpus: { id: number; registers: [string, string][] }[];
  blobs: { name: string; data: string }[];
  annotations: Record<string, string>;
  snapshotId: string;
  parentId: string | null;
  createdMs: string;
}

/** The state from the VMSNAP note, or null when the core has none (a Linux process core). */
export function decodeVmsnapNote(notes: readonly ElfNote[], path: string): VmsnapState | null {
  const note = notes.find((n) => n.name === VMSNAP_NOTE_NAME && n.type === NT_VMSNAP_STATE);
  if (!note) return null;
  let json: VmsnapJson;
  try {
    json = JSON.parse(Buffer.from(note.desc).toString('utf8')) as VmsnapJson;
  } catch (error) {
    throw new ElfCoreFormatError(path, 0, `the VMSNAP note is not valid JSON (${(error as Error).message})`);
  }
  return {
    pageSize: json.pageSize,
    pagesPerChunk: json.pagesPerChunk,
    regions: json.regions.map((r) => ({ ...r, guestAddress: BigInt(`0x${r.guestAddress}`), size: BigInt(`0x${r.size}`) })),
    vcpus: json.vcpus.map((v) => ({
      id: v.id,
      registers: v.registers.map(([id, value]) => ({ id: BigInt(`0x${id}`), value: Uint8Array.from(Buffer.from(value, 'hex')) })),
    })),
    blobs: json.blobs.map((b) => ({ name: b.name, data: Uint8Array.from(Buffer.from(b.data, 'base64')) })),
    annotations: json.annotations,
    snapshotId: Uint8Array.from(Buffer.from(json.snapshotId, 'hex')),
    parentId: json.parentId === null ? null : Uint8Array.from(Buffer.from(json.parentId, 'hex')),
    createdMs: BigInt(json.createdMs),
  };
}
