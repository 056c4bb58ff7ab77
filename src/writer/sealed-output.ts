/**
 * `save --encrypt`: the snapshot's bytes go through a segment sealer
 * (src/io/sealed-file.ts, spec/STORE.md section 8) into the real output (a
 * temporary file renamed on commit, or a stream). `position` stays the plain
 * snapshot's offset, which the index records: readers decrypt before they
 * read, so the offsets are those of the plaintext.
 */
import { SegmentSealer } from '../io/sealed-file.js';
import type { SnapshotOutput } from './output.js';

export class SealedOutput implements SnapshotOutput {
  /** The sealer copies what it is given into its segments. */
  readonly keepsBytes = false;
  private plain = 0n;
  private readonly sealer: SegmentSealer;

  constructor(
    private readonly inner: SnapshotOutput,
    secret: Uint8Array,
  ) {
    this.sealer = new SegmentSealer(secret, (bytes) => inner.write(bytes));
  }

  get position(): bigint {
    return this.plain;
  }

  get description(): string {
    return this.inner.description;
  }

  /** Bytes written to the real output: header, sealed segments and their tags. */
  get storedBytes(): bigint {
    return this.inner.position;
  }

  async write(bytes: Uint8Array): Promise<void> {
    await this.sealer.write(bytes);
    this.plain += BigInt(bytes.length);
  }

  async commit(): Promise<void> {
    await this.sealer.finish();
    await this.inner.commit();
  }

  abort(): void {
    this.inner.abort();
  }
}
