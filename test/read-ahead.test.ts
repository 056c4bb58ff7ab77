/**
 * ReadAhead: which ranges it asks the kernel to read ahead of a sequential
 * reader (recorded through an injected posix_fadvise), and that it starts
 * over where a reader jumps. The real call is exercised by every save from
 * raw files (koffi present); here the arithmetic.
 */
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { READ_AHEAD_STEP, READ_AHEAD_WINDOW, ReadAhead } from '../src/io/read-ahead.js';

const MiB = 1024 * 1024;
const WILLNEED = 3;

function recorder(): { calls: Array<[number, number]>; fadvise: (fd: number, offset: number, length: number, advice: number) => number } {
  const calls: Array<[number, number]> = [];
  return {
    calls,
    fadvise: (fd, offset, length, advice) => {
      expect(fd).toBe(7);
      expect(advice).toBe(WILLNEED);
      calls.push([offset, length]);
      return 0;
    },
  };
}

describe('read-ahead advice', () => {
  it('keeps a window ahead of a sequential reader, in steps, advising each range once', () => {
    const { calls, fadvise } = recorder();
    const ahead = new ReadAhead(7, fadvise);
    ahead.reading(0, MiB);
    const firstSteps = Math.ceil((MiB + READ_AHEAD_WINDOW) / READ_AHEAD_STEP);
    expect(calls).toEqual(Array.from({ length: firstSteps }, (_, i) => [i * READ_AHEAD_STEP, READ_AHEAD_STEP]));
    // Reads inside the window advise nothing new until the window needs extending.
    for (let at = MiB; at < READ_AHEAD_STEP; at += MiB) ahead.reading(at, MiB);
    expect(calls.length).toBe(firstSteps);
    ahead.reading(READ_AHEAD_STEP, MiB);
    expect(calls.length).toBe(firstSteps + 1);
    // Reads that arrive out of order (several pool threads) are still inside the window.
    ahead.reading(3 * MiB, MiB);
    ahead.reading(2 * MiB, MiB);
    expect(calls.length).toBe(firstSteps + 1);
    const covered = calls.map(([offset]) => offset);
    expect(new Set(covered).size).toBe(covered.length);
  });

  it('starts over where the reader jumps, forward or back', () => {
    const { calls, fadvise } = recorder();
    const ahead = new ReadAhead(7, fadvise);
    ahead.reading(0, MiB);
    calls.length = 0;
    ahead.reading(1024 * MiB, MiB);
    expect(calls[0]).toEqual([1024 * MiB, READ_AHEAD_STEP]);
    calls.length = 0;
    ahead.reading(0, MiB);
    expect(calls[0]).toEqual([0, READ_AHEAD_STEP]);
  });

  it('asks nothing without posix_fadvise, and advising a real file leaves its reads intact', () => {
    new ReadAhead(7, null).reading(0, MiB);
    const path = join(tmpdir(), `vmsnap-read-ahead-${process.pid}`);
    writeFileSync(path, Buffer.alloc(2 * MiB, 1));
    const fd = openSync(path, 'r');
    try {
      new ReadAhead(fd).reading(0, MiB);
      const bytes = Buffer.alloc(16);
      expect(readSync(fd, bytes, 0, 16, MiB)).toBe(16);
      expect(bytes.every((b) => b === 1)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });
});
