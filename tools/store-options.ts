/**
 * What every command that reaches a chunk store shares: the tenant key
 * (--key-file, 32 raw bytes), the S3 endpoint and region options (else the
 * usual AWS environment variables), and opening STORE or STORE/NAME.
 */
import type { Command } from 'commander';
import { ChunkStore, splitSnapshotReference } from '../src/store/chunk-store.js';
import { readKeyFile } from '../src/store/tenant-keys.js';
import { CliError } from './cli-support.js';
import { integerOption } from './units.js';

export interface StoreCommandOptions {
  keyFile?: string;
  endpoint?: string;
  s3Region?: string;
  parallel?: number;
}

export const STORE_HELP = [
  '',
  'STORE is a directory (created by the first push) or s3://bucket/prefix. For S3 the endpoint and',
  'credentials come from --endpoint/--s3-region or AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), AWS_REGION,',
  'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. The key file holds the tenant secret, 32 random bytes',
  '(head -c 32 /dev/urandom > tenant.key): chunks and manifests are encrypted with keys derived from it',
  '(spec/STORE.md); keep it, without it nothing in the store can be read.',
].join('\n');

/** Adds --key-file, --endpoint, --s3-region and --parallel to a store command. */
export function storeOptions(command: Command): Command {
  return command
    .option('--key-file <file>', 'the tenant key: 32 raw bytes (head -c 32 /dev/urandom > K)')
    .option('--endpoint <url>', 'S3 endpoint, e.g. http://127.0.0.1:7480 (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS)')
    .option('--s3-region <name>', 'S3 region (default: AWS_REGION, else us-east-1)')
    .option('--parallel <n>', 'store requests in flight (default 16; 4 for a directory store)', integerOption('--parallel', 1, 256));
}

function secret(options: StoreCommandOptions): Uint8Array {
  if (!options.keyFile) throw new CliError('a chunk store needs --key-file K (32 random bytes: head -c 32 /dev/urandom > K)', 'usage');
  return readKeyFile(options.keyFile);
}

export async function openStore(location: string, options: StoreCommandOptions, create = false): Promise<ChunkStore> {
  return ChunkStore.open(location, secret(options), { create, s3: { endpoint: options.endpoint, region: options.s3Region } });
}

/** STORE/NAME opened: the store and the name. */
export async function openStoreReference(
  reference: string,
  options: StoreCommandOptions,
  create = false,
): Promise<{ store: ChunkStore; name: string }> {
  const { location, name } = splitSnapshotReference(reference);
  return { store: await openStore(location, options, create), name };
}
