/**
 * spec/STORE.md byte for byte: spec/store-vectors.json is what vmsnap makes
 * from fixed inputs, and each value is recomputed here from the spec's text
 * with node:crypto alone (HKDF, HMAC, AES-256-GCM), so the document, the
 * vectors and the code cannot drift apart. VMSNAP_WRITE_VECTORS=1 rewrites
 * the file.
 */
import { createCipheriv, createHmac, hkdfSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packValue } from '../src/format/metadata.js';
import { decodeMessagePack, type MessagePackValue } from '../src/format/msgpack.js';
import { openChunk } from '../src/store/chunk-object.js';
import { decodeManifest, openManifest } from '../src/store/manifest.js';
import { TenantKeys } from '../src/store/tenant-keys.js';
import { makeStoreVectors, VECTOR_SECRET } from '../testkit/store/store-vectors.js';

const file = join(resolve(import.meta.dirname, '..'), 'spec/store-vectors.json');
const bytes = (text: string) => Buffer.from(text, 'hex');
const hkdf = (info: string, salt = Buffer.alloc(0)) => Buffer.from(hkdfSync('sha256', VECTOR_SECRET, salt, info, 32));
const hmac = (key: Uint8Array, ...parts: Uint8Array[]) => {
  const h = createHmac('sha256', key);
  for (const part of parts) h.update(part);
  return h.digest();
};
const gcm = (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array) => {
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
};

interface ChunkVector {
  roleHeader: string;
  content: string;
  name: string;
  key: string;
  plaintext: string;
  nonce: string;
  object: string;
}

