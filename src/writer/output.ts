/**
 * Where a snapshot's bytes go. A file is written under a temporary name in the
 * same directory, fsynced, then renamed over the target, so that a save that
 * fails or is killed never leaves a half-written file where a good snapshot is
 * expected and never damages an existing one. Mode 0600: guest RAM holds
 * secrets. A stream (standard output, a pipe) is written in order with
 * backpressure.
 */

import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { WritebackPacer } from '../io/writeback.js';

export interface SnapshotOutput {
  /** Bytes written so far: the file offset of the next write. */
  readonly position: bigint;
  readonly description: string;
  write(bytes: Uint8Array): Promise<void>;
  /** Makes the snapshot durable and visible at its final place. */
  commit(): Promise<void>;
  /** Throws the partial output away; the target is left as it was. */
  abort(): void;
}

/** Temporary files still open, removed if the process is interrupted. */
const openTemporaries = new Set<string>();
let signalHandlersInstalled = false;

function removeTemporariesOnSignal(): void {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const path of openTemporaries) {
        try {
          unlinkSync(path);
        } catch {
          // Already gone.
        }
      }
      process.kill(process.pid, signal);
    });
  }
}

export class FileOutput implements SnapshotOutput {
  private fd: number;
  private written = 0n;
  private readonly temporary: string;
  private finished = false;
  private readonly writeback: WritebackPacer;

  constructor(readonly target: string) {
    this.temporary = join(dirname(target), `.${basename(target)}.vmsnap.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    // O_EXCL: never write through a file or link someone else placed at the temporary name.
    try {
      this.fd = openSync(this.temporary, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    } catch (error) {
      // Name the user's target, not the temporary name they never asked for.
      throw Object.assign(error as NodeJS.ErrnoException, { syscall: 'create', path: target });
    }
    this.writeback = new WritebackPacer(this.fd);
    openTemporaries.add(this.temporary);
    removeTemporariesOnSignal();
  }

  get position(): bigint {
    return this.written;
  }

  get description(): string {
    return this.target;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done);
    this.written += BigInt(bytes.length);
    this.writeback.wrote(bytes.length);
  }

  async commit(): Promise<void> {
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.finished = true;
    renameSync(this.temporary, this.target);
    openTemporaries.delete(this.temporary);
    // Make the rename itself durable.
    const directory = openSync(dirname(this.target), fsConstants.O_RDONLY);
    try {
      fsyncSync(directory);
    } finally {
      closeSync(directory);
    }
  }

  abort(): void {
    if (this.finished) return;
    this.finished = true;
    try {
      closeSync(this.fd);
    } finally {
      openTemporaries.delete(this.temporary);
      try {
        unlinkSync(this.temporary);
      } catch {
        // Nothing to remove.
      }
    }
  }
}

export class StreamOutput implements SnapshotOutput {
  private written = 0n;
  /** The first write error; later writes fail with it at once. */
  private failure: Error | undefined;
  /** Rejects the write waiting for 'drain', if any. */
  private waiting: ((error: Error) => void) | undefined;
  private readonly onError = (error: Error) => this.fail(error);
  /** Settles when the last write so far has been handed to the OS (or failed). */
  private lastWrite: Promise<void> = Promise.resolve();

  constructor(
    private readonly stream: Writable | NodeJS.WritableStream,
    readonly description = 'stream',
  ) {
    // One listener for the output's lifetime, not one per write (which piled up past MaxListeners).
    stream.on('error', this.onError);
  }

  get position(): bigint {
    return this.written;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.waiting?.(error);
    this.waiting = undefined;
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    this.written += BigInt(bytes.length);
    let written!: () => void;
    this.lastWrite = new Promise((settle) => (written = settle));
    return new Promise((resolve, reject) => {
      // A failed write (the reader of a pipe went away) reports through the callback before any 'error' event;
      // when this write already resolved, the failure surfaces on the next one.
      const flushed = this.stream.write(bytes, (error?: Error | null) => {
        if (error) this.fail(error);
        written();
      });
      if (flushed) resolve();
      else {
        this.waiting = reject;
        this.stream.once('drain', () => {
          this.waiting = undefined;
          resolve();
        });
      }
    });
  }

  private detach(): void {
    this.stream.removeListener('error', this.onError);
  }

  async commit(): Promise<void> {
    // Standard output is never ended: the process may still print to it. A write that failed after it resolved fails the save here.
    await Promise.race([this.lastWrite, new Promise((settle) => this.stream.once('close', settle))]);
    this.detach();
    if (this.failure) throw this.failure;
  }

  abort(): void {
    this.detach();
  }
}
