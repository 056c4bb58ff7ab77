/**
 * Verification of a snapshot without restoring it: a report of every problem
 * found, with codes and locations, for people and (as JSON) for scripts.
 *
 * Both read modes apply the same rules (src/reader/sections.ts), so a file
 * and the same bytes through a pipe get the same verdict. From a file,
 * everything but the chunks' contents (header, trailer, index, every section
 * header and chunk header, the metadata, vCPUs and blobs) is checked when the
 * file is opened; a fault there ends the check. Each chunk is then decoded and
 * its checksums, lengths, bitmap and pages checked; a bad chunk is reported
 * and the check goes on with the next one. From a pipe the first fault ends
 * the check, since a pipe cannot be resynchronised.
 */
import { Readable } from 'node:stream';
import { isPagePresent } from '../format/chunk.js';
import { SnapshotFormatError, VmsnapError } from '../format/errors.js';
import type { RamChunk, SnapshotRegion, TagChunk } from '../format/model.js';
import { jsonResult } from '../json.js';
import type { SnapshotEvent } from '../reader/events.js';
import { type FileSnapshot, openSnapshot } from '../reader/open.js';
import { readSnapshotStream, StreamIdleError } from '../reader/stream.js';

export interface VerifyProblem {
  readonly code: string;
  readonly severity: 'error' | 'warning';
  readonly message: string;
  readonly section?: string;
  /** File offset of the fault. */
  readonly offset?: bigint;
  readonly region?: number;
  /** Guest physical address concerned. */
  readonly guestAddress?: bigint;
}

export interface VerifyStats {
  regions: number;
  chunks: number;
  ramPagesStored: number;
  ramPagesZero: number;
  tagPagesStored: number;
  tagPagesZero: number;
  vcpus: number;
  blobs: number;
  fileBytes: bigint;
}

export interface VerifyReport {
  readonly ok: boolean;
  /** The path verified, '-' for standard input, null for a stream the caller handed over. */
  readonly source: string | null;
  readonly formatVersion?: string;
  readonly problems: VerifyProblem[];
  readonly stats: VerifyStats;
}

export interface VerifyOptions {
  threads?: number;
  /** From a stream: how long to wait for the next bytes before failing with code "stream-idle" (StreamReadOptions). */
  idleTimeoutMs?: number;
  onProgress?: (progress: { bytesDone: bigint; bytesTotal: bigint | null }) => void;
}

