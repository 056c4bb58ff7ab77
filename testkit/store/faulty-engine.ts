/**
 * A storage engine that fails on purpose: it passes everything to a real
 * engine until `failAfterPuts` chunk objects were written, then every put
 * fails, as a push killed or cut off half-way would. Counts the puts, so a
 * test can see a second push upload only what is missing.
 */
import type { StoredObject, StoreEngine } from '../../src/store/engine.js';

export class FaultyEngine implements StoreEngine {
  chunkPuts = 0;
  failAfterPuts = Number.POSITIVE_INFINITY;

  constructor(private readonly inner: StoreEngine) {}

  get description(): string {
    return this.inner.description;
  }

  get(key: string): Promise<Uint8Array | null> {
    return this.inner.get(key);
  }

  size(key: string): Promise<number | null> {
    return this.inner.size(key);
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    if (key.startsWith('chunks/')) {
      if (this.chunkPuts >= this.failAfterPuts) throw new Error(`injected failure: put ${key}`);
      this.chunkPuts++;
    }
    await this.inner.put(key, bytes);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }

  list(prefix: string): AsyncIterable<StoredObject> {
    return this.inner.list(prefix);
  }

  close(): void {
    this.inner.close();
  }
}
