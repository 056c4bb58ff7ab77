/**
 * The META, VCPU and BLOB payloads: MessagePack maps with string keys
 * (spec/FORMAT.md, "Metadata"). 64-bit fields are written from BigInts so that
 * every msgpack reader sees integers; on reading, any msgpack integer encoding
 * is accepted. Unknown keys are ignored (a minor version may add keys).
 * Decoding checks every field's type and range and names the bad one.
 */
import { Packr } from 'msgpackr';
import { LIMITS } from './constants.js';
import { SnapshotFormatError } from './errors.js';
import type { SnapshotMetadata, SnapshotRegion, VmmBlob } from './model.js';
import { type RegisterValue, registerSize, type VcpuState } from './registers.js';

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, variableMapSize: false });

export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

function unpack(section: string, offset: bigint, payload: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (error) {
    throw new SnapshotFormatError('bad-metadata', `not valid MessagePack: ${(error as Error).message}`, { section, offset });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new SnapshotFormatError('bad-metadata', 'payload is not a MessagePack map', { section, offset });
  }
  return value as Record<string, unknown>;
}

/** Field checks that name the section, the file offset of the payload and the field path. */
class FieldReader {
  constructor(
    readonly section: string,
    readonly offset: bigint,
  ) {}

  fail(path: string, expected: string): never {
    throw new SnapshotFormatError('bad-metadata', `field "${path}" must be ${expected}`, { section: this.section, offset: this.offset });
  }

  uint(value: unknown, path: string, max: bigint): bigint {
    const big = typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : value;
    if (typeof big !== 'bigint' || big < 0n || big > max) this.fail(path, `an unsigned integer <= ${max}`);
    return big;
  }

  small(value: unknown, path: string, max: number): number {
    return Number(this.uint(value, path, BigInt(max)));
  }

  string(value: unknown, path: string, maxLength = 4096): string {
    if (typeof value !== 'string' || value.length > maxLength) this.fail(path, `a string of at most ${maxLength} characters`);
    return value;
  }

  bool(value: unknown, path: string): boolean {
    if (typeof value !== 'boolean') this.fail(path, 'a boolean');
    return value;
  }

  bytes(value: unknown, path: string, length?: number): Uint8Array {
    if (!(value instanceof Uint8Array) || (length !== undefined && value.length !== length)) {
      this.fail(path, length === undefined ? 'binary' : `binary of ${length} bytes`);
    }
    return new Uint8Array(value);
  }

  array(value: unknown, path: string, max: number): unknown[] {
    if (!Array.isArray(value) || value.length > max) this.fail(path, `an array of at most ${max} entries`);
    return value;
  }

  map(value: unknown, path: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) this.fail(path, 'a map');
    return value as Record<string, unknown>;
  }
}

const U64_MAX = (1n << 64n) - 1n;

export function encodeMetadata(metadata: SnapshotMetadata): Uint8Array {
  return packValue({
    snapshot_id: metadata.snapshotId,
    parent_id: metadata.parentId,
    created_ms: metadata.createdMs,
    tool: metadata.tool,
    regions: metadata.regions.map((region) => ({
      name: region.name,
      guest_address: region.guestAddress,
      size: region.size,
      mte: region.mte,
      read_only: region.readOnly,
      slot: region.slot,
    })),
    annotations: { ...metadata.annotations },
  });
}

export function decodeMetadata(payload: Uint8Array, offset: bigint): SnapshotMetadata {
  const fields = new FieldReader('META', offset);
  const raw = unpack('META', offset, payload);
  const parent = raw.parent_id;
  const regionsRaw = fields.array(raw.regions, 'regions', LIMITS.regions);
  const annotationsRaw = fields.map(raw.annotations ?? {}, 'annotations');
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(annotationsRaw)) annotations[key] = fields.string(value, `annotations.${key}`, 65_536);
  return {
    snapshotId: fields.bytes(raw.snapshot_id, 'snapshot_id', 16),
    parentId: parent === null || parent === undefined ? null : fields.bytes(parent, 'parent_id', 16),
    createdMs: fields.uint(raw.created_ms, 'created_ms', U64_MAX),
    tool: fields.string(raw.tool, 'tool'),
    regions: regionsRaw.map((entry, index) => decodeRegion(fields, entry, index)),
    annotations,
  };
}

function decodeRegion(fields: FieldReader, entry: unknown, index: number): SnapshotRegion {
  const path = `regions[${index}]`;
  const region = fields.map(entry, path);
  return {
    index,
    name: fields.string(region.name, `${path}.name`, 256),
    guestAddress: fields.uint(region.guest_address, `${path}.guest_address`, U64_MAX),
    size: fields.uint(region.size, `${path}.size`, LIMITS.regionSize),
    mte: fields.bool(region.mte, `${path}.mte`),
    readOnly: fields.bool(region.read_only, `${path}.read_only`),
    slot: fields.small(region.slot, `${path}.slot`, 0xffff_ffff),
  };
}

export function encodeVcpu(vcpu: VcpuState): Uint8Array {
  return packValue({ id: vcpu.id, registers: vcpu.registers.map((register) => [register.id, register.value]) });
}

export function decodeVcpu(payload: Uint8Array, offset: bigint): VcpuState {
  const fields = new FieldReader('VCPU', offset);
  const raw = unpack('VCPU', offset, payload);
  const id = fields.small(raw.id, 'id', 0xffff_ffff);
  const registers = fields.array(raw.registers, 'registers', LIMITS.registersPerVcpu).map((pair, i): RegisterValue => {
    const entry = fields.array(pair, `registers[${i}]`, 2);
    const registerId = fields.uint(entry[0], `registers[${i}][0]`, U64_MAX);
    const size = registerSize(registerId);
    return { id: registerId, value: fields.bytes(entry[1], `registers[${i}][1] (register 0x${registerId.toString(16)})`, size) };
  });
  return { id, registers };
}

export function encodeBlob(blob: VmmBlob): Uint8Array {
  return packValue({ name: blob.name, data: blob.data });
}

export function decodeBlob(payload: Uint8Array, offset: bigint): VmmBlob {
  const fields = new FieldReader('BLOB', offset);
  const raw = unpack('BLOB', offset, payload);
  return { name: fields.string(raw.name, 'name', 256), data: fields.bytes(raw.data, 'data') };
}
