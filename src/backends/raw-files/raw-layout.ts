/**
 * The layout of a VMM's raw dumps: which guest range sits where in the RAM
 * file, and where its tags sit in the tag file. docs/raw-layout.md documents
 * every field of the JSON, its defaults and the files' exact sizes.
 *
 *   RAM file   | region 0 bytes | region 1 bytes | ...      (file order)
 *   tag file   | r0 tags        | r1 tags (hole if no MTE) | ...
 *
 * Tag file offsets follow the RAM file at 1/16 ('byte': one tag per byte,
 * the KVM_ARM_MTE_COPY_TAGS layout) or 1/32 ('packed': two tags per byte,
 * low nibble = lower address, the Linux ELF core layout), counting ALL
 * regions: tagOffset = fileOffset / 16 (or / 32). Regions without MTE leave a
 * hole in the tag file. So one rule maps any RAM offset to its tags, whatever
 * the mix of regions, and a tag file made this way is the RAM file's shadow:
 * the RAM file is exactly as long as the last region's end, the tag file
 * exactly 1/16 (1/32) of that (`rawFileSizes`).
 *
 * Without `fileOffset`, regions are packed one after another in list order
 * from offset 0. A layout file is JSON:
 *
 *   { "pageSize": 4096, "tagLayout": "byte",
 *     "regions": [{ "name": "ram", "guestAddress": "0x40000000", "size": "256MiB", "mte": true }] }
 *
 * Sizes and addresses are integers or strings: "0x1000", "4096", "256MiB".
 */

import { readFileSync } from 'node:fs';
import { GRANULE_SIZE, PAGE_SIZES } from '../../format/constants.js';
import { VmsnapError } from '../../format/errors.js';

export type TagFileLayout = 'byte' | 'packed';

export interface RawRegion {
  readonly name: string;
  /** KVM slot number the region becomes (0..2^32-1); default its index. */
  readonly slot: number;
  readonly guestAddress: bigint;
  readonly size: bigint;
  /** The region's tags are in the tag file and are saved; false: the region has no tags (never read-only and mte). */
  readonly mte: boolean;
  readonly readOnly: boolean;
  /** Offset of the region's first byte in the RAM file. */
  readonly fileOffset: bigint;
}

export interface RawLayout {
  readonly pageSize: number;
  readonly tagLayout: TagFileLayout;
  readonly regions: readonly RawRegion[];
}

/** A region as written in a layout file or passed by a caller; missing fields take defaults. */
export interface RawRegionSpec {
  readonly name: string;
  readonly slot?: number;
  readonly guestAddress: bigint;
  readonly size: bigint;
  readonly mte?: boolean;
  readonly readOnly?: boolean;
  readonly fileOffset?: bigint;
}

export interface RawLayoutSpec {
  readonly pageSize: number;
  readonly tagLayout?: TagFileLayout;
  readonly regions: readonly RawRegionSpec[];
}

/** A layout that cannot be used; `where` is the JSON path ("regions[1].size") or the file. */
export class RawLayoutError extends VmsnapError {
  constructor(
    readonly where: string,
    readonly detail: string,
  ) {
    super('bad-raw-layout', 'invalid-input', `raw layout ${where}: ${detail}`);
  }
}

/** Guest bytes per tag-file byte. */
export function tagFileRatio(layout: TagFileLayout): number {
  return layout === 'byte' ? GRANULE_SIZE : 2 * GRANULE_SIZE;
}

/** Offset in the tag file of the tags of RAM file offset `fileOffset` (see the module comment). */
export function tagFileOffset(layout: TagFileLayout, fileOffset: bigint): bigint {
  return fileOffset / BigInt(tagFileRatio(layout));
}

/** The exact sizes the layout's files must have: the RAM file ends where its last region ends, the tag file is its shadow. */
export function rawFileSizes(layout: RawLayout): { readonly ram: bigint; readonly tags: bigint } {
  const ram = layout.regions.reduce((end, r) => (r.fileOffset + r.size > end ? r.fileOffset + r.size : end), 0n);
  return { ram, tags: tagFileOffset(layout.tagLayout, ram) };
}

/** Slot numbers are 32-bit in KVM's ABI and in the snapshot format. */
const MAX_SLOT = 0xffff_ffff;

