/**
 * Chunk objects (spec/STORE.md, "Chunk objects"): one RAM or tag chunk of a
 * snapshot's grid, named and encrypted by its content. The plaintext is a
 * RAMC/TAGC payload of spec/FORMAT.md section 6 placed at region 0, page 0
 * (so it holds no position and one object serves every place, in every
 * snapshot, with that content); it is sealed with AES-256-GCM under a key
 * derived from the name, with a nonce derived from the plaintext, and the
 * associated data binds the role (RAM or tags), the page size, the page
 * count and the name: an object moved to another name, another role or
 * another geometry fails authentication.
 */
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { isPagePresent } from '../format/chunk.js';
import { GRANULE_SIZE } from '../format/constants.js';
import type { ChunkKind, RamChunk, TagChunk } from '../format/model.js';
import { unpackTags } from '../format/tag-packing.js';
import { StoreError } from './errors.js';
import type { TenantKeys } from './tenant-keys.js';

export const CHUNK_MAGIC = 'VMSC';
export const CHUNK_VERSION = 1;
/** Magic, version, role, reserved, page size, page count. */
export const CHUNK_HEADER_LENGTH = 16;
export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
export const ROLE = { ram: 1, tags: 2 } as const;

export interface ChunkGeometry {
  readonly kind: ChunkKind;
  readonly pageSize: number;
  readonly pageCount: number;
}

/** The 16 bytes that open a chunk object; also the start of the name's input and of the associated data. */
export function chunkObjectHeader(geometry: ChunkGeometry): Uint8Array {
  const header = new Uint8Array(CHUNK_HEADER_LENGTH);
  const dv = new DataView(header.buffer);
  header.set(Buffer.from(CHUNK_MAGIC, 'latin1'));
  header[4] = CHUNK_VERSION;
  header[5] = ROLE[geometry.kind];
  dv.setUint32(8, geometry.pageSize, true);
  dv.setUint32(12, geometry.pageCount, true);
  return header;
}

/**
 * The chunk's name: `content` is the RAM bytes of all its pages, or their tags one byte per granule (whole, or
 * in pieces in order: chunkContentPieces).
 */
export function nameChunk(keys: TenantKeys, geometry: ChunkGeometry, content: Uint8Array | Iterable<Uint8Array>): Buffer {
  return keys.chunkName(chunkObjectHeader(geometry), content);
}

/** One zero page per page size, shared: the absent pages of a packed chunk, named without a buffer of their own. */
const zeroPages = new Map<number, Uint8Array>();

/**
 * A decoded chunk's content as nameChunk names it, in pieces: a RAM chunk whose present pages the reader kept
 * packed gives runs of them and a shared zero page for each absent page, so it is named without being expanded
 * (a buffer of the chunk's size per chunk is memory the garbage collector frees late: issue 10).
 */
export function* chunkContentPieces(chunk: RamChunk | TagChunk, pageSize: number): Generator<Uint8Array> {
  if ('tags' in chunk) {
    if (chunk.packedTags) yield* unpackedTagPieces(chunk, chunk.packedTags, pageSize);
    else yield chunk.tags;
    return;
  }
  const { content } = chunk;
  if (!content) {
    yield chunk.data;
    return;
  }
  let zero = zeroPages.get(pageSize);
  if (!zero) {
    zero = new Uint8Array(pageSize);
    zeroPages.set(pageSize, zero);
  }
  let stored = 0;
  let page = 0;
  while (page < chunk.pageCount) {
    let end = page;
    if (isPagePresent(chunk.present, page)) {
      while (end < chunk.pageCount && isPagePresent(chunk.present, end)) end++;
      yield content.subarray(stored * pageSize, (stored + end - page) * pageSize);
      stored += end - page;
    } else {
      yield zero;
      end++;
    }
    page = end;
  }
}

/** Tags a decoder kept packed, one page at a time unpacked into one reused page of tags (each piece is read before the next). */
function* unpackedTagPieces(chunk: TagChunk, packed: Uint8Array, pageSize: number): Generator<Uint8Array> {
  const granules = pageSize / GRANULE_SIZE;
  const page = new Uint8Array(granules);
  let stored = 0;
  for (let n = 0; n < chunk.pageCount; n++) {
    if (isPagePresent(chunk.present, n)) unpackTags(packed, stored++ * granules, page);
    else page.fill(0);
    yield page;
  }
}

function associatedData(header: Uint8Array, name: Uint8Array): Buffer {
  return Buffer.concat([header, name]);
}

/** Seals `plaintext` (the position-free chunk payload) as the object named `name`. */
export function sealChunk(keys: TenantKeys, geometry: ChunkGeometry, name: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const key = keys.chunkKey(name);
  const header = chunkObjectHeader(geometry);
  // Deterministic (same content, same object) and safe if two writers encode the same content differently: the nonce follows the plaintext.
  const nonce = createHmac('sha256', key).update('nonce').update(plaintext).digest().subarray(0, NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(associatedData(header, name));
  // One copy into the object: GCM's final() adds no bytes, the tag comes from getAuthTag().
  const body = cipher.update(plaintext);
  const tail = cipher.final();
  return Buffer.concat([header, nonce, body, tail, cipher.getAuthTag()]);
}

/**
 * Opens the object expected at `name` with `geometry`: refuses one whose
 * header differs or that does not authenticate (altered, another chunk's,
 * another tenant's). Returns the plaintext chunk payload.
 */
export function openChunk(keys: TenantKeys, geometry: ChunkGeometry, name: Uint8Array, object: Uint8Array, where: string): Uint8Array {
  const header = chunkObjectHeader(geometry);
  if (object.length < CHUNK_HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH) {
    throw new StoreError('chunk-not-authentic', `${where}: chunk object of ${object.length} bytes is too short`);
  }
  const got = object.subarray(0, CHUNK_HEADER_LENGTH);
  if (!Buffer.from(got).equals(header)) {
    throw new StoreError(
      'chunk-not-authentic',
      `${where}: chunk object header is not the one of a ${geometry.kind} chunk of ${geometry.pageCount} ${geometry.pageSize}-byte pages`,
    );
  }
  const nonce = object.subarray(CHUNK_HEADER_LENGTH, CHUNK_HEADER_LENGTH + NONCE_LENGTH);
  const body = object.subarray(CHUNK_HEADER_LENGTH + NONCE_LENGTH, object.length - TAG_LENGTH);
  const decipher = createDecipheriv('aes-256-gcm', keys.chunkKey(name), nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(associatedData(header, name));
  decipher.setAuthTag(object.subarray(object.length - TAG_LENGTH));
  try {
    // GCM's final() checks the tag and adds no bytes: the plaintext is handed on only once it authenticated.
    const plaintext = decipher.update(body);
    const tail = decipher.final();
    const whole = tail.length ? Buffer.concat([plaintext, tail]) : plaintext;
    return new Uint8Array(whole.buffer, whole.byteOffset, whole.byteLength);
  } catch {
    throw new StoreError(
      'chunk-not-authentic',
      `${where}: chunk object does not authenticate (altered, another chunk's, or sealed with another key)`,
    );
  }
}
