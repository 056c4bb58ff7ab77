/** IndexBuilder: the index payload built entry by entry, sized up front or grown, is the encoded index. */
import { describe, expect, it } from 'vitest';
import { encodeIndex, IndexBuilder, type IndexEntry } from '../src/format/index-section.js';

const entries: IndexEntry[] = Array.from({ length: 150 }, (_, i) => ({
  type: i % 2 ? 'TAGC' : 'RAMC',
  region: i % 3,
  firstPage: i * 256,
  offset: 64n + BigInt(i) * 4096n,
  length: 4096n,
  pageCount: 256,
  payloadChecksum: BigInt(i) * 0x1_0000_0001n,
}));

describe('IndexBuilder', () => {
  it.each([undefined, 0, 1, 150, 1000])('builds the same payload whatever it expected (%s)', (expected) => {
    const builder = new IndexBuilder(expected);
    for (const entry of entries) builder.add(entry);
    expect(builder.entries).toBe(entries.length);
    expect(Buffer.compare(builder.payload(), encodeIndex(entries))).toBe(0);
  });
});
