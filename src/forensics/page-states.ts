/**
 * The tag state of a page, as the tag map colours it.
 */
import { tagMask } from './region-cursor.js';

export const PageState = {
  /** In a region whose tags are not saved (not an MTE region). */
  UntaggedRegion: 0,
  /** Every granule has tag 0. */
  ZeroTags: 1,
  /** Every granule has the same nonzero tag. */
  OneTag: 2,
  /** Two or more distinct tag values (0 counts as one). */
  ManyTags: 3,
  /** Some granule's tag differs from the second snapshot. */
  TagsChanged: 4,
  /** Tags equal to the second snapshot's, data not. */
  DataChanged: 5,
} as const;
export type PageState = (typeof PageState)[keyof typeof PageState];
export const PAGE_STATE_COUNT = 6;

export const PAGE_STATE_NAMES: Record<PageState, string> = {
  [PageState.UntaggedRegion]: 'untagged region',
  [PageState.ZeroTags]: 'all tags zero',
  [PageState.OneTag]: 'one tag',
  [PageState.ManyTags]: 'many tags',
  [PageState.TagsChanged]: 'tags changed',
  [PageState.DataChanged]: 'data changed',
};

/** The state of a page from its own tags (null: region without tags). */
export function tagStateOfPage(tags: Uint8Array | null, from: number, to: number): PageState {
  if (!tags) return PageState.UntaggedRegion;
  const mask = tagMask(tags, from, to);
  if (mask === 1) return PageState.ZeroTags;
  return (mask & (mask - 1)) === 0 ? PageState.OneTag : PageState.ManyTags;
}

function rangesDiffer(a: Uint8Array, b: Uint8Array, from: number, to: number): boolean {
  return !Buffer.from(a.buffer, a.byteOffset + from, to - from).equals(Buffer.from(b.buffer, b.byteOffset + from, to - from));
}

/** Changed states first: a page that changed since the other snapshot shows that, whatever its tags. */
export function changeStateOfPage(
  tags: Uint8Array | null,
  otherTags: Uint8Array | null,
  tagFrom: number,
  tagTo: number,
  data: Uint8Array | null,
  otherData: Uint8Array | null,
  dataFrom: number,
  dataTo: number,
): PageState | null {
  if (tags && otherTags && rangesDiffer(tags, otherTags, tagFrom, tagTo)) return PageState.TagsChanged;
  if (data && otherData && rangesDiffer(data, otherData, dataFrom, dataTo)) return PageState.DataChanged;
  return null;
}
