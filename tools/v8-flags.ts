/**
 * V8 flags for the vmsnap process: a heap that stays small, so that peak RSS
 * does not grow with the guest, and optimization saved for code that runs
 * long enough to pay for it.
 *
 * The young generation stays at its initial size. V8 doubles the new space
 * whenever a scavenge sees enough bytes survive, up to 16 MiB semi-spaces
 * (48 MiB of RSS with the copy reserve). vmsnap's commands allocate many
 * short-lived objects per chunk, so a longer run (a larger guest) got there
 * and the peak RSS grew with the guest by 20-35 MiB. At the initial 1 MiB the
 * same commands take the same CPU time (1 GiB guest: tags diff 128 -> 92 MiB,
 * restore --compare-sim 103 -> 90, verify 77 -> 71).
 *
 * The old generation grows by a fifth of what lives after each full GC
 * (V8 keeps at least 8 MiB of room) instead of V8's factor of up to 4. Some
 * of those per-chunk objects outlive two scavenges while reads are in flight;
 * with 10 MiB live, V8 let them pile up to 40 MiB before marking, and a long
 * run always got there (16 GiB guest: verify 107 -> 86 MiB, flatten 175 ->
 * 123, for 9 more full GCs of a few milliseconds each).
 *
 * Set here, for the command only, not in the library: an embedding VMM owns
 * its heap. Both factors are read each time V8 sizes a space, so they can be
 * set once the isolate runs; the semi-space maximum cannot. This module must
 * be the first import of tools/vmsnap.ts so that it runs before the others
 * load.
 *
 * A function is optimized by TurboFan after about 500 KB of its bytecode has
 * run instead of V8's 66 KB. A save or restore runs its per-chunk functions
 * (the read, decode and event generators: large, async) about a thousand
 * times, and V8 optimized them all, at 10-50 ms of compiler time each, on the
 * same two cores as the zstd calls: a quarter of a second of CPU in the bench's
 * 1 GiB restore. The loops over pages and granules still run hot enough to be
 * optimized within milliseconds. Alternating runs on the bench's guest (6
 * rounds): restore 1.30 -> 1.21 s and 1.78 -> 1.63 s of CPU, save 1.78 ->
 * 1.75 s and 2.82 -> 2.72 s of CPU.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--semi-space-growth-factor=1');
setFlagsFromString('--heap-growing-percent=20');
setFlagsFromString('--interrupt-budget=500000');
