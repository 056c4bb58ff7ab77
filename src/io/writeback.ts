/**
 * Starts writeback while a large file is still being written. Without it the
 * kernel holds a whole guest's worth of dirty pages and the final fsync
 * writes them all at the end; with an asynchronous fdatasync every few tens
 * of MiB (on libuv's thread pool), the device writes while the caller keeps
 * decoding or compressing, and the final fsync only flushes the tail.
 */
import { fdatasync } from 'node:fs';

const WRITEBACK_STEP = 32 * 1024 * 1024;

export class WritebackPacer {
  private sinceLast = 0;
  private inFlight = false;

  constructor(private readonly fd: number) {}

  /** Counts bytes written to the file and starts a writeback when enough have piled up. */
  wrote(bytes: number): void {
    this.sinceLast += bytes;
    if (this.sinceLast < WRITEBACK_STEP || this.inFlight) return;
    this.sinceLast = 0;
    this.inFlight = true;
    // Errors surface in the caller's final fsync, which must follow anyway.
    fdatasync(this.fd, () => {
      this.inFlight = false;
    });
  }
}
