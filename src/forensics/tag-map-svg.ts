/**
 * Renders a tag map as SVG, with our own code: a title, a legend, and per
 * region a label line, a framed grid of cells and the guest address of rows
 * at the left. Cells of one colour are drawn as one <path> per state with a
 * rectangle per run of equal cells in a row, which keeps the file small
 * (a few MB at most for the worst case of 262,144 alternating cells).
 */

import { formatBytes } from '../units.js';
import { PAGE_STATE_COUNT, PAGE_STATE_NAMES, PageState } from './page-states.js';
import type { RegionMap, TagMap } from './tag-map.js';

export const STATE_COLOURS: Record<PageState, string> = {
  [PageState.UntaggedRegion]: '#9c9c9c',
  [PageState.ZeroTags]: '#eef1f5',
  [PageState.OneTag]: '#4e79a7',
  [PageState.ManyTags]: '#f28e2b',
  [PageState.TagsChanged]: '#e15759',
  [PageState.DataChanged]: '#b07aa1',
};

const LEFT = 160;
const TOP = 100;
const REGION_LABEL = 30;
const REGION_GAP = 18;
const ADDRESS_LABEL_SPACING_PX = 32;
const FONT = 'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace"';

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function address(value: bigint): string {
  return `0x${value.toString(16).padStart(10, '0')}`;
}

function regionRows(region: RegionMap, columns: number): number {
  return Math.ceil(region.cells.length / columns);
}

/** Bands thinner than this are hard to see: a region of one or two rows gets taller rows (same cells, same width). */
const MIN_BAND_PX = 10;

/** The height of one row of cells of this region. */
function rowHeight(region: RegionMap, map: TagMap): number {
  const rows = regionRows(region, map.scale.columns);
  return Math.max(map.scale.cellPx, Math.ceil(MIN_BAND_PX / rows));
}

function shareText(region: RegionMap): string {
  const parts: string[] = [];
  for (let state = 0; state < PAGE_STATE_COUNT; state++) {
    const pages = region.pagesInState[state];
    if (!pages) continue;
    const share = (100 * pages) / region.pages;
    const text = pages === region.pages ? '100' : share < 0.1 ? '<0.1' : share.toFixed(1);
    parts.push(`${PAGE_STATE_NAMES[state as PageState]} ${text}%`);
  }
  return parts.join(', ');
}

/** d attributes per state: one rectangle per run of equal cells in a row. */
function cellPaths(region: RegionMap, map: TagMap, top: number): string[] {
  const { columns, cellPx } = map.scale;
  const rowPx = rowHeight(region, map);
  const paths = new Array<string>(PAGE_STATE_COUNT).fill('');
  for (let row = 0; row * columns < region.cells.length; row++) {
    const end = Math.min(region.cells.length, (row + 1) * columns);
    let runStart = row * columns;
    for (let c = runStart + 1; c <= end; c++) {
      if (c < end && region.cells[c] === region.cells[runStart]) continue;
      const x = LEFT + (runStart - row * columns) * cellPx;
      const y = top + row * rowPx;
      paths[region.cells[runStart]] += `M${x} ${y}h${(c - runStart) * cellPx}v${rowPx}h-${(c - runStart) * cellPx}z`;
      runStart = c;
    }
  }
  return paths;
}

function regionSvg(region: RegionMap, map: TagMap, top: number): string[] {
  const { columns, cellPx, pagesPerCell } = map.scale;
  const rows = regionRows(region, columns);
  const rowPx = rowHeight(region, map);
  const out: string[] = [];
  const compared = map.against ? (region.compared ? '' : ' (not in the second snapshot)') : '';
  out.push(
    `<text x="${LEFT}" y="${top + 13}" font-size="13" font-weight="bold" ${FONT}>${escapeXml(region.name)}  ` +
      `[${address(region.guestAddress)}, ${address(region.guestAddress + region.size)})  ` +
      `${formatBytes(region.size)}, ${region.pages} pages${region.mte ? '' : ', not MTE'}${escapeXml(compared)}</text>`,
    `<text x="${LEFT}" y="${top + 26}" font-size="11" fill="#444" ${FONT}>${shareText(region)}</text>`,
  );
  const gridTop = top + REGION_LABEL;
  cellPaths(region, map, gridTop).forEach((d, state) => {
    if (d) out.push(`<path fill="${STATE_COLOURS[state as PageState]}" d="${d}"/>`);
  });
  const width = Math.min(columns, region.cells.length) * cellPx;
  out.push(
    `<rect x="${LEFT - 0.5}" y="${gridTop - 0.5}" width="${width + 1}" height="${rows * rowPx + 1}" ` +
      `fill="none" stroke="#333" stroke-width="1"/>`,
  );
  const rowBytes = BigInt(columns * pagesPerCell * map.pageSize);
  const labelEvery = Math.max(1, Math.ceil(ADDRESS_LABEL_SPACING_PX / rowPx));
  for (let row = 0; row < rows; row += labelEvery) {
    const y = gridTop + row * rowPx;
    out.push(
      `<text x="${LEFT - 6}" y="${y + 9}" font-size="10" text-anchor="end" fill="#333" ${FONT}>` +
        `${address(region.guestAddress + BigInt(row) * rowBytes)}</text>`,
    );
    if (row > 0) out.push(`<path stroke="#333" d="M${LEFT - 4} ${y}h4"/>`);
  }
  return out;
}

function legendSvg(map: TagMap): string[] {
  const states: PageState[] = [PageState.UntaggedRegion, PageState.ZeroTags, PageState.OneTag, PageState.ManyTags];
  if (map.against) states.push(PageState.TagsChanged, PageState.DataChanged);
  const out: string[] = [];
  let x = LEFT;
  for (const state of states) {
    out.push(`<rect x="${x}" y="62" width="14" height="14" fill="${STATE_COLOURS[state]}" stroke="#333" stroke-width="0.5"/>`);
    out.push(`<text x="${x + 19}" y="74" font-size="12" ${FONT}>${PAGE_STATE_NAMES[state]}</text>`);
    x += 26 + PAGE_STATE_NAMES[state].length * 7.3;
  }
  return out;
}

function headerSvg(map: TagMap): string[] {
  const { pagesPerCell } = map.scale;
  const cell =
    pagesPerCell === 1
      ? `1 cell = 1 page (${formatBytes(map.pageSize)})`
      : `1 cell = ${pagesPerCell} pages (${formatBytes(pagesPerCell * map.pageSize)}), ` +
        `coloured by the state most of its pages are in${map.against ? '; changed if any page changed' : ''}`;
  const title = map.against ? `MTE tag map of ${map.source}, changes since ${map.against}` : `MTE tag map of ${map.source}`;
  return [
    `<text x="${LEFT}" y="22" font-size="15" font-weight="bold" ${FONT}>${escapeXml(title)}</text>`,
    `<text x="${LEFT}" y="44" font-size="12" fill="#333" ${FONT}>${escapeXml(cell)}; row addresses at left</text>`,
    ...legendSvg(map),
  ];
}

export function renderTagMapSvg(map: TagMap): string {
  const { columns, cellPx } = map.scale;
  const body: string[] = [...headerSvg(map)];
  let top = TOP;
  for (const region of map.regions) {
    body.push(...regionSvg(region, map, top));
    top += REGION_LABEL + regionRows(region, columns) * rowHeight(region, map) + REGION_GAP;
  }
  const width = LEFT + columns * cellPx + 40;
  const height = Math.max(top, TOP) + 10;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" shape-rendering="crispEdges">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...body,
    `</svg>`,
    '',
  ].join('\n');
}
