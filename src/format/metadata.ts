/**
 * The META, VCPU and BLOB payloads: MessagePack maps with string keys
 * (spec/FORMAT.md, "Metadata"). 64-bit fields are written from BigInts so that
 * every msgpack reader sees integers. Reading goes through the strict decoder
 * of msgpack.ts (any integer width, valid UTF-8, no key twice), then checks
 * every field's type and range and names the bad one. Unknown keys are
 * ignored (a minor version may add keys). Lengths of strings are counted in
 * Unicode code points, as the spec counts characters.
 */
import { Packr } from 'msgpackr/pack';
import { LIMITS } from './constants.js';
import { SnapshotFormatError } from './errors.js';
import type { SnapshotMetadata, SnapshotRegion, VmmBlob } from './model.js';
import { codePoints, decodeMessagePack, MessagePackError, type MessagePackValue } from './msgpack.js';
import { type RegisterValue, registerSize, type VcpuState } from './registers.js';

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, variableMapSize: false });

export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

type PayloadMap = ReadonlyMap<string, MessagePackValue>;

function unpack(section: string, offset: bigint, payload: Uint8Array): PayloadMap {
  let value: MessagePackValue;
  try {
    value = decodeMessagePack(payload);
  } catch (error) {
    if (!(error instanceof MessagePackError)) throw error;
    throw new SnapshotFormatError('bad-metadata', `not valid MessagePack for this format: ${error.message}`, {
      section,
      offset: offset + BigInt(error.offset),
    });
  }
  if (!(value instanceof Map)) throw new SnapshotFormatError('bad-metadata', 'payload is not a MessagePack map', { section, offset });
  return value;
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

  uint(value: MessagePackValue | undefined, path: string, max: bigint): bigint {
    if (typeof value !== 'bigint' || value < 0n || value > max) this.fail(path, `an unsigned integer <= ${max}`);
    return value;
  }

  small(value: MessagePackValue | undefined, path: string, max: number): number {
    return Number(this.uint(value, path, BigInt(max)));
  }

  string(value: MessagePackValue | undefined, path: string, maxCodePoints: number): string {
    if (typeof value !== 'string' || codePoints(value) > maxCodePoints) this.fail(path, `a string of at most ${maxCodePoints} characters`);
    return value;
  }

  bool(value: MessagePackValue | undefined, path: string): boolean {
    if (typeof value !== 'boolean') this.fail(path, 'a boolean');
    return value;
  }

  bytes(value: MessagePackValue | undefined, path: string, length?: number): Uint8Array {
    if (!(value instanceof Uint8Array) || (length !== undefined && value.length !== length)) {
      this.fail(path, length === undefined ? 'binary' : `binary of ${length} bytes`);
    }
    return value;
  }

  array(value: MessagePackValue | undefined, path: string, max: number): MessagePackValue[] {
    if (!Array.isArray(value) || value.length > max) this.fail(path, `an array of at most ${max} entries`);
    return value;
  }

  map(value: MessagePackValue | undefined, path: string): PayloadMap {
    if (!(value instanceof Map)) this.fail(path, 'a map');
    return value;
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
  const parent = raw.get('parent_id');
  const regionsRaw = fields.array(raw.get('regions'), 'regions', LIMITS.regions);
  const annotations: Record<string, string> = {};
  for (const [key, value] of fields.map(raw.get('annotations') ?? new Map(), 'annotations')) {
    fields.string(key, 'annotations (a key)', LIMITS.text);
    // Defined, not assigned: a key such as "__proto__" is an annotation like any other.
    Object.defineProperty(annotations, key, {
      value: fields.string(value, `annotations.${key}`, LIMITS.annotationValue),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return {
    snapshotId: fields.bytes(raw.get('snapshot_id'), 'snapshot_id', 16).slice(),
    parentId: parent === null || parent === undefined ? null : fields.bytes(parent, 'parent_id', 16).slice(),
    createdMs: fields.uint(raw.get('created_ms'), 'created_ms', U64_MAX),
    tool: fields.string(raw.get('tool'), 'tool', LIMITS.text),
    regions: regionsRaw.map((entry, index) => decodeRegion(fields, entry, index)),
    annotations,
  };
}

function decodeRegion(fields: FieldReader, entry: MessagePackValue, index: number): SnapshotRegion {
  const path = `regions[${index}]`;
  const region = fields.map(entry, path);
  return {
    index,
    name: fields.string(region.get('name'), `${path}.name`, LIMITS.name),
    guestAddress: fields.uint(region.get('guest_address'), `${path}.guest_address`, U64_MAX),
    size: fields.uint(region.get('size'), `${path}.size`, LIMITS.regionSize),
    mte: fields.bool(region.get('mte'), `${path}.mte`),
    readOnly: fields.bool(region.get('read_only'), `${path}.read_only`),
    slot: fields.small(region.get('slot'), `${path}.slot`, 0xffff_ffff),
  };
}

export function encodeVcpu(vcpu: VcpuState): Uint8Array {
  return packValue({ id: vcpu.id, registers: vcpu.registers.map((register) => [register.id, register.value]) });
}

/** A vCPU's registers; each register id at most once (spec: "Each register id appears at most once"). */
export function decodeVcpu(payload: Uint8Array, offset: bigint): VcpuState {
  const fields = new FieldReader('VCPU', offset);
  const raw = unpack('VCPU', offset, payload);
  const id = fields.small(raw.get('id'), 'id', 0xffff_ffff);
  const seen = new Set<bigint>();
  const registers = fields.array(raw.get('registers'), 'registers', LIMITS.registersPerVcpu).map((pair, i): RegisterValue => {
    const entry = fields.array(pair, `registers[${i}]`, 2);
    if (entry.length !== 2) fields.fail(`registers[${i}]`, 'an array of two entries [id, value]');
    const registerId = fields.uint(entry[0], `registers[${i}][0]`, U64_MAX);
    if (seen.has(registerId)) {
      throw new SnapshotFormatError('bad-metadata', `vCPU ${id} holds register 0x${registerId.toString(16)} twice`, {
        section: 'VCPU',
        offset,
      });
    }
    seen.add(registerId);
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
  // The data stays a view of the payload, which the reader allocated for this section alone: no second copy.
  return { name: fields.string(raw.get('name'), 'name', LIMITS.name), data: fields.bytes(raw.get('data'), 'data') };
}
