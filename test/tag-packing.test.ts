/**
 * The tag helpers' word-at-a-time paths against a byte-at-a-time reference:
 * every alignment of source and destination, lengths around the word size,
 * junk in the high nibbles.
 */
import { describe, expect, it } from 'vitest';
import { hasNonzeroTag, keepLowNibbles, packTaggedPages, packTags, unpackTags } from '../src/format/tag-packing.js';

function randomBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

function referencePack(source: Uint8Array, packed: Uint8Array, firstGranule: number): void {
  for (let i = 0; i < source.length; i++) {
    const granule = firstGranule + i;
    const at = granule >> 1;
    packed[at] = granule & 1 ? (packed[at] & 0x0f) | ((source[i] & 0x0f) << 4) : (packed[at] & 0xf0) | (source[i] & 0x0f);
  }
}

const LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 256, 257, 1027];

describe('tag packing', () => {
  it('packs like the byte-at-a-time reference at every alignment', () => {
    for (const length of LENGTHS)
      for (let sourceOffset = 0; sourceOffset < 4; sourceOffset++)
        for (let packedOffset = 0; packedOffset < 3; packedOffset++)
          for (const firstGranule of [0, 1, 2, 6]) {
            const source = randomBytes(length + sourceOffset, length * 31 + sourceOffset).subarray(sourceOffset);
            const before = randomBytes(packedOffset + length + 8, 7 + firstGranule);
            const expected = before.slice(packedOffset);
            const packed = before.slice().subarray(packedOffset);
            referencePack(source, expected, firstGranule);
            packTags(source, packed, firstGranule);
            expect(packed, `length ${length}, offsets ${sourceOffset}/${packedOffset}, granule ${firstGranule}`).toEqual(expected);
            const back = new Uint8Array(length);
            unpackTags(packed, firstGranule, back);
            expect(back).toEqual(source.map((byte) => byte & 0x0f));
          }
  });

  it('clears high nibbles and finds a nonzero tag wherever it is', () => {
    for (const length of LENGTHS)
      for (let offset = 0; offset < 4; offset++) {
        const tags = randomBytes(length + offset, length + offset * 101).subarray(offset);
        const expected = tags.map((byte) => byte & 0x0f);
        keepLowNibbles(tags);
        expect(tags).toEqual(expected);
        for (let at = 0; at < length; at++) {
          const junk = new Uint8Array(length + offset).fill(0xf0).subarray(offset);
          expect(hasNonzeroTag(junk)).toBe(false);
          junk[at] = 0xf3;
          expect(hasNonzeroTag(junk), `tag at ${at} of ${length}`).toBe(true);
        }
      }
  });

  it('packs the tagged pages of a chunk like hasNonzeroTag and packTags page by page, aligned or not', () => {
    for (const granulesPerPage of [256, 4096])
      for (let offset = 0; offset < 4; offset++) {
        const pages = 19;
        const tags = randomBytes(pages * granulesPerPage + offset, granulesPerPage + offset).subarray(offset);
        // Untagged pages: all zero, only high-nibble junk, or one tag at the page's last granule.
        for (const page of [0, 3, 4, 11]) tags.fill(0, page * granulesPerPage, (page + 1) * granulesPerPage);
        tags.fill(0xf0, 5 * granulesPerPage, 6 * granulesPerPage);
        tags.fill(0, 7 * granulesPerPage, 8 * granulesPerPage);
        tags[8 * granulesPerPage - 1] = 0x09;
        const expectedBitmap = new Uint8Array(3);
        const expected = new Uint8Array((pages * granulesPerPage) / 2);
        let expectedPresent = 0;
        for (let page = 0; page < pages; page++) {
          const pageTags = tags.subarray(page * granulesPerPage, (page + 1) * granulesPerPage);
          if (!hasNonzeroTag(pageTags)) continue;
          expectedBitmap[page >>> 3] |= 1 << (page & 7);
          referencePack(pageTags, expected, expectedPresent++ * granulesPerPage);
        }
        const bitmap = new Uint8Array(3);
        const packed = new Uint8Array(expected.length + offset).subarray(offset);
        const present = packTaggedPages(tags, granulesPerPage, packed, bitmap);
        expect(present).toBe(pages - 5);
        expect(present).toBe(expectedPresent);
        expect(bitmap).toEqual(expectedBitmap);
        expect(packed).toEqual(expected);
      }
  });
});
