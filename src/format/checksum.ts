/** XXH64 with seed 0, the format's only checksum (checksum id 1). */
import { createRequire } from 'node:module';

/**
 * Loaded with require, not import: importing a CommonJS module from ESM makes
 * node scan its source for export names (cjs-module-lexer), and this package's
 * 29 KB loader is enough for V8 to compile the scanner with TurboFan, about
 * 0.1-0.3 s of CPU in every vmsnap process (node --trace-opt), competing with
 * the zstd threads for the cores.
 */
const { xxh64 } = createRequire(import.meta.url)('@node-rs/xxhash') as typeof import('@node-rs/xxhash');

export function checksum(bytes: Uint8Array): bigint {
  return xxh64(bytes, 0n);
}
