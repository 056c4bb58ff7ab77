/**
 * The LAYOUT frame of a migration stream: the source VM's page size, MTE and
 * memslots, which the destination recreates before any page arrives. JSON by
 * the one JSON rule (64-bit values as decimal strings), checked field by field.
 */
import { toJsonValue } from '../json.js';
import { MigrationStreamError } from './migration-frames.js';

export interface StreamSlot {
  readonly slot: number;
  readonly name: string;
  readonly guestAddress: bigint;
  readonly size: bigint;
  readonly readOnly: boolean;
  /** Whether PAGES frames of this slot carry tags. */
  readonly tagged: boolean;
}

export interface StreamLayout {
  /** The source's host page size: the unit of every PAGES frame. */
  readonly pageSize: number;
  readonly mteEnabled: boolean;
  /** The source backend ('kvm', 'simulated'), for people reading a report. */
  readonly backend: string;
  readonly slots: readonly StreamSlot[];
}

export function encodeLayout(layout: StreamLayout): Uint8Array {
  return Buffer.from(JSON.stringify(toJsonValue(layout)), 'utf8');
}

export function decodeLayout(payload: Uint8Array, offset: number): StreamLayout {
  const fail = (detail: string): never => {
    throw new MigrationStreamError('migration-bad-frame', offset, `LAYOUT frame: ${detail}`);
  };
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return fail('not JSON');
  }
  const record = value as Record<string, unknown>;
  if (typeof record !== 'object' || record === null) return fail('not an object');
  const { pageSize, mteEnabled, backend, slots } = record;
  if (typeof pageSize !== 'number' || ![4096, 16384, 65536].includes(pageSize)) fail(`page size ${String(pageSize)}`);
  if (typeof mteEnabled !== 'boolean' || typeof backend !== 'string' || !Array.isArray(slots)) fail('mteEnabled, backend or slots missing');
  const decoded = (slots as unknown[]).map((entry, index) => decodeSlot(entry, index, pageSize as number, fail));
  if (new Set(decoded.map((s) => s.slot)).size !== decoded.length) fail('a slot number appears twice');
  return { pageSize: pageSize as number, mteEnabled: mteEnabled as boolean, backend: backend as string, slots: decoded };
}

function decodeSlot(entry: unknown, index: number, pageSize: number, fail: (detail: string) => never): StreamSlot {
  const slot = entry as Record<string, unknown>;
  const decimal = (text: unknown): bigint => {
    if (typeof text !== 'string' || !/^\d{1,20}$/.test(text)) fail(`slot ${index}: ${String(text)} is not a decimal 64-bit value`);
    return BigInt(text as string);
  };
  if (typeof slot !== 'object' || slot === null) fail(`slot ${index} is not an object`);
  const guestAddress = decimal(slot.guestAddress);
  const size = decimal(slot.size);
  if (!Number.isInteger(slot.slot) || (slot.slot as number) < 0 || (slot.slot as number) > 0xffff_ffff) fail(`slot ${index}: bad slot id`);
  if (typeof slot.name !== 'string' || typeof slot.readOnly !== 'boolean' || typeof slot.tagged !== 'boolean') {
    fail(`slot ${index}: name, readOnly or tagged missing`);
  }
  if (size === 0n || size % BigInt(pageSize) !== 0n || guestAddress % BigInt(pageSize) !== 0n) {
    fail(`slot ${index}: address or size not a multiple of the ${pageSize}-byte page`);
  }
  return {
    slot: slot.slot as number,
    name: slot.name as string,
    guestAddress,
    size,
    readOnly: slot.readOnly as boolean,
    tagged: slot.tagged as boolean,
  };
}
