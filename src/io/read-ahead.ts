/**
 * Keeps the kernel reading a file ahead of a sequential reader
 * (posix_fadvise POSIX_FADV_WILLNEED), so that pages not in the page cache
 * come off the device while the reader compresses what it has, instead of
 * when it asks for them. With a save's chunk reads issued from several pool
 * threads at once, the kernel's own readahead fell behind: the bench's 1 GiB
 * save from a cold page cache took 4.3-4.5 s without this advice, 3.6-4.2 s
 * with it. A compressing save now reads in order on the calling thread,
 * which must not wait on the device while zstd calls finish behind it.
 *
 * posix_fadvise comes from the process's libc through koffi, loaded here
 * lazily and only when a reader asks; without koffi (an optional dependency)
 * reads go on as before, unadvised.
 */
import { createRequire } from 'node:module';

/** posix_fadvise's advice (linux/fadvise.h). */
const POSIX_FADV_WILLNEED = 3;

/** How far ahead of the furthest read the kernel is kept reading, and in what steps it is asked. */
export const READ_AHEAD_WINDOW = 32 * 1024 * 1024;
export const READ_AHEAD_STEP = 8 * 1024 * 1024;

/** posix_fadvise(fd, offset, length, advice), answering 0 or an errno; errors are only advice lost. */
export type Fadvise = (fd: number, offset: number, length: number, advice: number) => number;

let loaded: Fadvise | null | undefined;

function loadFadvise(): Fadvise | null {
  if (loaded !== undefined) return loaded;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    loaded = koffi.load(null).func('int posix_fadvise(int fd, int64_t offset, int64_t length, int advice)') as Fadvise;
  } catch {
    loaded = null;
  }
  return loaded;
}

/** One file read mostly from start to end: advises the range ahead of each read. */
export class ReadAhead {
  /** The end of the range advised so far; reads before it need no new advice. */
  private advisedEnd = -1;

  constructor(
    private readonly fd: number,
    private readonly fadvise: Fadvise | null = loadFadvise(),
  ) {}

  /** Call before reading [position, position + length). */
  reading(position: number, length: number): void {
    if (!this.fadvise) return;
    const end = position + length;
    // A read outside the window (the reader jumped) starts the window again where it reads.
    if (position > this.advisedEnd || position < this.advisedEnd - 2 * READ_AHEAD_WINDOW) this.advisedEnd = position;
    while (this.advisedEnd < end + READ_AHEAD_WINDOW) {
      this.fadvise(this.fd, this.advisedEnd, READ_AHEAD_STEP, POSIX_FADV_WILLNEED);
      this.advisedEnd += READ_AHEAD_STEP;
    }
  }
}
