/**
 * The writer's knobs as `save` and `demo` take them: --level, --chunk-size,
 * --threads, --annotate key=value. Checked here so that a bad value is a usage
 * error naming the option, not a SaveError from deep in the writer.
 */
import { MAX_CHUNK_CONTENT, MAX_ZSTD_LEVEL } from '../src/format/constants.js';
import type { SaveOptions } from '../src/writer/save.js';
import { CliError } from './cli-support.js';
import { formatBytes } from './units.js';

export interface WriterFlags {
  level?: number;
  chunkSize?: bigint;
  threads?: number;
  annotate?: string[];
}

/** Commander collector for a repeatable option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseAnnotations(pairs: readonly string[]): Record<string, string> {
  const annotations: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new CliError(`--annotate: "${pair}" is not key=value`, 'usage');
    annotations[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return annotations;
}

function pagesPerChunk(chunkSize: bigint, pageSize: number): number {
  if (chunkSize % BigInt(pageSize) !== 0n || chunkSize === 0n) {
    throw new CliError(`--chunk-size: ${chunkSize} bytes is not a whole number of ${pageSize}-byte pages`, 'usage');
  }
  if (chunkSize > BigInt(MAX_CHUNK_CONTENT))
    throw new CliError(`--chunk-size: at most ${formatBytes(MAX_CHUNK_CONTENT)} (the format's limit)`, 'usage');
  return Number(chunkSize / BigInt(pageSize));
}

/** The writer options for a guest of `pageSize`-byte pages; annotations from the source come first, the user's win. */
export function writerOptions(flags: WriterFlags, pageSize: number, sourceAnnotations: Record<string, string>): SaveOptions {
  if (flags.level !== undefined && (flags.level < 0 || flags.level > MAX_ZSTD_LEVEL)) {
    throw new CliError(`--level: 0 (store) to ${MAX_ZSTD_LEVEL}, got ${flags.level}`, 'usage');
  }
  return {
    level: flags.level,
    pagesPerChunk: flags.chunkSize === undefined ? undefined : pagesPerChunk(flags.chunkSize, pageSize),
    threads: flags.threads,
    annotations: { ...sourceAnnotations, ...parseAnnotations(flags.annotate ?? []) },
  };
}
