/**
 * Keeps V8's young generation at its initial size for the vmsnap process.
 *
 * V8 doubles the new space whenever a scavenge sees enough bytes survive, up
 * to 16 MiB semi-spaces (48 MiB of RSS with the copy reserve). vmsnap's
 * commands allocate many short-lived objects per chunk, so a longer run (a
 * larger guest) got there and the peak RSS grew with the guest by 20-35 MiB.
 * At the initial 1 MiB the same commands take the same CPU time (1 GiB guest:
 * tags diff 128 -> 92 MiB, restore --compare-sim 103 -> 90, verify 77 -> 71).
 *
 * Set here, for the command only, not in the library: an embedding VMM owns
 * its heap. The growth factor is read at each grow, so it can be set once the
 * isolate runs; the semi-space maximum cannot. This module must be the first
 * import of tools/vmsnap.ts so that it runs before the others load.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--semi-space-growth-factor=1');
