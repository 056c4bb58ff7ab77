/**
 * What one 4 KiB frame of a generated guest holds, by kind: arm64-like code,
 * heap pages of tagged allocations, page-cache text, zeros. The aim is data
 * that compresses like real memory (code about 2x, text 3x, heap somewhere
 * between, a few random buffers not at all) and tags shaped like a tagging
 * allocator's: a run of one nonzero tag per allocation, neighbours differing,
 * freed chunks back at tag 0.
 */

import { GRANULE_SIZE } from '../format/constants.js';
import type { FrameRandom } from './random.js';
import { FRAME_SIZE, type FrameKind } from './workload-layout.js';

const WORDS_PER_FRAME = FRAME_SIZE / 4;
export const GRANULES_PER_FRAME = FRAME_SIZE / GRANULE_SIZE;

/** Frequent A64 encodings with their register/immediate fields cleared; repeats weight the draw. */
const INSTRUCTIONS = new Uint32Array([
  0xd503201f, 0xa9bf7bfd, 0x910003fd, 0xa8c17bfd, 0xd65f03c0, 0x94000000, 0x94000000, 0x14000000, 0xf9400000, 0xf9400000, 0xf9400000,
  0xf9000000, 0xf9000000, 0xb9400000, 0xb9000000, 0xaa0003e0, 0xaa0003e0, 0x2a0003e0, 0x91000000, 0x91000000, 0xd1000000, 0xb4000000,
  0xb5000000, 0x54000000, 0x52800000, 0xd2800000, 0xeb00001f, 0x7100001f, 0x90000000, 0x8b000000, 0xd63f0000, 0x34000000, 0x35000000,
  0x39400000, 0x39000000, 0x12000000, 0x0a000000, 0xca000000, 0xd3400000, 0xf94003e0,
]);
/** Which fields each template takes: 0 none, 1 Rd/Rn/Rm, 2 Rt+Rn+imm12, 3 imm26, 4 imm19+reg. */
const FIELDS = new Uint8Array([
  0, 0, 0, 0, 0, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 4, 4, 4, 4, 4, 1, 2, 4, 1, 1, 4, 4, 2, 2, 1, 1, 1, 1, 2,
]);

const TEXT_WORDS = (
  'the of and to in is for on that with kernel module device driver memory page cache tag granule alloc free ' +
  'error warning info debug request response client server config value key name path file open read write ' +
  'close size offset buffer queue thread lock mutex state ready done failed retry timeout connect session user'
)
  .split(' ')
  .map((word) => Uint8Array.from(word, (c) => c.charCodeAt(0)));

/** A register number skewed towards the low ones, as compilers allocate them. */
function register(random: FrameRandom): number {
  const r = random.next();
  return Math.min(r & 31, (r >>> 5) & 31, 30);
}

function instruction(random: FrameRandom): number {
  const pick = random.below(INSTRUCTIONS.length);
  const base = INSTRUCTIONS[pick];
  switch (FIELDS[pick]) {
    case 1:
      return (base | (register(random) << 16) | (register(random) << 5) | register(random)) >>> 0;
    case 2:
      return (base | (random.below(64) << 10) | (register(random) << 5) | register(random)) >>> 0;
    case 3:
      return (base | (random.next() & 0x3ffff)) >>> 0;
    case 4:
      return (base | (random.below(512) << 5) | register(random)) >>> 0;
    default:
      return base;
  }
}

/** Scratch for one frame, reused: generation writes words, then copies bytes out. */
export class FrameWriter {
  readonly words = new Uint32Array(WORDS_PER_FRAME);
  readonly bytes = new Uint8Array(this.words.buffer);

  /** Fills `data` (FRAME_SIZE bytes) and `tags` (one per granule) for a frame of `kind`. */
  fill(kind: FrameKind, random: FrameRandom, data: Uint8Array, tags: Uint8Array): void {
    tags.fill(0);
    switch (kind) {
      case 'zero':
        data.fill(0);
        return;
      case 'kernel-text':
      case 'firmware':
        this.code(random, 0, WORDS_PER_FRAME);
        break;
      case 'page-cache':
        if (random.chance(30)) this.code(random, 0, WORDS_PER_FRAME);
        else this.text(random, 0, FRAME_SIZE);
        break;
      case 'heap':
        this.heap(random, tags);
        break;
    }
    data.set(this.bytes);
  }

  private code(random: FrameRandom, firstWord: number, endWord: number): void {
    for (let w = firstWord; w < endWord; w++) this.words[w] = instruction(random);
  }

  private text(random: FrameRandom, start: number, end: number): void {
    const bytes = this.bytes;
    let at = start;
    while (at < end) {
      const word = TEXT_WORDS[random.below(TEXT_WORDS.length)];
      for (let i = 0; i < word.length && at < end; i++) bytes[at++] = word[i];
      if (at < end) bytes[at++] = random.chance(12) ? 0x0a : 0x20;
    }
  }

  /**
   * A slab-like page: allocations of 16 B to 4 KiB, each with a tag different
   * from its neighbour's, some freed (zeroed, tag 0).
   */
  private heap(random: FrameRandom, tags: Uint8Array): void {
    this.words.fill(0);
    let granule = 0;
    let previousTag = 1 + random.below(15);
    while (granule < GRANULES_PER_FRAME) {
      const count = Math.min(allocationGranules(random), GRANULES_PER_FRAME - granule);
      if (!random.chance(12)) {
        let tag = 1 + random.below(15);
        if (tag === previousTag) tag = (tag % 15) + 1;
        tags.fill(tag, granule, granule + count);
        this.object(random, granule * 4, (granule + count) * 4, tag);
        previousTag = tag;
      } else {
        previousTag = 0;
      }
      granule += count;
    }
  }

  private object(random: FrameRandom, firstWord: number, endWord: number, tag: number): void {
    const roll = random.below(100);
    if (roll < 60) this.structure(random, firstWord, endWord, tag);
    else if (roll < 85) this.text(random, firstWord * 4, endWord * 4 - 1);
    else if (roll < 93) for (let w = firstWord; w < endWord; w++) this.words[w] = random.next();
    // else: kzalloc'ed and still zero
  }

  /** A C struct: pointers into the tagged linear map, small integers, flags, zero fields. */
  private structure(random: FrameRandom, firstWord: number, endWord: number, tag: number): void {
    const words = this.words;
    for (let w = firstWord; w + 1 < endWord; w += 2) {
      const roll = random.below(100);
      if (roll < 35) continue;
      if (roll < 62) {
        // 0xf<tag>ff_00xx_xxxx_xxx0: a tagged kernel pointer (tag in bits 59:56).
        words[w] = (random.next() & 0x3ffffff0) >>> 0;
        words[w + 1] = (0xf0ff0000 | (((tag + random.below(3)) & 0xf) << 24) | random.below(4)) >>> 0;
      } else if (roll < 88) {
        words[w] = random.below(roll < 80 ? 256 : 65536);
      } else {
        words[w] = random.next();
      }
    }
  }
}

/** Allocation sizes in granules: mostly small objects, some medium, a few page-sized buffers. */
function allocationGranules(random: FrameRandom): number {
  const roll = random.below(100);
  if (roll < 55) return 1 + random.below(4);
  if (roll < 85) return 5 + random.below(28);
  if (roll < 97) return 33 + random.below(96);
  return GRANULES_PER_FRAME;
}