/** Fills defaults and checks alignment, overlaps and names. */
export function resolveRawLayout(spec: RawLayoutSpec): RawLayout {
  if (!PAGE_SIZES.includes(spec.pageSize)) {
    throw new RawLayoutError('pageSize', `${spec.pageSize} is not an arm64 host page size (${PAGE_SIZES.join(', ')})`);
  }
  const tagLayout = spec.tagLayout ?? 'byte';
  if (tagLayout !== 'byte' && tagLayout !== 'packed')
    throw new RawLayoutError('tagLayout', `"${tagLayout}" is neither "byte" nor "packed"`);
  if (spec.regions.length === 0) throw new RawLayoutError('regions', 'no regions');
  const page = BigInt(spec.pageSize);
  let nextOffset = 0n;
  const regions = spec.regions.map((region, index): RawRegion => {
    const where = `regions[${index}]`;
    if (!region.name) throw new RawLayoutError(`${where}.name`, 'empty name');
    if (region.size <= 0n || region.size % page !== 0n)
      throw new RawLayoutError(`${where}.size`, `${region.size} is not a positive multiple of ${spec.pageSize}`);
    if (region.guestAddress < 0n || region.guestAddress % page !== 0n) {
      throw new RawLayoutError(`${where}.guestAddress`, `0x${region.guestAddress.toString(16)} is not aligned to ${spec.pageSize}`);
    }
    if (region.guestAddress + region.size > 1n << 64n)
      throw new RawLayoutError(`${where}.size`, 'the region runs past the end of the 64-bit guest address space');
    const slot = region.slot ?? index;
    if (!Number.isInteger(slot) || slot < 0 || slot > MAX_SLOT)
      throw new RawLayoutError(`${where}.slot`, `${slot} is not an integer in 0..${MAX_SLOT}`);
    if (region.mte && region.readOnly) {
      throw new RawLayoutError(
        `${where}.mte`,
        'a read-only region cannot keep tags (KVM cannot write tags into a read-only memslot): drop mte or readOnly',
      );
    }
    const fileOffset = region.fileOffset ?? nextOffset;
    if (fileOffset < 0n || fileOffset % BigInt(2 * GRANULE_SIZE) !== 0n) {
      throw new RawLayoutError(
        `${where}.fileOffset`,
        `${fileOffset} is not a multiple of 32, so its tags would not start on a tag-file byte`,
      );
    }
    nextOffset = fileOffset + region.size;
    return {
      name: region.name,
      slot,
      guestAddress: region.guestAddress,
      size: region.size,
      mte: region.mte ?? false,
      readOnly: region.readOnly ?? false,
      fileOffset,
    };
  });
  checkDistinct(regions);
  return { pageSize: spec.pageSize, tagLayout, regions };
}

function checkDistinct(regions: readonly RawRegion[]): void {
  regions.forEach((a, i) => {
    regions.slice(0, i).forEach((b, j) => {
      const where = `regions[${i}]`;
      if (a.name === b.name) throw new RawLayoutError(`${where}.name`, `"${a.name}" is also regions[${j}]'s name`);
      if (a.slot === b.slot) throw new RawLayoutError(`${where}.slot`, `slot ${a.slot} is also regions[${j}]'s slot`);
      if (a.guestAddress < b.guestAddress + b.size && b.guestAddress < a.guestAddress + a.size) {
        throw new RawLayoutError(`${where}.guestAddress`, `guest range overlaps regions[${j}] (${b.name})`);
      }
      if (a.fileOffset < b.fileOffset + b.size && b.fileOffset < a.fileOffset + a.size) {
        throw new RawLayoutError(`${where}.fileOffset`, `file range overlaps regions[${j}] (${b.name})`);
      }
    });
  });
}

const UNITS: Record<string, bigint> = {
  '': 1n,
  k: 1n << 10n,
  kib: 1n << 10n,
  m: 1n << 20n,
  mib: 1n << 20n,
  g: 1n << 30n,
  gib: 1n << 30n,
  t: 1n << 40n,
  tib: 1n << 40n,
};

/** An integer from JSON: a safe number, or "0x..", "123", "256MiB", "4 GiB". */
export function parseByteCount(value: unknown, where: string): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0)
      throw new RawLayoutError(where, `${value} is not a non-negative safe integer; write large values as strings`);
    return BigInt(value);
  }
  if (typeof value !== 'string')
    throw new RawLayoutError(where, `expected a number or a string, got ${value === null ? 'null' : typeof value}`);
  const text = value.trim();
  if (/^0x[0-9a-f]+$/i.test(text)) return BigInt(text);
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text);
  const unit = match ? UNITS[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new RawLayoutError(where, `"${value}" is not a byte count (e.g. "0x1000", "4096", "256MiB")`);
  return BigInt(match[1]) * unit;
}

