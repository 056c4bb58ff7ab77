/**
 * Two encodings of MTE allocation tags, one tag per 16-byte granule:
 *
 *  - byte:   one tag per byte, the KVM_ARM_MTE_COPY_TAGS and ptrace layout;
 *  - packed: two tags per byte, low nibble = lower granule, the layout of
 *            Linux ELF core dumps (PT_AARCH64_MEMTAG_MTE), QEMU and GDB.
 *
 * These helpers move tags between them at any granule index, so a store may
 * keep tags packed (half the memory) and still serve partial-page copies.
 */

/** Reads `destination.length` tags starting at granule `firstGranule` of `packed`, one per byte. */
export function unpackTags(packed: Uint8Array, firstGranule: number, destination: Uint8Array): void {
  const count = destination.length;
  let granule = firstGranule;
  let i = 0;
  if (granule & 1 && count > 0) {
    destination[i++] = packed[granule >> 1] >> 4;
    granule++;
  }
  let byteIndex = granule >> 1;
  for (; i + 1 < count; i += 2) {
    const pair = packed[byteIndex++];
    destination[i] = pair & 0x0f;
    destination[i + 1] = pair >> 4;
  }
  if (i < count) destination[i] = packed[byteIndex] & 0x0f;
}

/** Writes the low nibble of each byte of `source` as tags starting at granule `firstGranule` of `packed`. */
export function packTags(source: Uint8Array, packed: Uint8Array, firstGranule: number): void {
  const count = source.length;
  let granule = firstGranule;
  let i = 0;
  if (granule & 1 && count > 0) {
    const at = granule >> 1;
    packed[at] = (packed[at] & 0x0f) | ((source[i++] & 0x0f) << 4);
    granule++;
  }
  let byteIndex = granule >> 1;
  for (; i + 1 < count; i += 2) {
    packed[byteIndex++] = (source[i] & 0x0f) | ((source[i + 1] & 0x0f) << 4);
  }
  if (i < count) packed[byteIndex] = (packed[byteIndex] & 0xf0) | (source[i] & 0x0f);
}