describe('spec/STORE.md vectors', async () => {
  const made = await makeStoreVectors();
  if (process.env.VMSNAP_WRITE_VECTORS === '1') writeFileSync(file, `${JSON.stringify(made, null, 2)}\n`);
  const vectors = JSON.parse(readFileSync(file, 'utf8'));

  it('vmsnap makes exactly the vectors', () => {
    expect(made).toEqual(vectors);
  });

  it('the store marker and the keys follow section 2 and 3.1', () => {
    expect(hmac(hkdf('vmsnap-store v1 key check'), Buffer.from('vmsnap-store key check')).toString('hex')).toBe(vectors.keyCheck);
  });

  for (const role of ['ramChunk', 'tagChunk'] as const) {
    it(`a ${role === 'ramChunk' ? 'RAM' : 'tag'} chunk object follows section 4`, () => {
      const v: ChunkVector = vectors[role];
      const header = Buffer.alloc(16);
      header.write('VMSC', 'latin1');
      header[4] = 1;
      header[5] = role === 'ramChunk' ? 1 : 2;
      header.writeUInt32LE(4096, 8);
      header.writeUInt32LE(2, 12);
      expect(header.toString('hex')).toBe(v.roleHeader);
      const name = hmac(hkdf('vmsnap-store v1 chunk name'), header, bytes(v.content));
      expect(name.toString('hex')).toBe(v.name);
      const key = hmac(hkdf('vmsnap-store v1 chunk key'), name);
      expect(key.toString('hex')).toBe(v.key);
      const nonce = hmac(key, Buffer.from('nonce'), bytes(v.plaintext)).subarray(0, 12);
      expect(nonce.toString('hex')).toBe(v.nonce);
      const object = Buffer.concat([header, nonce, gcm(key, nonce, Buffer.concat([header, name]), bytes(v.plaintext))]);
      expect(object.toString('hex')).toBe(v.object);
      // And vmsnap opens it back to the plaintext.
      const geometry = { kind: role === 'ramChunk' ? ('ram' as const) : ('tags' as const), pageSize: 4096, pageCount: 2 };
      expect(Buffer.from(openChunk(new TenantKeys(VECTOR_SECRET), geometry, name, object, 'vector')).toString('hex')).toBe(v.plaintext);
    });
  }

  it('a manifest object follows section 5', () => {
    const v = vectors.manifest;
    const head = Buffer.from([0x56, 0x4d, 0x53, 0x4d, 1, 0, 0, 0]);
    const sealed = gcm(hkdf('vmsnap-store v1 manifest'), bytes(v.nonce), Buffer.concat([head, Buffer.from(v.name)]), bytes(v.plaintext));
    expect(Buffer.concat([head, bytes(v.nonce), sealed]).toString('hex')).toBe(v.object);
    expect(
      openManifest(new TenantKeys(VECTOR_SECRET), v.name, bytes(v.object)).chunkNames.map((n) => Buffer.from(n).toString('hex')),
    ).toEqual([vectors.ramChunk.name, vectors.tagChunk.name]);
  });

  it('a diff manifest (version 2) follows section 5: its parent by name, its changed-page maps, the chunks it carries', () => {
    const v = vectors.diffManifest;
    const head = Buffer.from([0x56, 0x4d, 0x53, 0x4d, 1, 0, 0, 0]);
    const sealed = gcm(hkdf('vmsnap-store v1 manifest'), bytes(v.nonce), Buffer.concat([head, Buffer.from(v.name)]), bytes(v.plaintext));
    expect(Buffer.concat([head, bytes(v.nonce), sealed]).toString('hex')).toBe(v.object);
    const plain = decodeMessagePack(bytes(v.plaintext)) as Map<string, unknown>;
    expect(plain.get('version')).toBe(2n);
    expect(plain.get('parent')).toBe('guest-1');
    expect(Buffer.from(plain.get('changed') as Uint8Array).toString('hex')).toBe('01');
    const manifest = openManifest(new TenantKeys(VECTOR_SECRET), v.name, bytes(v.object));
    expect(manifest.diff?.parentName).toBe('guest-1');
    expect(Buffer.from(manifest.metadata.parentId!).toString('hex')).toBe('07'.repeat(16));
    expect(manifest.chunkNames.map((n) => Buffer.from(n).toString('hex'))).toEqual([vectors.ramChunk.name, vectors.tagChunk.name]);
    // The full manifest's plaintext stays version 1, byte for byte as before diffs.
    expect((decodeMessagePack(bytes(vectors.manifest.plaintext)) as Map<string, unknown>).get('version')).toBe(1n);
  });

  it('a manifest that breaks section 5 is refused (bad-manifest): versions, parent, changed-page maps', () => {
    const full = decodeMessagePack(bytes(vectors.manifest.plaintext)) as Map<string, MessagePackValue>;
    const diff = decodeMessagePack(bytes(vectors.diffManifest.plaintext)) as Map<string, MessagePackValue>;
    const edited = (base: Map<string, MessagePackValue>, changes: Record<string, MessagePackValue | undefined>) => {
      const map = new Map(base);
      for (const [k, v] of Object.entries(changes)) v === undefined ? map.delete(k) : map.set(k, v);
      return packValue(Object.fromEntries(map));
    };
    const refused = (plaintext: Uint8Array) => {
      expect(() => decodeManifest(plaintext, 'test')).toThrow(expect.objectContaining({ code: 'bad-manifest' }));
    };
    expect(decodeManifest(edited(diff, {}), 'test').diff?.parentName).toBe('guest-1');
    refused(edited(full, { version: 3n }));
    refused(edited(full, { parent: 'guest-0' })); // a version 1 with a diff's keys
    refused(edited(diff, { parent: undefined }));
    refused(edited(diff, { changed: undefined }));
    refused(edited(diff, { changed: Uint8Array.of(0x01, 0x00) })); // one map too many bytes
    refused(edited(diff, { changed: Uint8Array.of(0x04) })); // a bit past the position's 2 pages
    refused(edited(diff, { changed: Uint8Array.of(0x00) })); // carries nothing, yet names two chunks
    refused(edited(diff, { version: 1n, parent: undefined, changed: undefined, chunks: new Uint8Array(32) }));
  });

  it('an encrypted file follows section 8', () => {
    const v = vectors.encryptedFile;
    const header = Buffer.alloc(64);
    Buffer.from([0x89, 0x56, 0x4d, 0x45, 0x0d, 0x0a, 0x1a, 0x0a]).copy(header);
    header.writeUInt16LE(1, 8);
    header.writeUInt32LE(64, 12);
    header.writeUInt32LE(v.segmentSize, 16);
    header[20] = 1;
    bytes(v.salt).copy(header, 24);
    const key = hkdf('vmsnap-file v1', bytes(v.salt));
    const plain = bytes(v.plaintext);
    const parts: Buffer[] = [header];
    const count = Math.ceil(plain.length / v.segmentSize);
    for (let i = 0; i < count; i++) {
      const nonce = Buffer.alloc(12);
      nonce[0] = i === count - 1 ? 1 : 0;
      nonce.writeBigUInt64LE(BigInt(i), 4);
      parts.push(gcm(key, nonce, header, plain.subarray(i * v.segmentSize, (i + 1) * v.segmentSize)));
    }
    expect(Buffer.concat(parts).toString('hex')).toBe(v.file);
  });
});
