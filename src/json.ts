/**
 * The one rule by which vmsnap's results become JSON, in the library and in
 * every `--json` output of the CLI (docs/api.md, "JSON"):
 *
 *  - a 64-bit value (a `bigint` in the library: a guest address, a size, a file
 *    offset, a byte count) is a string of its decimal digits, whatever its
 *    magnitude, so that no reader loses precision and a field never changes type;
 *  - a byte array (`Uint8Array`: a snapshot id, tags) is a string of lowercase hex;
 *  - everything else is written as JSON.stringify writes it.
 *
 * Every result object the public API returns carries a `toJSON` by this rule,
 * so `JSON.stringify(summary)` works as is.
 */

/** The version of the shape of vmsnap's JSON outputs; the CLI writes it as `schemaVersion` in each. */
export const JSON_SCHEMA_VERSION = 1;

/** `value` with bigints and byte arrays replaced by the rule above, deeply; other values are shared, not copied. */
export function toJsonValue(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === 'object') {
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function' && !(JSON_RESULT in value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value)) if (field !== undefined && typeof field !== 'function') out[key] = toJsonValue(field);
    return out;
  }
  return value;
}

const JSON_RESULT = Symbol('vmsnap.json-result');

/** Gives `result` a non-enumerable `toJSON` that applies the rule: how the library's result objects are made. */
export function jsonResult<T extends object>(result: T): T {
  Object.defineProperty(result, JSON_RESULT, { value: true, enumerable: false });
  Object.defineProperty(result, 'toJSON', { value: () => toJsonValue(result), enumerable: false });
  return result;
}
