/**
 * What the commands that read or write chains of diff snapshots share: the
 * `--chain A,B,...` option (oldest first, the last one being the snapshot
 * named), finding a diff's parents beside it otherwise, and the options that
 * fix what a save records (`--snapshot-id`, `--created-ms`), so that a
 * direct save can match a flattened chain byte for byte.
 */
import { findChain, readSnapshotIdentity } from '../src/reader/chain.js';
import { CliError } from './cli-support.js';

/** The chain that ends in `last`: `--chain` as given (its last entry must be `last`, or `last` is appended), else found beside it. */
export function resolveChain(last: string, chainOption: string | undefined): string[] {
  if (chainOption === undefined) return findChain(last);
  const chain = chainOption.split(',').filter((part) => part.length > 0);
  if (chain.length === 0) throw new CliError('--chain: name the snapshots, oldest first, separated by commas', 'usage');
  if (chain[chain.length - 1] !== last) chain.push(last);
  return chain;
}

/** A diff's parents (the chain without its last link); for a full snapshot, none. */
export function parentsOf(chain: readonly string[]): string[] {
  return chain.slice(0, -1);
}

/** True when `path` is a diff snapshot (read from its first sections only). */
export function isDiffFile(path: string): boolean {
  return readSnapshotIdentity(path).diffParent !== null;
}

export function parseSnapshotId(text: string): Uint8Array {
  if (!/^[0-9a-fA-F]{32}$/.test(text)) throw new CliError(`--snapshot-id: 32 hex digits (16 bytes), got "${text}"`, 'usage');
  return Uint8Array.from(Buffer.from(text, 'hex'));
}

export function parseCreatedMs(text: string): bigint {
  if (!/^[0-9]{1,20}$/.test(text) || BigInt(text) >= 1n << 64n) {
    throw new CliError(`--created-ms: milliseconds since 1970 (0..2^64-1), got "${text}"`, 'usage');
  }
  return BigInt(text);
}
