/**
 * Runs of consecutive pages: what the writer packs, the reader expands and
 * restore writes. Whole runs take one copy or one ioctl instead of one per page.
 */

/** Calls `visit` for each run of consecutive pages in [0, pageCount) that `selected` picks; returns the pages visited. */
export function forEachRun(
  pageCount: number,
  selected: (page: number) => boolean,
  visit: (firstPage: number, pages: number) => void,
): number {
  let visited = 0;
  let page = 0;
  while (page < pageCount) {
    if (!selected(page)) {
      page++;
      continue;
    }
    const first = page;
    while (page < pageCount && selected(page)) page++;
    visit(first, page - first);
    visited += page - first;
  }
  return visited;
}
