/** XXH64 with seed 0, the format's only checksum (checksum id 1). */
import { xxh64 } from '@node-rs/xxhash';

export function checksum(bytes: Uint8Array): bigint {
  return xxh64(bytes, 0n);
}
