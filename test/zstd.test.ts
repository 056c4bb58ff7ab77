import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeChunkPayload, encodeChunkPayload, readChunkHeader } from '../src/format/chunk.js';
import { MAX_CHUNK_CONTENT, MAX_ZSTD_LEVEL } from '../src/format/constants.js';
import { frameContentSize, loadNativeZstd, loadWasmZstd, type ZstdCodec } from '../src/format/zstd.js';
import { externalTool, titled } from './support/external-tool.js';

const dir = mkdtempSync(join(tmpdir(), 'vmsnap-zstd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Memory-like content: text, small integers, zero runs and some noise. */
function memoryLike(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = seed;
  for (let i = 0; i < length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const region = (i >> 12) % 4;
    out[i] = region === 0 ? 0 : region === 1 ? 'ldr x0, [sp, #16]\n'.charCodeAt(i % 18) : region === 2 ? (s >>> 24) & 0x0f : s >>> 24;
  }
  return out;
}

let codecs: ZstdCodec[];
beforeAll(async () => {
  codecs = [loadNativeZstd(), await loadWasmZstd()];
});

const zstdCli = externalTool('the zstd CLI', ['zstd', '--version'], 'apt-get install -y zstd');

describe.skipIf(zstdCli.skip)(titled('zstd codecs agree with each other and with the zstd CLI', zstdCli), () => {
  it('finds the zstd CLI', () => {
    expect(zstdCli.available, zstdCli.reason).toBe(true);
  });

  for (const size of [1, 4096, 1 << 20, MAX_CHUNK_CONTENT]) {
    for (const level of [1, MAX_ZSTD_LEVEL]) {
      it(`${size} bytes at level ${level}: every codec decodes every codec's frame, and the CLI does too`, () => {
        const content = memoryLike(size, size + level);
        for (const writer of codecs) {
          const frame = writer.compress(content, level);
          expect(frameContentSize(frame)).toBe(size);
          for (const reader of codecs) expect(Buffer.compare(reader.decompress(frame, size), content)).toBe(0);
          const path = join(dir, `${writer.name}-${size}-${level}.zst`);
          writeFileSync(path, frame);
          expect(Buffer.compare(execFileSync('zstd', ['-d', '-c', '-q', path], { maxBuffer: 64 << 20 }), content)).toBe(0);
        }
      });
    }
  }

  it('frames the zstd CLI makes decode with both codecs', () => {
    const content = memoryLike(MAX_CHUNK_CONTENT, 9);
    const path = join(dir, 'cli.bin');
    writeFileSync(path, content);
    execFileSync('zstd', ['-1', '-q', '-f', '--content-size', path, '-o', `${path}.zst`]);
    const frame = readFileSync(`${path}.zst`);
    for (const codec of codecs) expect(Buffer.compare(codec.decompress(frame, content.length), content)).toBe(0);
  });

  it('a chunk compressed with the wasm codec decodes with the native one, and back', () => {
    const range = { region: 0, firstPage: 0, pageCount: 64, pageSize: 4096 };
    const ram = memoryLike(64 * 4096, 3);
    for (const [writer, reader] of [codecs, [...codecs].reverse()]) {
      const payload = encodeChunkPayload('ram', range, ram, { codec: writer, level: 3 });
      expect(payload[16]).toBe(1);
      const decoded = decodeChunkPayload(payload, { kind: 'ram', pageSize: 4096, codec: reader }, readChunkHeader(payload));
      expect(Buffer.compare(decoded.expanded, ram)).toBe(0);
    }
  });

  it('refuses frames that do not declare their size, name a dictionary, or lie about their size', () => {
    const content = memoryLike(10_000, 1);
    const path = join(dir, 'nosize.bin');
    writeFileSync(path, content);
    execFileSync('zstd', ['-1', '-q', '-f', '--no-content-size', path, '-o', `${path}.zst`]);
    expect(() => frameContentSize(readFileSync(`${path}.zst`))).toThrow(/does not declare its content size/);
    const frame = codecs[0].compress(content, 1);
    for (const codec of codecs) expect(() => codec.decompress(frame, 9_999)).toThrow(/declares 10000 bytes/);
    const withDictionary = Uint8Array.from(frame);
    withDictionary[4] |= 1;
    expect(() => frameContentSize(withDictionary)).toThrow(/dictionary/);
  });
});