export function problemFrom(error: unknown): VerifyProblem {
  if (error instanceof SnapshotFormatError) {
    const { section, offset, region, guestAddress } = error.location;
    return {
      code: error.code,
      severity: 'error',
      message: error.message,
      section,
      offset: offset === undefined ? undefined : BigInt(offset),
      region,
      guestAddress,
    };
  }
  if (error instanceof StreamIdleError) return { code: error.code, severity: 'error', message: error.message, offset: error.offset };
  if (error instanceof VmsnapError) return { code: error.code, severity: 'error', message: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { code: (error as NodeJS.ErrnoException)?.code === undefined ? 'error' : 'io-error', severity: 'error', message };
}

function emptyStats(): VerifyStats {
  return {
    regions: 0,
    chunks: 0,
    ramPagesStored: 0,
    ramPagesZero: 0,
    tagPagesStored: 0,
    tagPagesZero: 0,
    vcpus: 0,
    blobs: 0,
    fileBytes: 0n,
  };
}

/** Counts and cross-checks what the chunks, vCPUs and blobs hold. */
class Tally {
  readonly stats = emptyStats();
  readonly problems: VerifyProblem[] = [];
  private readonly blobNames = new Set<string>();

  chunk(chunk: RamChunk | TagChunk): void {
    this.stats.chunks++;
    let present = 0;
    for (let page = 0; page < chunk.pageCount; page++) if (isPagePresent(chunk.present, page)) present++;
    if ('data' in chunk) {
      this.stats.ramPagesStored += present;
      this.stats.ramPagesZero += chunk.pageCount - present;
    } else {
      this.stats.tagPagesStored += present;
      this.stats.tagPagesZero += chunk.pageCount - present;
    }
  }

  /** Duplicate vCPU and register ids are not counted here: both readers refuse them (src/reader/sections.ts, format/metadata.ts). */
  vcpu(): void {
    this.stats.vcpus++;
  }

  blob(name: string): void {
    this.stats.blobs++;
    if (this.blobNames.has(name))
      this.problems.push({
        code: 'duplicate-blob',
        severity: 'warning',
        message: `blob "${name}" appears twice (the format allows it); restore hands both to the VMM in file order`,
        section: 'BLOB',
      });
    this.blobNames.add(name);
  }

  regions(regions: readonly SnapshotRegion[]): void {
    this.stats.regions = regions.length;
    if (regions.length === 0)
      this.problems.push({ code: 'no-regions', severity: 'warning', message: 'the snapshot holds no memory regions' });
  }
}

async function verifyFile(path: string, options: VerifyOptions): Promise<VerifyReport> {
  const tally = new Tally();
  let snapshot: FileSnapshot;
  try {
    snapshot = await openSnapshot(path, { threads: options.threads });
  } catch (error) {
    return jsonResult({ ok: false, source: path, problems: [problemFrom(error)], stats: tally.stats });
  }
  try {
    tally.stats.fileBytes = snapshot.fileSize;
    tally.regions(snapshot.regions);
    // Decode a few chunks ahead so every worker is busy; report each bad chunk and go on.
    const ahead = 4;
    // Each chunk is counted and let go: it is read into memory the reader reuses.
    const table = snapshot.chunkTable;
    // The reads in flight by position: a few, not a slot per chunk of the file.
    const reads = new Map<number, Promise<{ chunk: RamChunk | TagChunk; release(): void }>>();
    const start = (i: number) => {
      if (i < table.length && !reads.has(i)) {
        const read = snapshot.readTransientChunk(table.chunkAt(i));
        read.catch(() => {});
        reads.set(i, read);
      }
    };
    for (let i = 0; i < table.length; i++) {
      for (let j = i; j < i + ahead; j++) start(j);
      try {
        const { chunk, release } = await reads.get(i)!;
        tally.chunk(chunk);
        release();
      } catch (error) {
        tally.problems.push(problemFrom(error));
      }
      reads.delete(i);
      options.onProgress?.({ bytesDone: table.offsetOf(i) + table.lengthOf(i), bytesTotal: snapshot.fileSize });
    }
    // Every VCPU and BLOB payload was read and checked when the file was opened.
    for (const _vcpu of snapshot.vcpuSummaries) tally.vcpu();
    for (const blob of snapshot.blobSummaries) tally.blob(blob.name);
  } finally {
    await snapshot.close();
  }
  return report(path, tally, snapshot.header.major, snapshot.header.minor);
}

async function verifyStream(
  stream: Readable | NodeJS.ReadableStream | AsyncIterable<Uint8Array>,
  source: string | null,
  options: VerifyOptions,
): Promise<VerifyReport> {
  const tally = new Tally();
  let version: [number, number] | undefined;
  let bytesDone = 0n;
  try {
    for await (const event of readSnapshotStream(stream, {
      threads: options.threads,
      idleTimeoutMs: options.idleTimeoutMs,
      transient: true,
    }) as AsyncIterable<SnapshotEvent>) {
      if (event.type === 'start') {
        version = [event.header.major, event.header.minor];
        tally.regions(event.metadata.regions);
      } else if (event.type === 'chunk') {
        tally.chunk(event.chunk);
        event.release?.();
        bytesDone = event.chunk.offset + event.chunk.length;
        options.onProgress?.({ bytesDone, bytesTotal: null });
      } else if (event.type === 'vcpu') tally.vcpu();
      else if (event.type === 'blob') tally.blob(event.blob.name);
    }
  } catch (error) {
    tally.problems.push(problemFrom(error));
  }
  tally.stats.fileBytes = bytesDone;
  return report(source, tally, version?.[0], version?.[1]);
}

function report(source: string | null, tally: Tally, major?: number, minor?: number): VerifyReport {
  return jsonResult({
    ok: !tally.problems.some((p) => p.severity === 'error'),
    source,
    formatVersion: major === undefined ? undefined : `${major}.${minor}`,
    problems: tally.problems,
    stats: tally.stats,
  });
}

/** Verifies a snapshot file (random access), '-' (standard input) or a stream (front to back). */
export async function verifySnapshot(
  source: string | Readable | NodeJS.ReadableStream,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  if (typeof source !== 'string') return verifyStream(source, null, options);
  if (source === '-') return verifyStream(process.stdin, '-', options);
  return verifyFile(source, options);
}

/** Verifies bytes already in memory, front to back (used for small files and tests). */
export function verifyBytes(bytes: Uint8Array, options: VerifyOptions = {}): Promise<VerifyReport> {
  return verifyStream(Readable.from([bytes]), 'memory', options);
}
