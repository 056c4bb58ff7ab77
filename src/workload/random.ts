/**
 * Small, fast, seeded randomness for the workload generator. Every frame of
 * guest memory derives its own generator from (seed, region, frame), which is
 * what makes any page range reproducible without generating the rest.
 */

/** murmur3's 32-bit finaliser: a good avalanche for combining keys. */
export function mix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of a few small integers. */
export function hashKey(seed: number, a: number, b: number, c = 0): number {
  let h = mix32(seed ^ 0x9e3779b9);
  h = mix32(h ^ Math.imul(a + 1, 0x27d4eb2d));
  h = mix32(h ^ Math.imul(b + 1, 0x165667b1));
  return mix32(h ^ Math.imul(c + 1, 0x61c88647));
}

/**
 * xorshift32: one state word, a handful of operations per number. The state
 * is kept as a signed 32-bit integer (the same bits: the shifts and xors read
 * it as one anyway). Kept as the unsigned value, V8 allocated a heap number
 * per step: about 1.5 GB of garbage per GiB generated (781 scavenges for
 * 1 GiB, 42 this way), which grew the young generation to its largest size
 * and cost restore --compare-sim and demo about 20 MiB of peak RSS.
 */
export class FrameRandom {
  private state: number;

  constructor(key: number) {
    this.state = (key >>> 0 || 0x6d2b79f5) | 0;
  }

  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x | 0;
    return x >>> 0;
  }

  /** An integer in [0, bound). */
  below(bound: number): number {
    return (this.next() % bound) >>> 0;
  }

  /** True with probability `percent` / 100. */
  chance(percent: number): boolean {
    return this.next() % 100 < percent;
  }
}
