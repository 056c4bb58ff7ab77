/**
 * Keeps glibc's malloc from holding on to what the pool threads freed, so
 * that the vmsnap process's peak RSS does not grow with the guest.
 *
 * Chunks are compressed and decompressed by libzstd on libuv's pool threads
 * (src/parallel/libzstd.ts). glibc gives a thread that meets contention an
 * arena of its own (up to eight per core), and an arena keeps what is freed
 * in it for reuse instead of giving it back: a longer run (a larger guest)
 * left more there. Measured at 16 GiB against 1 GiB, the process's memory
 * outside V8's heap and external memory grew by 8.6 MiB for flatten.
 *
 * So: at most two arenas from here on (V8's own threads made theirs before
 * this runs), and malloc_trim every half second gives the free pages of every
 * arena back. Flatten of a 16 GiB chain peaked at 105.6-107.5 MiB without
 * either, 102.1-102.8 with the cap alone, 98.2-98.6 with both; a restore of
 * a 16 GiB diff at 91.1-91.6, now 87.7-88.7, in the same time (29-36 s).
 *
 * Through koffi: every command that reads or writes chunks loads it anyway
 * (libzstd). Without koffi (an optional dependency) or without glibc's
 * functions, nothing is done. For the command only, not in the library: an
 * embedding VMM owns its allocator.
 */
import { createRequire } from 'node:module';

/** glibc's malloc.h. */
const M_ARENA_MAX = -8;
const ARENAS = 2;
const TRIM_EVERY_MS = 500;

try {
  const libc = (createRequire(import.meta.url)('koffi') as typeof import('koffi')).load(null);
  const mallopt = libc.func('int mallopt(int param, int value)') as (param: number, value: number) => number;
  const mallocTrim = libc.func('int malloc_trim(size_t pad)') as (pad: number) => number;
  mallopt(M_ARENA_MAX, ARENAS);
  // unref: the timer never keeps the process alive.
  setInterval(() => mallocTrim(0), TRIM_EVERY_MS).unref();
} catch {
  // No koffi, or a libc without these: malloc's defaults.
}
