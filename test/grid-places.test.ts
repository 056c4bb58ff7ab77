/** GridPlaces: list positions by slot and first page, for the chunk starts of a grid only. */
import { describe, expect, it } from 'vitest';
import { GridPlaces } from '../src/format/chunk-grid.js';

describe('GridPlaces', () => {
  it('finds each chunk start it was given, in any slot, and nothing else', () => {
    const places = new GridPlaces(5);
    places.set(0, 0, 0);
    places.set(0, 5, 1);
    places.set(3, 10, 7);
    expect(places.get(0, 0)).toBe(0);
    expect(places.get(0, 5)).toBe(1);
    expect(places.get(3, 10)).toBe(7);
    expect(places.get(3, 5)).toBeUndefined();
    expect(places.get(0, 3)).toBeUndefined(); // inside a chunk, not a start
    expect(places.get(1, 0)).toBeUndefined();
    expect(places.get(0, 1000)).toBeUndefined();
  });
});
