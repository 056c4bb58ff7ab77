/**
 * ReadAhead: which ranges it asks the kernel to read ahead of a sequential
 * reader (recorded through an injected posix_fadvise), and that it starts
 * over where a reader jumps; and that the raw-file backend asks it only for
 * RAM reads that follow on from the last one. The real call is exercised by
 * every save from raw files (koffi present); here the arithmetic.
 */
import { closeSync, openSync, readSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileSlotStorage } from '../src/backends/raw-files/file-slot-storage.js';
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

describe('raw-file RAM reads', () => {
  it('advise ahead of reads that follow on from the last one, not of a lone read', () => {
    const path = join(tmpdir(), `vmsnap-read-ahead-slot-${process.pid}`);
    writeFileSync(path, Buffer.alloc(4 * MiB, 2));
    const fd = openSync(path, 'r');
    try {
      const { calls, fadvise } = recorder();
      const ramReadAhead = new ReadAhead(7, fadvise);
      const region = { name: 'ram', slot: 0, guestAddress: 0n, size: 4n * BigInt(MiB), mte: false, readOnly: true, fileOffset: 0n };
      const files = { ramFd: fd, ramPath: path, tagLayout: 'byte' as const, writable: false, ramReadAhead };
      const storage = new FileSlotStorage(region, files, 4096, false);
      const bytes = new Uint8Array(MiB);
      storage.readMemory(2 * MiB, bytes);
      expect(calls).toEqual([]);
      storage.readMemory(3 * MiB, bytes);
      expect(calls[0]).toEqual([3 * MiB, READ_AHEAD_STEP]);
      expect(bytes.every((b) => b === 2)).toBe(true);
      calls.length = 0;
      storage.readMemory(0, bytes);
      expect(calls).toEqual([]);
    } finally {
      closeSync(fd);
      unlinkSync(path);
    }
  });
});
