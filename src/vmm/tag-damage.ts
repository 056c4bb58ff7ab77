/**
 * A deliberate fault for `vmsnap run --corrupt-tag`: after a restore and
 * before the guest resumes, one granule's tag is changed in the guest, so a
 * person can watch the guest's own check catch a tag the snapshot did not
 * hold.
 */
import { GRANULE_SIZE } from '../format/constants.js';
import { readGuestTags, writeGuestTags } from '../vm/tag-copy.js';
import type { GuestAddress, Vm } from '../vm/vm.js';

export interface TagDamage {
  /** The granule whose tag was changed. */
  readonly guestAddress: GuestAddress;
  /** The tag the restore wrote there. */
  readonly original: number;
  /** The tag the guest finds instead. */
  readonly damaged: number;
}

/** Changes the tag of the granule at `guestAddress` in `vm` (tag + 1, mod 16), through the page's tags. */
export function damageTag(vm: Vm, guestAddress: GuestAddress): TagDamage {
  const granule = guestAddress - (guestAddress % BigInt(GRANULE_SIZE));
  const page = granule - (granule % BigInt(vm.pageSize));
  const tags = new Uint8Array(vm.pageSize / GRANULE_SIZE);
  readGuestTags(vm, page, tags);
  const index = Number((granule - page) / BigInt(GRANULE_SIZE));
  const original = tags[index] & 0xf;
  tags[index] = (original + 1) & 0xf;
  writeGuestTags(vm, page, tags);
  return { guestAddress: granule, original, damaged: tags[index] };
}
