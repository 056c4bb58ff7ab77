/**
 * Encrypted snapshot files (spec/STORE.md section 8): the plain snapshot's
 * bytes, unchanged, cut into segments each sealed with AES-256-GCM under a
 * key derived from the tenant secret and a per-file salt. The segment's
 * index and a last-segment flag are in its nonce (the STREAM construction),
 * and the 64-byte header is every segment's associated data, so a file cut,
 * reordered or spliced does not open. Without the key only the container's
 * version, segment size and length can be read. Readers detect the magic and
 * decrypt as they read: at random (a file; the snapshot's offsets are
 * plaintext offsets) or in order (a pipe), so every rule of spec/FORMAT.md
 * applies to the plaintext as it would to a plain file.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { VmsnapError } from '../format/errors.js';

export const SEALED_MAGIC = Uint8Array.from([0x89, 0x56, 0x4d, 0x45, 0x0d, 0x0a, 0x1a, 0x0a]);
export const SEALED_HEADER_LENGTH = 64;
export const DEFAULT_SEGMENT_SIZE = 1024 * 1024;
const TAG_LENGTH = 16;
const KEY_INFO = 'vmsnap-file v1';
const AEAD_AES_256_GCM = 1;

export type SealedFileErrorCode = 'snapshot-encrypted' | 'sealed-file-invalid';

/** An encrypted snapshot read without its key, or whose container does not open (altered, cut, another key). */
export class SealedFileError extends VmsnapError {
  declare readonly code: SealedFileErrorCode;
  constructor(code: SealedFileErrorCode, message: string) {
    super(code, code === 'snapshot-encrypted' ? 'usage' : 'invalid-input', message);
  }
}

/** The key readers use when their caller gives none: the CLI sets it from --key-file. */
let defaultSecret: Uint8Array | undefined;

export function setDefaultSnapshotKey(secret: Uint8Array | undefined): void {
  defaultSecret = secret;
}

export function isSealed(prefix: Uint8Array): boolean {
  return prefix.length >= SEALED_MAGIC.length && SEALED_MAGIC.every((byte, i) => prefix[i] === byte);
}

function secretFor(secret: Uint8Array | undefined, what: string): Uint8Array {
  const key = secret ?? defaultSecret;
  if (!key) throw new SealedFileError('snapshot-encrypted', `${what} is an encrypted snapshot: give its key (--key-file K)`);
  if (key.length !== 32) throw new SealedFileError('snapshot-encrypted', `a key is 32 bytes, got ${key.length}`);
  return key;
}

export function encodeSealedHeader(segmentSize: number, salt: Uint8Array): Uint8Array {
  const header = new Uint8Array(SEALED_HEADER_LENGTH);
  const dv = new DataView(header.buffer);
  header.set(SEALED_MAGIC);
  dv.setUint16(8, 1, true);
  dv.setUint16(10, 0, true);
  dv.setUint32(12, SEALED_HEADER_LENGTH, true);
  dv.setUint32(16, segmentSize, true);
  header[20] = AEAD_AES_256_GCM;
  header.set(salt, 24);
  return header;
}

interface SealedHeader {
  readonly bytes: Uint8Array;
  readonly segmentSize: number;
  readonly key: Buffer;
}

/** The fields of a container header, checked; the key is not needed for them. */
function sealedHeaderFields(bytes: Uint8Array, what: string): { major: number; minor: number; segmentSize: number } {
  if (bytes.length < SEALED_HEADER_LENGTH) throw new SealedFileError('sealed-file-invalid', `${what}: encrypted file header is truncated`);
  const header = bytes.subarray(0, SEALED_HEADER_LENGTH);
  const dv = new DataView(header.buffer, header.byteOffset, SEALED_HEADER_LENGTH);
  const major = dv.getUint16(8, true);
  if (major !== 1) throw new SealedFileError('sealed-file-invalid', `${what}: encrypted file version ${major}, this reader knows 1`);
  const segmentSize = dv.getUint32(16, true);
  if (dv.getUint32(12, true) !== SEALED_HEADER_LENGTH || header[20] !== AEAD_AES_256_GCM)
    throw new SealedFileError('sealed-file-invalid', `${what}: encrypted file header has an unknown length or AEAD`);
  if (segmentSize < 4096 || segmentSize > 16 * 1024 * 1024 || segmentSize & (segmentSize - 1))
    throw new SealedFileError('sealed-file-invalid', `${what}: segment size ${segmentSize} is not a power of two in 4096..16777216`);
  return { major, minor: dv.getUint16(10, true), segmentSize };
}

