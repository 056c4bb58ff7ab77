/**
 * The structure-aware mutator of the fuzzer (test/fuzz.test.ts): it takes a
 * valid snapshot apart (test/support/forge.ts), changes one field that the
 * format gives meaning to, and seals the file again with every checksum
 * recomputed, so the integrity checks pass and the readers' own rules are
 * what must catch it. Deterministic: the same seed gives the same case.
 */
import { Packr } from 'msgpackr';
import { checksum } from '../../src/format/checksum.js';
import { FrameRandom } from '../../src/workload/random.js';
import { type ForgedSection, seal, takeApart } from './forge.js';

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, variableMapSize: false });

/** The workload's seeded xorshift32, with a pick: the same seed gives the same case. */
export class FuzzRandom extends FrameRandom {
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }
}

/** Values that sit on the edges of the fields they land in. */
const EDGE_NUMBERS = [0, 1, 2, 3, 7, 15, 16, 255, 256, 4095, 4096, 4097, 16384, 65535, 65536, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, -1];
const EDGE_BIGINTS = [0n, 1n, 4096n, 1n << 31n, 1n << 32n, (1n << 52n) - 4096n, 1n << 52n, 1n << 53n, (1n << 63n) - 1n, (1n << 64n) - 1n];

function edgeValue(random: FuzzRandom, like: unknown): unknown {
  switch (random.below(8)) {
    case 0:
      return random.pick(EDGE_BIGINTS);
    case 1:
      return 'x'.repeat(random.pick([0, 1, 64, 300]));
    case 2:
      return null;
    case 3:
      return [];
    case 4:
      return typeof like === 'boolean' ? !like : true;
    case 5:
      return new Uint8Array(random.pick([0, 1, 15, 16, 17]));
    default:
      return random.pick(EDGE_NUMBERS);
  }
}

/** Changes one value somewhere inside a decoded MessagePack tree (maps, arrays), or adds or removes a key. */
function mutateTree(value: unknown, random: FuzzRandom, depth = 0): unknown {
  if (Array.isArray(value)) {
    if (value.length === 0 || random.below(5) === 0) return random.below(2) ? [...value, edgeValue(random, undefined)] : value.slice(1);
    const copy = [...value];
    const at = random.below(copy.length);
    copy[at] = mutateTree(copy[at], random, depth + 1);
    return copy;
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    const entries = Object.entries(value as Record<string, unknown>);
    const roll = random.below(8);
    if (entries.length === 0 || roll === 0)
      return { ...value, [random.pick(['extra', 'id', 'name', 'regions', ''])]: edgeValue(random, undefined) };
    if (roll === 1) {
      const [drop] = random.pick(entries);
      return Object.fromEntries(entries.filter(([key]) => key !== drop));
    }
    const [key, field] = random.pick(entries);
    return { ...value, [key]: depth < 4 && random.below(3) ? mutateTree(field, random, depth + 1) : edgeValue(random, field) };
  }
  return edgeValue(random, value);
}

function mutateMessagePack(payload: Uint8Array, random: FuzzRandom): Uint8Array {
  return packr.pack(mutateTree(packr.unpack(payload), random));
}

/** Sets an unsigned little-endian field of `width` bytes at `offset` to an edge value or a small change. */
function pokeField(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, random: FuzzRandom): void {
  if (offset + width > bytes.length) return;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (width === 8) {
    const old = dv.getBigUint64(offset, true);
    const value = random.below(2) ? random.pick(EDGE_BIGINTS) : old + BigInt(random.pick([-1, 1, 4096]));
    dv.setBigUint64(offset, BigInt.asUintN(64, value), true);
    return;
  }
  const max = 2 ** (width * 8);
  const old = width === 4 ? dv.getUint32(offset, true) : width === 2 ? dv.getUint16(offset, true) : bytes[offset];
  const value = (((random.below(2) ? random.pick(EDGE_NUMBERS) : old + random.pick([-1, 1, 2])) % max) + max) % max;
  if (width === 4) dv.setUint32(offset, value, true);
  else if (width === 2) dv.setUint16(offset, value, true);
  else bytes[offset] = value;
}

/** Chunk header fields (spec/FORMAT.md section 6): offset and width. */
const CHUNK_FIELDS: ReadonlyArray<[number, 1 | 2 | 4 | 8]> = [
  [0, 4], // region
  [4, 4], // page_count
  [8, 8], // first_page
  [16, 1], // encoding
  [17, 1], // reserved
  [20, 4], // present_count
  [24, 8], // content_length
];