const TOP_KEYS = new Set(['pageSize', 'tagLayout', 'regions']);
const REGION_KEYS = new Set(['name', 'slot', 'guestAddress', 'size', 'mte', 'readOnly', 'fileOffset']);

function checkKeys(object: Record<string, unknown>, allowed: Set<string>, where: string): void {
  for (const key of Object.keys(object)) {
    if (!allowed.has(key)) throw new RawLayoutError(where ? `${where}.${key}` : key, `unknown key (expected ${[...allowed].join(', ')})`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalBoolean(value: unknown, where: string): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new RawLayoutError(where, `expected true or false, got ${JSON.stringify(value)}`);
}

function parseRegion(value: unknown, index: number): RawRegionSpec {
  const where = `regions[${index}]`;
  if (!isObject(value)) throw new RawLayoutError(where, 'expected an object');
  checkKeys(value, REGION_KEYS, where);
  if (typeof value.name !== 'string') throw new RawLayoutError(`${where}.name`, 'expected a string');
  if (value.guestAddress === undefined) throw new RawLayoutError(`${where}.guestAddress`, 'missing');
  if (value.size === undefined) throw new RawLayoutError(`${where}.size`, 'missing');
  if (
    value.slot !== undefined &&
    (typeof value.slot !== 'number' || !Number.isInteger(value.slot) || value.slot < 0 || value.slot > MAX_SLOT)
  ) {
    throw new RawLayoutError(`${where}.slot`, `expected an integer in 0..${MAX_SLOT}, got ${JSON.stringify(value.slot)}`);
  }
  return {
    name: value.name,
    slot: value.slot as number | undefined,
    guestAddress: parseByteCount(value.guestAddress, `${where}.guestAddress`),
    size: parseByteCount(value.size, `${where}.size`),
    mte: optionalBoolean(value.mte, `${where}.mte`),
    readOnly: optionalBoolean(value.readOnly, `${where}.readOnly`),
    fileOffset: value.fileOffset === undefined ? undefined : parseByteCount(value.fileOffset, `${where}.fileOffset`),
  };
}

/** Parses and resolves a layout file's JSON text. */
export function parseRawLayout(text: string): RawLayout {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new RawLayoutError('(file)', `not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!isObject(json)) throw new RawLayoutError('(file)', 'expected a JSON object with pageSize and regions');
  checkKeys(json, TOP_KEYS, '');
  if (typeof json.pageSize !== 'number') throw new RawLayoutError('pageSize', `expected a number, got ${JSON.stringify(json.pageSize)}`);
  if (!Array.isArray(json.regions)) throw new RawLayoutError('regions', 'expected an array');
  return resolveRawLayout({
    pageSize: json.pageSize,
    tagLayout: json.tagLayout as TagFileLayout | undefined,
    regions: json.regions.map(parseRegion),
  });
}

/** Reads and parses a layout file; errors name the file and the JSON path. */
export function readRawLayoutFile(path: string): RawLayout {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new RawLayoutError(path, `cannot read: ${error instanceof Error ? error.message : String(error)}`);
  }
  try {
    return parseRawLayout(text);
  } catch (error) {
    if (error instanceof RawLayoutError) throw new RawLayoutError(`${path} ${error.where}`, error.detail);
    throw error;
  }
}

/**
 * The layout as JSON, every field explicit, by the library's one rule: 64-bit values as decimal strings
 * (docs/api.md, "JSON"); parseRawLayout reads it back.
 */
export function formatRawLayout(layout: RawLayout): string {
  const decimal = (value: bigint): string => value.toString();
  return `${JSON.stringify(
    {
      pageSize: layout.pageSize,
      tagLayout: layout.tagLayout,
      regions: layout.regions.map((r) => ({
        name: r.name,
        slot: r.slot,
        guestAddress: decimal(r.guestAddress),
        size: decimal(r.size),
        mte: r.mte,
        readOnly: r.readOnly,
        fileOffset: decimal(r.fileOffset),
      })),
    },
    null,
    2,
  )}\n`;
}
