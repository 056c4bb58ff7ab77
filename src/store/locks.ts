/**
 * Why `store gc` is safe against a concurrent push (spec/STORE.md, "Garbage
 * collection"). A push reuses a chunk it finds in the store without uploading
 * it again; if gc deleted that chunk (unreferenced until the push writes its
 * manifest) in between, the new manifest would name a missing chunk. So push
 * and gc exclude each other with marker objects: each first writes its own
 * marker (locks/push-... or locks/gc-...), then lists the other kind; the
 * store is strongly consistent for these (a local directory; S3 and Ceph RGW
 * give read-after-write), so of two that overlap at least one sees the
 * other's marker and backs off: a push waits for gc to end, gc gives up and
 * says a push is running. A push renews its marker while it runs; a marker
 * not renewed for MARKER_TTL_MS is a dead process's and is ignored (and
 * removed by gc).
 */
import { randomBytes } from 'node:crypto';
import type { StoreEngine } from './engine.js';
import { StoreError } from './errors.js';

export const LOCKS_PREFIX = 'locks/';
export const MARKER_TTL_MS = 15 * 60 * 1000;
const RENEW_MS = 60 * 1000;

type MarkerKind = 'push' | 'gc';

function parseMarker(key: string): { kind: MarkerKind; timeMs: number } | null {
  const match = /^locks\/(push|gc)-(\d+)-[0-9a-f]+$/.exec(key);
  return match ? { kind: match[1] as MarkerKind, timeMs: Number(match[2]) } : null;
}

/** Live markers of `kind` other than `own`; stale ones are listed apart. */
async function markers(engine: StoreEngine, kind: MarkerKind, own?: string): Promise<{ live: string[]; stale: string[] }> {
  const live: string[] = [];
  const stale: string[] = [];
  const now = Date.now();
  for await (const object of engine.list(LOCKS_PREFIX)) {
    const marker = parseMarker(object.key);
    if (!marker || marker.kind !== kind || object.key === own) continue;
    (now - marker.timeMs > MARKER_TTL_MS ? stale : live).push(object.key);
  }
  return { live, stale };
}

/** A marker this process holds; renewed (a new key, then the old one removed) while held. */
export class HeldMarker {
  private key: string;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly engine: StoreEngine,
    readonly kind: MarkerKind,
  ) {
    this.key = HeldMarker.newKey(kind);
  }

  private static newKey(kind: MarkerKind): string {
    return `${LOCKS_PREFIX}${kind}-${Date.now()}-${randomBytes(8).toString('hex')}`;
  }

  get currentKey(): string {
    return this.key;
  }

  static async take(engine: StoreEngine, kind: MarkerKind): Promise<HeldMarker> {
    const marker = new HeldMarker(engine, kind);
    await engine.put(marker.key, new Uint8Array(0));
    return marker;
  }

  keepAlive(): void {
    this.timer = setInterval(() => {
      this.renewing = this.renewing.then(async () => {
        const next = HeldMarker.newKey(this.kind);
        await this.engine.put(next, new Uint8Array(0));
        const old = this.key;
        this.key = next;
        await this.engine.delete(old);
      });
      this.renewing.catch(() => {});
    }, RENEW_MS);
    this.timer.unref();
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.renewing.catch(() => {});
    await this.engine.delete(this.key);
  }
}

/** Takes the push marker once no gc runs; waits up to `waitMs` for a running gc to end. */
export async function beginPush(engine: StoreEngine, waitMs: number): Promise<HeldMarker> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const marker = await HeldMarker.take(engine, 'push');
    const gc = await markers(engine, 'gc');
    if (gc.live.length === 0) {
      marker.keepAlive();
      return marker;
    }
    await marker.release();
    if (Date.now() >= deadline) {
      throw new StoreError('store-busy', `${engine.description}: a store gc is running (${gc.live[0]}); push again when it is done`);
    }
    await new Promise((settle) => setTimeout(settle, 500));
  }
}

/** Takes the gc marker, or refuses while a push runs. Removes markers of dead processes. */
export async function beginGc(engine: StoreEngine): Promise<HeldMarker> {
  const marker = await HeldMarker.take(engine, 'gc');
  const push = await markers(engine, 'push');
  if (push.live.length) {
    await marker.release();
    throw new StoreError(
      'store-busy',
      `${engine.description}: a push is running (${push.live[0]}); gc would race it, run gc again when it is done`,
    );
  }
  for (const key of push.stale) await engine.delete(key);
  for (const key of (await markers(engine, 'gc', marker.currentKey)).stale) await engine.delete(key);
  return marker;
}
