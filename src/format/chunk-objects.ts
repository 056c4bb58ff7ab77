/**
 * The objects that describe one chunk: its location, and a decoded RAM or tag
 * chunk, each built field by field.
 *
 * Not `{ ...location, present, data }`: in Node 20's V8 a spread followed by
 * more properties gives every object its own hidden class, a map and a
 * descriptor array of about 300 bytes allocated straight in the old
 * generation. Made once per chunk, they were most of the old-space garbage of
 * a long read, which V8 let pile up to several times the live heap before it
 * marked (issue 10: a pull of a 16 GiB guest held 65 thousand such maps).
 * Spreading without adding a property, or overriding one, keeps the shared
 * class and is fine.
 */
import { expandRam, expandTags } from './chunk.js';
import type { ChunkLocation, RamChunk, TagChunk } from './model.js';

/** `location` at another file offset and length (a chunk that came from elsewhere, such as the store). */
export function chunkLocation(location: ChunkLocation, offset: bigint, length: bigint): ChunkLocation {
  const { kind, region, firstPage, pageCount } = location;
  return { kind, region, firstPage, pageCount, offset, length };
}

/** A RAM chunk whose every page is in `data`. */
export function ramChunk(location: ChunkLocation, present: Uint8Array, data: Uint8Array): RamChunk {
  const { kind, region, firstPage, pageCount, offset, length } = location;
  return { kind, region, firstPage, pageCount, offset, length, present, data };
}

/** A tag chunk whose every granule's tag is in `tags`, one per byte. */
export function tagChunk(location: ChunkLocation, present: Uint8Array, tags: Uint8Array): TagChunk {
  const { kind, region, firstPage, pageCount, offset, length } = location;
  return { kind, region, firstPage, pageCount, offset, length, present, tags };
}

/** The fields every chunk object has, in one order, so that they share V8's hidden classes. */
abstract class ChunkFields implements ChunkLocation {
  readonly kind: ChunkLocation['kind'];
  readonly region: number;
  readonly firstPage: number;
  readonly pageCount: number;
  readonly offset: bigint;
  readonly length: bigint;

  constructor(
    location: ChunkLocation,
    readonly present: Uint8Array,
  ) {
    this.kind = location.kind;
    this.region = location.region;
    this.firstPage = location.firstPage;
    this.pageCount = location.pageCount;
    this.offset = location.offset;
    this.length = location.length;
  }
}

/**
 * A RAM chunk from its present pages (`content`, checked), expanded to every
 * page only when `data` is first read: a restore writes the present pages
 * and never needs the zeros between them.
 */
class PackedRamChunk extends ChunkFields implements RamChunk {
  readonly #pageSize: number;
  #data: Uint8Array | undefined;

  constructor(
    location: ChunkLocation,
    present: Uint8Array,
    readonly content: Uint8Array,
    pageSize: number,
  ) {
    super(location, present);
    this.#pageSize = pageSize;
  }

  get data(): Uint8Array {
    this.#data ??= expandRam(this.present, this.pageCount, this.content, this.#pageSize);
    return this.#data;
  }
}

/**
 * A tag chunk from its present pages' packed tags (`packedTags`, checked),
 * expanded to one byte per granule of every page only when `tags` is first
 * read: a reader that copies tags out unpacks them itself, without a buffer
 * per chunk.
 */
class PackedTagChunk extends ChunkFields implements TagChunk {
  readonly #pageSize: number;
  #tags: Uint8Array | undefined;

  constructor(
    location: ChunkLocation,
    present: Uint8Array,
    readonly packedTags: Uint8Array,
    pageSize: number,
  ) {
    super(location, present);
    this.#pageSize = pageSize;
  }

  get tags(): Uint8Array {
    this.#tags ??= expandTags(this.present, this.pageCount, this.packedTags, this.#pageSize);
    return this.#tags;
  }
}

export function ramChunkFromContent(location: ChunkLocation, present: Uint8Array, content: Uint8Array, pageSize: number): RamChunk {
  return new PackedRamChunk(location, present, content, pageSize);
}

export function tagChunkFromPacked(location: ChunkLocation, present: Uint8Array, packed: Uint8Array, pageSize: number): TagChunk {
  return new PackedTagChunk(location, present, packed, pageSize);
}
