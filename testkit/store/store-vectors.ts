/**
 * The vectors of spec/STORE.md section 9, made with vmsnap's own code from
 * fixed inputs (secret 00..1f, fixed nonce and salt): `npm run` nothing, the
 * test compares the file with what this makes and with what an independent
 * computation from the spec (node:crypto only) gives.
 */
import { encodeChunkPayload } from '../../src/format/chunk.js';
import { SegmentSealer } from '../../src/io/sealed-file.js';
import { type ChunkGeometry, chunkObjectHeader, nameChunk, sealChunk } from '../../src/store/chunk-object.js';
import { encodeManifest, type Manifest, sealManifest } from '../../src/store/manifest.js';
import { KEY_LABELS, TenantKeys } from '../../src/store/tenant-keys.js';

export const VECTOR_SECRET = Uint8Array.from({ length: 32 }, (_, i) => i);
const PAGE = 4096;

/** Two pages: the first all 0x5a, the second zero; the tags of the first page are granule index mod 16, the second's zero. */
export function vectorContent(): { ram: Uint8Array; tags: Uint8Array } {
  const ram = new Uint8Array(2 * PAGE);
  ram.fill(0x5a, 0, PAGE);
  const tags = new Uint8Array((2 * PAGE) / 16);
  for (let g = 0; g < PAGE / 16; g++) tags[g] = g % 16;
  return { ram, tags };
}

export function vectorManifest(ramName: Uint8Array, tagName: Uint8Array): Manifest {
  return {
    pageSize: PAGE,
    pagesPerChunk: 2,
    fileBytes: 12345n,
    metadata: {
      snapshotId: new Uint8Array(16).fill(7),
      parentId: null,
      createdMs: 1_700_000_000_000n,
      tool: 'vmsnap vectors',
      annotations: {},
      regions: [{ index: 0, name: 'ram', guestAddress: 0x4000_0000n, size: BigInt(2 * PAGE), mte: true, readOnly: false, slot: 0 }],
    },
    vcpus: [],
    blobs: [],
    chunkNames: [ramName, tagName],
  };
}

/** A diff of vectorManifest giving its first page (whose content is then the vector chunks' again): a version-2 manifest. */
export function vectorDiffManifest(ramName: Uint8Array, tagName: Uint8Array): Manifest {
  const parent = vectorManifest(ramName, tagName);
  return {
    ...parent,
    fileBytes: 2345n,
    metadata: { ...parent.metadata, snapshotId: new Uint8Array(16).fill(8), parentId: parent.metadata.snapshotId },
    diff: { parentName: 'guest-1', changed: [Uint8Array.of(0x01)] },
  };
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

export async function makeStoreVectors(): Promise<Record<string, unknown>> {
  const keys = new TenantKeys(VECTOR_SECRET);
  const { ram, tags } = vectorContent();
  const chunk = (kind: 'ram' | 'tags', content: Uint8Array) => {
    const geometry: ChunkGeometry = { kind, pageSize: PAGE, pageCount: 2 };
    const name = nameChunk(keys, geometry, content);
    // Raw encoding (level 0): the plaintext is then the same for every zstd version.
    const plaintext = encodeChunkPayload(kind, { region: 0, firstPage: 0, pageCount: 2, pageSize: PAGE }, content, {
      codec: null,
      level: 0,
    });
    const object = sealChunk(keys, geometry, name, plaintext);
    return {
      roleHeader: hex(chunkObjectHeader(geometry)),
      content: hex(content),
      name: hex(name),
      key: hex(keys.chunkKey(name)),
      plaintext: hex(plaintext),
      nonce: hex(object.subarray(16, 28)),
      object: hex(object),
    };
  };
  const ramChunk = chunk('ram', ram);
  const tagChunk = chunk('tags', tags);
  const manifest = vectorManifest(Buffer.from(ramChunk.name, 'hex'), Buffer.from(tagChunk.name, 'hex'));
  const manifestNonce = new Uint8Array(12).fill(0x33);
  const diffManifest = vectorDiffManifest(Buffer.from(ramChunk.name, 'hex'), Buffer.from(tagChunk.name, 'hex'));
  const diffNonce = new Uint8Array(12).fill(0x55);
  const plainFile = Uint8Array.from({ length: 10000 }, (_, i) => i % 251);
  const salt = new Uint8Array(32).fill(0x44);
  const sealed: Uint8Array[] = [];
  const sealer = new SegmentSealer(VECTOR_SECRET, async (bytes) => void sealed.push(bytes), 4096, salt);
  await sealer.write(plainFile);
  await sealer.finish();
  return {
    description: 'spec/STORE.md section 9: vectors made from the secret 000102...1f; hex strings',
    secret: hex(VECTOR_SECRET),
    labels: KEY_LABELS,
    keyCheck: hex(keys.keyCheck()),
    ramChunk,
    tagChunk,
    manifest: {
      name: 'guest-1',
      plaintext: hex(encodeManifest(manifest)),
      nonce: hex(manifestNonce),
      object: hex(sealManifest(keys, 'guest-1', manifest, manifestNonce)),
    },
    diffManifest: {
      name: 'guest-1-diff',
      plaintext: hex(encodeManifest(diffManifest)),
      nonce: hex(diffNonce),
      object: hex(sealManifest(keys, 'guest-1-diff', diffManifest, diffNonce)),
    },
    encryptedFile: {
      segmentSize: 4096,
      salt: hex(salt),
      plaintext: hex(plainFile),
      file: hex(Buffer.concat(sealed)),
    },
  };
}