function decodeSealedHeader(bytes: Uint8Array, secret: Uint8Array | undefined, what: string): SealedHeader {
  const { segmentSize } = sealedHeaderFields(bytes, what);
  const key = fileKey(secretFor(secret, what), bytes.subarray(24, 56));
  return { bytes: bytes.slice(0, SEALED_HEADER_LENGTH), segmentSize, key };
}

/** The segments of an encrypted file of `fileSize` bytes and the length of the snapshot inside; refuses a cut file. */
function sealedLayout(fileSize: bigint, segmentSize: number, what: string): { segments: number; plainSize: bigint } {
  const stored = fileSize - BigInt(SEALED_HEADER_LENGTH);
  const step = BigInt(segmentSize + TAG_LENGTH);
  const segments = (stored + step - 1n) / step;
  const lastStored = stored - (segments - 1n) * step;
  if (stored <= 0n || lastStored <= BigInt(TAG_LENGTH))
    throw new SealedFileError('sealed-file-invalid', `${what}: encrypted file of ${fileSize} bytes is cut inside a segment`);
  return { segments: Number(segments), plainSize: stored - segments * BigInt(TAG_LENGTH) };
}

/** What an encrypted file shows without its key (spec/STORE.md section 8): its container and its length, nothing of the snapshot. */
export interface SealedFileFacts {
  /** The container's version, "major.minor". */
  readonly containerVersion: string;
  readonly aead: 'AES-256-GCM';
  /** Plaintext bytes per segment. */
  readonly segmentSize: number;
  readonly segments: number;
  readonly fileBytes: bigint;
  /** The length of the plain snapshot inside. */
  readonly snapshotBytes: bigint;
}

/** The container facts of the file at `path` when it is an encrypted snapshot, else null; a damaged container is refused. */
export function readSealedFacts(path: string): SealedFileFacts | null {
  const fd = openSync(path, 'r');
  try {
    const head = new Uint8Array(SEALED_HEADER_LENGTH);
    const got = readSync(fd, head, 0, SEALED_HEADER_LENGTH, 0);
    if (!isSealed(head.subarray(0, got))) return null;
    const { major, minor, segmentSize } = sealedHeaderFields(head.subarray(0, got), path);
    const fileBytes = BigInt(fstatSync(fd).size);
    const { segments, plainSize } = sealedLayout(fileBytes, segmentSize, path);
    return { containerVersion: `${major}.${minor}`, aead: 'AES-256-GCM', segmentSize, segments, fileBytes, snapshotBytes: plainSize };
  } finally {
    closeSync(fd);
  }
}

export function fileKey(secret: Uint8Array, salt: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, salt, KEY_INFO, 32));
}

export function segmentNonce(index: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce[0] = last ? 1 : 0;
  nonce.writeBigUInt64LE(BigInt(index), 4);
  return nonce;
}

function sealSegment(key: Buffer, header: Uint8Array, index: number, last: boolean, plaintext: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, segmentNonce(index, last), { authTagLength: TAG_LENGTH });
  cipher.setAAD(header);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function openSegment(header: SealedHeader, index: number, last: boolean, sealed: Uint8Array, what: string): Uint8Array {
  const decipher = createDecipheriv('aes-256-gcm', header.key, segmentNonce(index, last), { authTagLength: TAG_LENGTH });
  decipher.setAAD(header.bytes);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  try {
    return new Uint8Array(Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_LENGTH)), decipher.final()]));
  } catch {
    throw new SealedFileError(
      'sealed-file-invalid',
      `${what}: encrypted segment ${index}${last ? ' (the last)' : ''} does not open: ` +
        'the file is altered or cut, or the key is not its key',
    );
  }
}

/** Seals a snapshot as its bytes are written: whole segments go to `sink`, the last one on finish(). */
export class SegmentSealer {
  private readonly header: Uint8Array;
  private readonly key: Buffer;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private index = 0;
  private started = false;

  constructor(
    secret: Uint8Array,
    private readonly sink: (bytes: Uint8Array) => Promise<void>,
    private readonly segmentSize = DEFAULT_SEGMENT_SIZE,
    salt: Uint8Array = randomBytes(32),
  ) {
    this.header = encodeSealedHeader(segmentSize, salt);
    this.key = fileKey(secret, salt);
  }

  /** The bytes the container adds to a plaintext of `plainBytes`. */
  static overhead(plainBytes: bigint, segmentSize = DEFAULT_SEGMENT_SIZE): bigint {
    const segments = plainBytes === 0n ? 1n : (plainBytes + BigInt(segmentSize) - 1n) / BigInt(segmentSize);
    return BigInt(SEALED_HEADER_LENGTH) + segments * BigInt(TAG_LENGTH);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (!this.started) {
      this.started = true;
      await this.sink(this.header);
    }
    let at = 0;
    while (at < bytes.length) {
      // A full segment is sealed only once more bytes come: until then it may be the last.
      if (this.pendingBytes === this.segmentSize) await this.flush(false);
      const take = Math.min(this.segmentSize - this.pendingBytes, bytes.length - at);
      this.pending.push(bytes.slice(at, at + take));
      this.pendingBytes += take;
      at += take;
    }
  }

