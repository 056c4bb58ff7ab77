/**
 * How every command writes a file, so that nothing is lost (issue 9's rule):
 *
 *  - a file is written under a temporary name beside its target, fsynced, and
 *    renamed over the target, and the directory is fsynced; nothing is
 *    deleted or truncated before that rename, so a failure or a kill -9 at
 *    any moment leaves the target as it was or complete;
 *  - an existing file is replaced only when the caller says `force`, and never
 *    when it is one of the command's own inputs (the same inode);
 *  - a FIFO, character or block device is written through as a stream and
 *    never replaced, or refused where the output needs seeking;
 *  - a symbolic link is followed: the file it points to is replaced
 *    atomically and the link stays;
 *  - new files are 0600: they hold guest memory or what is derived from it;
 *  - temporary files are named `.NAME.vmsnap.tmp-PID-RANDOM`; one whose
 *    process is gone is removed by the next output into the same directory.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  createWriteStream,
  constants as fsConstants,
  fsyncSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  type Stats,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { VmsnapError } from '../format/errors.js';

export type OutputErrorCode = 'output-exists' | 'output-is-input' | 'output-is-directory' | 'output-not-seekable';

/** An output the command refuses to write, before it has touched anything. */
export class OutputError extends VmsnapError {
  declare readonly code: OutputErrorCode;
  constructor(
    code: OutputErrorCode,
    readonly path: string,
    detail: string,
  ) {
    super(code, 'usage', `${path}: ${detail}`);
  }
}

export interface OutputOptions {
  /** Replace an existing regular file. */
  readonly force?: boolean;
  /** Files the command reads: the output is never one of them, whatever `force` says. */
  readonly inputs?: readonly string[];
  /** Write a FIFO or device through as a stream (true), or refuse it because the output needs seeking. */
  readonly streamable?: boolean;
}

/** Where an output goes: a regular file (new or replaced, at its resolved path), or a stream to open and write. */
export type OutputTarget = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'stream'; readonly path: string };

function statOrNull(path: string, follow: boolean): Stats | null {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** The path a write lands on: a symbolic link's final target, even a dangling one's (40 hops, as the kernel's limit). */
function resolveLinks(path: string): string {
  let current = resolve(path);
  for (let hops = 0; hops < 40 && statOrNull(current, false)?.isSymbolicLink(); hops++) {
    current = resolve(dirname(current), readlinkSync(current));
  }
  return current;
}

function sameFile(a: Stats, b: Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** Decides, before anything is written, where `target` goes and whether the command may write it. */
export function resolveOutput(target: string, options: OutputOptions = {}): OutputTarget {
  const path = resolveLinks(target);
  const existing = statOrNull(path, true);
  if (existing === null) return { kind: 'file', path };
  for (const input of options.inputs ?? []) {
    const read = statOrNull(input, true);
    if (read && sameFile(read, existing))
      throw new OutputError('output-is-input', target, 'is also an input of this command; write elsewhere');
  }
  if (existing.isDirectory()) throw new OutputError('output-is-directory', target, 'is a directory; name a file');
  if (existing.isFIFO() || existing.isCharacterDevice() || existing.isBlockDevice() || existing.isSocket()) {
    if (options.streamable) return { kind: 'stream', path: target };
    throw new OutputError('output-not-seekable', target, 'is a FIFO or device, and this output needs a seekable file');
  }
  if (!options.force) throw new OutputError('output-exists', target, 'exists; pass --force to replace it');
  return { kind: 'file', path };
}

const TEMPORARY = /^\..+\.vmsnap\.tmp-(\d+)-[0-9a-f]{8}$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the temporary files that killed vmsnap processes left in `directory`; returns their names. */
export function removeStaleTemporaries(directory: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    return removed;
  }
  for (const name of names) {
    const match = TEMPORARY.exec(name);
    if (!match || Number(match[1]) === process.pid || processAlive(Number(match[1]))) continue;
    try {
      unlinkSync(join(directory, name));
      removed.push(name);
    } catch {
      // Another run removed it first.
    }
  }
  return removed;
}

/** Temporary files of this process still open, removed if it is interrupted by a signal. */
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

/** `error` (an operating-system error, which names no path for a write or an fsync) naming the file it is about. */
export function namingFile(error: unknown, path: string): unknown {
  if (error instanceof Error && (error as NodeJS.ErrnoException).path === undefined) Object.assign(error, { path });
  return error;
}

/** A new file under a temporary name beside `finalPath`, that becomes `finalPath` only on commit. */
export class TemporaryFile {
  readonly path: string;
  readonly fd: number;
  private finished = false;

  constructor(readonly finalPath: string) {
    removeStaleTemporaries(dirname(finalPath));
    this.path = join(dirname(finalPath), `.${basename(finalPath)}.vmsnap.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      // O_EXCL: never write through a file or link someone else placed at the temporary name.
      this.fd = openSync(this.path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    } catch (error) {
      // Name the user's target, not the temporary name they never asked for.
      throw Object.assign(error as NodeJS.ErrnoException, { syscall: 'create', path: finalPath });
    }
    openTemporaries.add(this.path);
    removeTemporariesOnSignal();
  }

  /** Makes the file durable and puts it in place of the target. */
  commit(): void {
    try {
      fsyncSync(this.fd);
    } catch (error) {
      throw namingFile(error, this.finalPath);
    }
    closeSync(this.fd);
    this.finished = true;
    renameSync(this.path, this.finalPath);
    openTemporaries.delete(this.path);
    syncDirectory(dirname(this.finalPath));
  }

  /** Throws the file away; the target is left as it was. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    try {
      closeSync(this.fd);
    } finally {
      openTemporaries.delete(this.path);
      try {
        unlinkSync(this.path);
      } catch {
        // Nothing to remove.
      }
    }
  }
}

/** Makes a rename in `directory` durable. */
function syncDirectory(directory: string): void {
  const fd = openSync(directory, fsConstants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `bytes` (a small output: an SVG map, a layout) to `destination` by the rule above. */
export async function writeOutputFile(destination: string, bytes: Uint8Array, options: OutputOptions = {}): Promise<void> {
  const target = resolveOutput(destination, { ...options, streamable: true });
  if (target.kind === 'stream') {
    await pipeline([bytes], createWriteStream(target.path, { flags: 'a' }));
    return;
  }
  const file = new TemporaryFile(target.path);
  try {
    for (let done = 0; done < bytes.length; ) done += writeSync(file.fd, bytes, done, bytes.length - done);
    file.commit();
  } catch (error) {
    file.abort();
    throw namingFile(error, destination);
  }
}
