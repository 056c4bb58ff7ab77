/**
 * A read-only array whose elements are made when they are read.
 *
 * A snapshot's index tables (its chunks, a diff's changed-page maps) are kept
 * as typed-array columns (grid-table.ts), not as an object per entry: a 16 GiB
 * guest has 32 thousand chunks per snapshot, and objects with two BigInts
 * each held 4.5 MiB per snapshot and 11 MiB for a chain of two, which V8's
 * heap then grew around (issue 10). The public API gives them as arrays
 * (`SnapshotReader.chunks`, `changedPageMaps`): this view keeps that contract
 * (indexing, `length`, iteration, every `ReadonlyArray` method, `Array.isArray`)
 * over the columns. Each read makes a fresh element: compare elements by
 * their fields, never by identity.
 */

/** `extras` are properties the view has besides the array's (readers of the columns that make no element). */
export function arrayView<T, E extends object>(length: () => number, element: (i: number) => T, extras: E): ReadonlyArray<T> & E {
  const position = (key: string | symbol): number => {
    if (typeof key !== 'string') return -1;
    const first = key.charCodeAt(0);
    if (first < 48 || first > 57) return -1;
    const i = Number(key);
    return Number.isInteger(i) && i < length() && String(i) === key ? i : -1;
  };
  const readOnly = (): boolean => false;
  // The target is an empty array, so that Array.isArray holds and the array methods (which read through the traps) are found.
  const handler: ProxyHandler<T[]> = {
    get(target, key, receiver) {
      const i = position(key);
      if (i >= 0) return element(i);
      if (key === 'length') return length();
      if (typeof key === 'string' && Object.hasOwn(extras, key)) return (extras as Record<string, unknown>)[key];
      return Reflect.get(target, key, receiver);
    },
    has(target, key) {
      return position(key) >= 0 || (typeof key === 'string' && Object.hasOwn(extras, key)) || Reflect.has(target, key);
    },
    getOwnPropertyDescriptor(target, key) {
      const i = position(key);
      if (i >= 0) return { value: element(i), writable: false, enumerable: true, configurable: true };
      if (key === 'length') return { value: length(), writable: true, enumerable: false, configurable: false };
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    ownKeys() {
      return [...Array.from({ length: length() }, (_, i) => String(i)), 'length'];
    },
    set: readOnly,
    defineProperty: readOnly,
    deleteProperty: readOnly,
  };
  return new Proxy<T[]>([], handler) as unknown as ReadonlyArray<T> & E;
}
