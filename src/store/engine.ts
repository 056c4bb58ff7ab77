/**
 * A storage engine: the few operations the chunk store needs from wherever
 * its objects live (a local directory, an S3 bucket). Keys are '/'-separated
 * relative names (spec/STORE.md, "Objects"). Every put is atomic: a reader
 * sees the whole object or none, so an interrupted push never leaves half an
 * object behind.
 */

export interface StoredObject {
  readonly key: string;
  readonly size: number;
}

export interface StoreEngine {
  /** "directory /srv/snaps" or "s3://bucket/prefix": for messages. */
  readonly description: string;
  /** Requests worth having in flight when the caller does not say (ChunkStore.parallel); default 16. */
  readonly parallel?: number;
  /** The object's bytes, or null when there is none. */
  get(key: string): Promise<Uint8Array | null>;
  /** Its size, or null when there is none (one HEAD, no body). */
  size(key: string): Promise<number | null>;
  /** Writes the whole object atomically, replacing any. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Removes the object; a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<StoredObject>;
  close(): void;
}