  private async flush(last: boolean): Promise<void> {
    const plaintext = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    await this.sink(sealSegment(this.key, this.header, this.index++, last, plaintext));
  }

  async finish(): Promise<void> {
    if (!this.started) throw new SealedFileError('sealed-file-invalid', 'an encrypted file holds at least one byte');
    await this.flush(true);
  }
}

/** Random access to the plaintext of an encrypted file open as `fd`; one segment kept, as a reader reads in runs. */
export class SealedFileReader {
  readonly plainSize: bigint;
  private readonly header: SealedHeader;
  private readonly segments: number;
  private cached: { index: number; plain: Uint8Array } | undefined;

  constructor(
    private readonly fd: number,
    fileSize: bigint,
    readonly what: string,
    secret?: Uint8Array,
  ) {
    const head = new Uint8Array(SEALED_HEADER_LENGTH);
    const got = fileSize >= BigInt(SEALED_HEADER_LENGTH) ? readSync(fd, head, 0, SEALED_HEADER_LENGTH, 0) : 0;
    this.header = decodeSealedHeader(head.subarray(0, got), secret, what);
    const layout = sealedLayout(fileSize, this.header.segmentSize, what);
    this.segments = layout.segments;
    this.plainSize = layout.plainSize;
  }

  private segment(index: number): Uint8Array {
    if (this.cached?.index === index) return this.cached.plain;
    const step = this.header.segmentSize + TAG_LENGTH;
    const offset = SEALED_HEADER_LENGTH + index * step;
    const last = index === this.segments - 1;
    const length = last ? Number(this.plainSize - BigInt(index) * BigInt(this.header.segmentSize)) + TAG_LENGTH : step;
    const sealed = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, sealed, done, length - done, offset + done);
      if (n === 0) throw new SealedFileError('sealed-file-invalid', `${this.what}: encrypted file ended inside segment ${index}`);
      done += n;
    }
    const plain = openSegment(this.header, index, last, sealed, this.what);
    this.cached = { index, plain };
    return plain;
  }

  /** Fills `destination` from plaintext offset `offset` (which the caller keeps inside plainSize); returns the bytes copied. */
  readInto(destination: Uint8Array, at: number, length: number, offset: bigint): number {
    const size = this.header.segmentSize;
    let done = 0;
    while (done < length) {
      const position = offset + BigInt(done);
      if (position >= this.plainSize) break;
      const index = Number(position / BigInt(size));
      const plain = this.segment(index);
      const from = Number(position - BigInt(index) * BigInt(size));
      const take = Math.min(plain.length - from, length - done);
      destination.set(plain.subarray(from, from + take), at + done);
      done += take;
    }
    return done;
  }
}

/**
 * The plaintext of a stream that may be encrypted: a plain snapshot passes
 * through untouched; an encrypted one is opened segment by segment, one
 * segment held back until the next bytes show whether it was the last.
 */
export async function* unsealedStream(source: AsyncIterable<Uint8Array>, what: string, secret?: Uint8Array): AsyncGenerator<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  let buffered = new Uint8Array(0);
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      return false;
    }
    buffered = buffered.length ? Buffer.concat([buffered, next.value]) : new Uint8Array(next.value);
    return true;
  };
  try {
    while (buffered.length < SEALED_MAGIC.length && (await more()));
    if (!isSealed(buffered)) {
      if (buffered.length) yield buffered;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    }
    while (buffered.length < SEALED_HEADER_LENGTH && (await more()));
    const header = decodeSealedHeader(buffered, secret, what);
    buffered = buffered.subarray(SEALED_HEADER_LENGTH);
    const step = header.segmentSize + TAG_LENGTH;
    let index = 0;
    for (;;) {
      // A segment is the last when the stream ends within step bytes of its start.
      while (buffered.length <= step && (await more()));
      if (buffered.length > step) {
        yield openSegment(header, index++, false, buffered.subarray(0, step), what);
        buffered = buffered.subarray(step);
        continue;
      }
      if (buffered.length <= TAG_LENGTH)
        throw new SealedFileError('sealed-file-invalid', `${what}: encrypted stream ends inside segment ${index}`);
      yield openSegment(header, index, true, buffered, what);
      return;
    }
  } finally {
    await iterator.return?.();
  }
}
