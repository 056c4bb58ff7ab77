/**
 * The system libzstd path (src/parallel/libzstd.ts): its frames keep the
 * format's rules and decode with the bundled codecs, chunks it builds decode
 * to the same pages as chunks the bundled codec builds, and a bad frame is
 * refused before it is decoded, with the same typed errors.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { checksum } from '../src/format/checksum.js';
import { decodeChunkPayload, readChunkHeader } from '../src/format/chunk.js';
import { MAX_CHUNK_CONTENT, MAX_ZSTD_WINDOW } from '../src/format/constants.js';
import { loadNativeZstd, loadWasmZstd, readFrameHeader } from '../src/format/zstd.js';
import { type DecodedChunkResult, type EncodedChunk, runChunkJob, runChunkJobNative } from '../src/parallel/chunk-jobs.js';
import { loadLibzstd } from '../src/parallel/libzstd.js';
import { phaseTimes } from '../src/parallel/phase-clock.js';
import { decodedChunk } from '../src/reader/sections.js';

const zstd = loadLibzstd();
const required = process.env.VMSNAP_REQUIRE_TOOLS === '1';
const reason = 'libzstd.so.1 is not installed (apt-get install -y libzstd1) or koffi did not load';

/** Guest-like pages: zero pages, text, small integers and noise, in runs of whole pages. */
function guestLike(pages: number, pageSize: number, seed: number): Uint8Array {
  const out = new Uint8Array(pages * pageSize);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const kind = Math.floor(i / pageSize) % 5;
    out[i] = kind === 0 ? 0 : kind === 1 ? 'mov x1, #42\n'.charCodeAt(i % 12) : kind === 2 ? (s >>> 24) & 3 : kind === 3 ? s >>> 24 : 0x5a;
  }
  return out;
}

afterAll(() => {
  if (zstd) expect(Object.keys(phaseTimes())).toEqual(expect.arrayContaining(['zero detection', 'checksums', 'expanding']));
});

describe.skipIf(!zstd && !required)(zstd ? `the system zstd (${zstd.name})` : `the system zstd (skipped: ${reason})`, () => {
  it('loads', () => {
    expect(zstd, reason).not.toBeNull();
  });

  for (const size of [4096, 1 << 20, MAX_CHUNK_CONTENT]) {
    it(`compresses ${size} bytes into a frame the format allows, which the bundled codecs decode`, async () => {
      const content = guestLike(size / 4096, 4096, size);
      const room = new Uint8Array(size - 1);
      const length = await zstd!.compressInto(content, 1, room);
      expect(length).toBeGreaterThan(0);
      const frame = room.subarray(0, length);
      const header = readFrameHeader(frame);
      expect(header.contentSize).toBe(size);
      expect(header.windowSize).toBeLessThanOrEqual(MAX_ZSTD_WINDOW);
      expect(header.checksum).toBe(false);
      for (const codec of [loadNativeZstd(), await loadWasmZstd()]) expect(Buffer.compare(codec.decompress(frame, size), content)).toBe(0);
      const back = new Uint8Array(size);
      await zstd!.decompressInto(frame, back);
      expect(Buffer.compare(back, content)).toBe(0);
    });
  }

  it('answers -1 for content that does not compress into fewer bytes', async () => {
    const noise = new Uint8Array(randomBytes(65536));
    expect(await zstd!.compressInto(noise, 1, new Uint8Array(noise.length - 1))).toBe(-1);
  });

  it('builds chunks that decode to the same pages as the bundled codec, RAM and tags, level 0 and 3', async () => {
    const pageSize = 4096;
    const ram = guestLike(64, pageSize, 3);
    const tags = new Uint8Array((64 * pageSize) / 16).map((_, i) => (Math.floor(i / 256) % 3 === 0 ? 0 : (i * 7) & 0xf));
    for (const level of [0, 3]) {
      for (const [kind, input] of [
        ['ram', ram],
        ['tags', tags],
      ] as const) {
        const range = { region: 1, firstPage: 128, pageCount: 64, pageSize };
        const job = { op: 'encode', kind, range, level } as const;
        const native = (await runChunkJobNative({ ...job, input: input.slice() }, zstd!)) as EncodedChunk;
        const bundled = (await runChunkJob({ ...job, input: input.slice() })) as EncodedChunk;
        // Same header, bitmap and content checksum; only the zstd frame may differ between zstd versions.
        expect(Buffer.compare(native.payload.subarray(0, 40), bundled.payload.subarray(0, 40))).toBe(0);
        for (const payload of [native.payload, bundled.payload]) {
          const header = readChunkHeader(payload);
          const decoded = decodeChunkPayload(payload, { kind, pageSize, codec: loadNativeZstd() }, header);
          expect(Buffer.compare(decoded.expanded, input)).toBe(0);
          const result = await runChunkJobNative(
            {
              op: 'decode',
              kind,
              pageSize,
              zstd: level > 0,
              payload,
              payloadChecksum: native.payload === payload ? native.payloadChecksum : bundled.payloadChecksum,
            },
            zstd!,
          );
          expect('failed' in result).toBe(false);
          const location = { ...range, kind, offset: 0n, length: 0n };
          const chunk = decodedChunk(location, result as DecodedChunkResult, pageSize);
          expect(Buffer.compare('data' in chunk ? chunk.data : chunk.tags, input)).toBe(0);
        }
      }
    }
  });

  it("refuses a frame with a window over 4 MiB or bytes after it before decoding, with the bundled codec's errors", async () => {
    const content = guestLike(16, 4096, 5);
    const frame = loadNativeZstd().compress(content, 1);
    const trailing = new Uint8Array(frame.length + 1);
    trailing.set(frame);
    await expect(zstd!.decompressInto(trailing, new Uint8Array(content.length))).rejects.toMatchObject({ code: 'decompression-failed' });
    await expect(zstd!.decompressInto(frame, new Uint8Array(content.length + 1))).rejects.toMatchObject({ code: 'decompression-failed' });
    const damaged = frame.slice();
    damaged[damaged.length - 3] ^= 0xff;
    const result = zstd!.decompressInto(damaged, new Uint8Array(content.length)).then(
      (): unknown => null,
      (error: unknown) => error,
    );
    // A flipped byte inside a block either fails to decode (typed) or decodes to other bytes, which the content checksum catches.
    const error = await result;
    if (error) expect(error).toMatchObject({ code: 'decompression-failed' });
  });

  it('refuses a chunk payload whose frame does not decode, naming the field', async () => {
    const pageSize = 4096;
    const input = guestLike(8, pageSize, 9);
    const range = { region: 0, firstPage: 0, pageCount: 8, pageSize };
    const encoded = (await runChunkJobNative({ op: 'encode', kind: 'ram', range, input, level: 1 }, zstd!)) as EncodedChunk;
    const payload = encoded.payload.slice();
    payload[41] ^= 0xff; // The frame's magic, just after the header and the one-byte bitmap.
    const result = await runChunkJobNative(
      { op: 'decode', kind: 'ram', pageSize, zstd: true, payload, payloadChecksum: checksum(payload) },
      zstd!,
    );
    expect(result).toMatchObject({ failed: true, code: 'decompression-failed', fieldOffset: 40 });
  });
});