/** Header fields (spec/FORMAT.md section 3). */
const HEADER_FIELDS: ReadonlyArray<[number, 1 | 2 | 4 | 8]> = [
  [8, 2],
  [10, 2],
  [12, 4],
  [16, 4],
  [20, 4],
  [24, 2],
  [26, 1],
  [27, 1],
  [28, 1],
  [29, 1],
  [40, 8],
];

function mutateChunk(payload: Uint8Array, random: FuzzRandom): Uint8Array {
  const bytes = Uint8Array.from(payload);
  if (random.below(3) === 0 && bytes.length > 40) {
    // A bitmap or content byte, with the content checksum recomputed so the deeper rules are reached.
    bytes[40 + random.below(Math.min(bytes.length - 40, 64))] ^= 1 << random.below(8);
  } else {
    const [offset, width] = random.pick(CHUNK_FIELDS);
    pokeField(bytes, offset, width, random);
  }
  const bitmapBytes = Math.ceil(new DataView(bytes.buffer).getUint32(4, true) / 8);
  const content = bytes.subarray(Math.min(bytes.length, 40 + bitmapBytes));
  if (random.below(4) !== 0 && bytes.length >= 40) new DataView(bytes.buffer).setBigUint64(32, checksum(content), true);
  return bytes;
}

const SECTION_TYPES = ['META', 'RAMC', 'TAGC', 'VCPU', 'BLOB', 'INDX', 'ZZZZ', 'zzzz', 'meta', 'R\u00e4MC', '\u0000\u0000\u0000\u0000'];

/** One mutation of the section list: a field inside a section, or the list's order, length or types. */
function mutateSections(sections: ForgedSection[], random: FuzzRandom): string {
  const at = random.below(sections.length);
  const section = sections[at];
  switch (random.below(10)) {
    case 0: {
      const other = random.below(sections.length);
      [sections[at], sections[other]] = [sections[other], sections[at]];
      return `swap sections ${at} and ${other}`;
    }
    case 1:
      sections.splice(at, 0, { ...section, payload: Uint8Array.from(section.payload) });
      return `duplicate section ${at} (${section.type})`;
    case 2:
      sections.splice(at, 1);
      return `drop section ${at} (${section.type})`;
    case 3: {
      const type = random.pick(SECTION_TYPES);
      sections.splice(at, 0, { type, payload: new Uint8Array(random.pick([0, 8, 4096])), region: 0xffff_ffff, firstPage: 0, pageCount: 0 });
      return `insert a ${type} section at ${at}`;
    }
    case 4: {
      const field = random.pick(['region', 'firstPage', 'pageCount'] as const);
      section[field] = random.pick([0, 1, 2, 0x7fff_ffff, 0xffff_ffff]);
      return `index entry ${at} (${section.type}): ${field} = ${section[field]}`;
    }
    default:
      if (section.type === 'RAMC' || section.type === 'TAGC') {
        section.payload = mutateChunk(section.payload, random);
        return `chunk ${at} (${section.type}) header or content`;
      }
      try {
        section.payload = mutateMessagePack(section.payload, random);
        return `MessagePack of section ${at} (${section.type})`;
      } catch {
        section.payload = section.payload.subarray(0, random.below(section.payload.length + 1));
        return `cut section ${at} (${section.type})`;
      }
  }
}

export interface FuzzCase {
  readonly description: string;
  readonly bytes: Uint8Array;
}

/** One hostile file made from `valid` by `seed`: a header field, a section, or a cut, all checksums recomputed but the cut. */
export function fuzzCase(valid: Uint8Array, seed: number): FuzzCase {
  const random = new FuzzRandom(seed);
  const { header, sections } = takeApart(valid);
  const roll = random.below(10);
  if (roll === 0) {
    const cut = random.below(valid.length);
    return { description: `cut at ${cut}`, bytes: valid.subarray(0, cut) };
  }
  let description: string;
  if (roll === 1) {
    const [offset, width] = random.pick(HEADER_FIELDS);
    pokeField(header, offset, width, random);
    new DataView(header.buffer, header.byteOffset).setBigUint64(56, checksum(header.subarray(0, 56)), true);
    description = `header field at ${offset}`;
  } else {
    description = mutateSections(sections, random);
  }
  return { description, bytes: seal(header, sections) };
}
