/**
 * A tenant's keys (spec/STORE.md, "Keys"). One 32-byte secret, the key
 * file, gives every key by HKDF-SHA256 with a label per use, so that no key
 * serves two purposes. Chunk names and chunk keys are keyed functions of the
 * chunk's content (convergent encryption): the same content of one tenant
 * gets the same name and key, hence deduplicates, while the store, which
 * holds no key, sees neither the content nor a plain hash of it.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { StoreError } from './errors.js';

export const SECRET_LENGTH = 32;

/** The HKDF labels (`info`), one per key; the salt is empty. */
export const KEY_LABELS = {
  name: 'vmsnap-store v1 chunk name',
  chunkKey: 'vmsnap-store v1 chunk key',
  manifest: 'vmsnap-store v1 manifest',
  check: 'vmsnap-store v1 key check',
} as const;

function derive(secret: Uint8Array, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, new Uint8Array(0), label, 32));
}

export class TenantKeys {
  private readonly nameKey: Buffer;
  private readonly chunkKeyKey: Buffer;
  readonly manifestKey: Buffer;
  private readonly checkKey: Buffer;

  constructor(secret: Uint8Array) {
    if (secret.length !== SECRET_LENGTH) throw new StoreError('bad-key-file', `a key is ${SECRET_LENGTH} bytes, got ${secret.length}`);
    this.nameKey = derive(secret, KEY_LABELS.name);
    this.chunkKeyKey = derive(secret, KEY_LABELS.chunkKey);
    this.manifestKey = derive(secret, KEY_LABELS.manifest);
    this.checkKey = derive(secret, KEY_LABELS.check);
  }

  /**
   * A chunk's 32-byte name: HMAC-SHA256 over its role header and its content, one byte per tag granule for tags.
   * The content may come in pieces (in order): the name is that of their concatenation.
   */
  chunkName(roleHeader: Uint8Array, content: Uint8Array | Iterable<Uint8Array>): Buffer {
    const hmac = createHmac('sha256', this.nameKey).update(roleHeader);
    if (content instanceof Uint8Array) hmac.update(content);
    else for (const piece of content) hmac.update(piece);
    return hmac.digest();
  }

  /** The AES-256-GCM key of the chunk so named. */
  chunkKey(name: Uint8Array): Buffer {
    return createHmac('sha256', this.chunkKeyKey).update(name).digest();
  }

  /** 32 bytes that tell whether a key is the store's, without revealing it (the store's marker holds them). */
  keyCheck(): Buffer {
    return createHmac('sha256', this.checkKey).update('vmsnap-store key check').digest();
  }
}

/** Reads a key file: exactly 32 raw bytes, as `head -c 32 /dev/urandom > K` writes them. */
export function readKeyFile(path: string): Uint8Array {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new StoreError('bad-key-file', `cannot read key file ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (bytes.length !== SECRET_LENGTH) {
    throw new StoreError(
      'bad-key-file',
      `key file ${path} holds ${bytes.length} bytes; a key is ${SECRET_LENGTH} random bytes (head -c 32 /dev/urandom > ${path})`,
    );
  }
  return new Uint8Array(bytes);
}
