/**
 * The S3 tier (`npm run test:s3`): the chunk store's cases (testkit/store/
 * store-cases.ts) on the S3 engine, against a real Ceph RADOS Gateway that
 * this file starts on 127.0.0.1 as a throwaway single-node cluster and stops
 * after (testkit/store/ceph-rgw.ts), plus the CLI against it with the
 * endpoint and credentials from the AWS environment variables. Without the
 * Ceph packages it skips and says what to install, unless CI requires it
 * (VMSNAP_REQUIRE_S3=1 or VMSNAP_REQUIRE_TOOLS=1): there a gateway that does
 * not start is a failure. `npm test` leaves it out (it takes the gateway's
 * start); set VMSNAP_S3=1 to run it.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Engine } from '../src/store/s3-engine.js';
import { type CephGateway, cephInstalled, startCephGateway } from '../testkit/store/ceph-rgw.js';
import { storeChainCases } from '../testkit/store/chain-cases.js';
import { storeCases } from '../testkit/store/store-cases.js';

const enabled = process.env.VMSNAP_S3 === '1';
const required = process.env.VMSNAP_REQUIRE_S3 === '1' || process.env.VMSNAP_REQUIRE_TOOLS === '1';
const installed = cephInstalled();
const skipReason = !enabled
  ? 'the S3 tier runs with `npm run test:s3` (VMSNAP_S3=1)'
  : 'Ceph is not installed: apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common';
const skip = !enabled || (!installed && !required);

const BUCKET = 'vmsnap-test';
let gateway: CephGateway | undefined;
let next = 0;
const dir = mkdtempSync(join(tmpdir(), 'vmsnap-s3-'));

function s3Options() {
  return { endpoint: gateway!.endpoint, accessKeyId: gateway!.accessKeyId, secretAccessKey: gateway!.secretAccessKey };
}

describe.skipIf(skip)(skip ? `S3 tier (skipped: ${skipReason})` : 'S3 tier against a Ceph RADOS Gateway', () => {
  beforeAll(async () => {
    gateway = await startCephGateway();
    const client = new S3Client({
      region: 'us-east-1',
      endpoint: gateway.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: gateway.accessKeyId, secretAccessKey: gateway.secretAccessKey },
    });
    await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    client.destroy();
  }, 180_000);

  afterAll(() => {
    gateway?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  storeCases('Ceph RGW (S3)', { engine: () => new S3Engine(BUCKET, `cases-${next++}/`, s3Options()) });
  storeChainCases('Ceph RGW (S3)', { engine: () => new S3Engine(BUCKET, `cases-${next++}/`, s3Options()) });

  it('the CLI pushes, lists, restores and pulls through s3:// with the AWS environment variables', () => {
    const cli = join(resolve(import.meta.dirname, '..'), 'dist/tools/vmsnap.js');
    const key = join(dir, 'tenant.key');
    writeFileSync(key, randomBytes(32));
    const env = {
      ...process.env,
      AWS_ENDPOINT_URL: gateway!.endpoint,
      AWS_ACCESS_KEY_ID: gateway!.accessKeyId,
      AWS_SECRET_ACCESS_KEY: gateway!.secretAccessKey,
      AWS_REGION: 'us-east-1',
    };
    const vmsnap = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 120_000 });
    const file = join(dir, 'guest.vmsnap');
    const store = `s3://${BUCKET}/cli`;
    expect(vmsnap('save', '--sim', '--size', '8MiB', '--seed', '5', '-q', '-o', file).status).toBe(0);
    const push = vmsnap('push', file, store, '--key-file', key, '--json');
    expect(push.status, push.stderr).toBe(0);
    expect(JSON.parse(push.stdout).name).toBe('guest');
    const saved = vmsnap('save', '--sim', '--size', '8MiB', '--seed', '5', '-q', '-o', `${store}/direct`, '--key-file', key);
    expect(saved.status, saved.stderr).toBe(0);
    const ls = vmsnap('store', 'ls', store, '--key-file', key, '--json');
    expect(JSON.parse(ls.stdout).snapshots.map((s: { name: string }) => s.name)).toEqual(['direct', 'guest']);
    const stats = JSON.parse(vmsnap('store', 'stats', store, '--key-file', key, '--json').stdout);
    expect(stats.dedupRatio).toBeGreaterThan(1.9);
    const restore = vmsnap('restore', `${store}/direct`, '--key-file', key, '--compare-sim', '--json');
    expect(restore.status, restore.stderr).toBe(0);
    expect(JSON.parse(restore.stdout).comparison.equal).toBe(true);
    const pulled = join(dir, 'pulled.vmsnap');
    expect(vmsnap('pull', `${store}/guest`, '-o', pulled, '--key-file', key, '-q').status).toBe(0);
    expect(vmsnap('restore', pulled, '--compare-sim', '-q').status).toBe(0);
    expect(vmsnap('store', 'verify', store, '--key-file', key, '-q').status).toBe(0);
    // The wrong key: refused before anything is read.
    const other = join(dir, 'other.key');
    writeFileSync(other, randomBytes(32));
    const refused = vmsnap('restore', `${store}/guest`, '--key-file', other);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/another key/);
  }, 300_000);
});
