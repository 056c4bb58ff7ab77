/**
 * `npm run bench:store` (issue 12): a fleet of generated guests that share a
 * base image and differ in a few percent of their RAM (src/workload/
 * fleet-guest.ts), saved as snapshot files, then pushed into the chunk store
 * on the local directory engine and on a Ceph RADOS Gateway started for the
 * run (S3), and restored from it. It reports stored bytes against the sum of
 * the files (the dedup ratio), push and restore throughput against copying
 * or uploading/downloading the plain files (locally with the file system, on
 * S3 with the same SDK), and the peak RSS of each vmsnap process.
 *
 * push and restore run as `vmsnap` child processes, one per guest, timed from
 * outside, each reporting its own peak RSS on exit. Restore writes raw RAM
 * and tag files (the CLI's target that holds no guest in memory) and is
 * compared once, in this process, with the regenerated guest.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { copyFile, open } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { restoreSnapshot } from '../src/reader/restore.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { StoredSnapshot } from '../src/store/stored-snapshot.js';
import { ComparingTarget } from '../src/validate/comparing-target.js';
import { FleetGuest } from '../src/workload/fleet-guest.js';
import { saveSnapshot } from '../src/writer/save.js';
import { type CephGateway, startCephGateway } from '../testkit/store/ceph-rgw.js';

const MiB = 1024 * 1024;
const VMSNAP = fileURLToPath(new URL('../tools/vmsnap.js', import.meta.url));

interface Options {
  guests: string;
  size: string;
  differ: string;
  seed: string;
  restores: string;
  s3: boolean;
  dir?: string;
  json?: boolean;
}

interface Run {
  ms: number;
  peakRss: number;
  json: Record<string, unknown>;
}

/** A script that runs the CLI and prints its peak RSS on exit (a file, not -e: worker threads inherit node's flags). */
let wrapperPath: string | undefined;
function rssWrapper(dir: string): string {
  wrapperPath ??= join(dir, 'vmsnap-rss.mjs');
  writeFileSync(
    wrapperPath,
    `process.on('exit', () => process.stderr.write('\\nmaxrss ' + process.resourceUsage().maxRSS + '\\n'));\n` +
      `await import(${JSON.stringify(VMSNAP)});\n`,
  );
  return wrapperPath;
}

/** Runs the CLI, timed from outside, with its peak RSS. */
function vmsnap(args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const started = performance.now();
  const run = spawnSync(process.execPath, [wrapperPath!, ...args, '--json'], { encoding: 'utf8', env, maxBuffer: 64 * MiB });
  const ms = performance.now() - started;
  if (run.status !== 0) throw new Error(`vmsnap ${args.join(' ')} failed (${run.status}): ${run.stderr}`);
  const rss = /maxrss (\d+)/.exec(run.stderr);
  return { ms, peakRss: rss ? Number(rss[1]) * 1024 : 0, json: JSON.parse(run.stdout) };
}

function mbps(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000);
}

interface EngineResult {
  engine: string;
  files: number;
  fileBytes: number;
  guestBytes: number;
  storedBytes: number;
  dedupRatio: number;
  pushMs: number;
  plainUploadMs: number;
  restores: number;
  restoreMs: number;
  restoreFileBytes: number;
  plainDownloadMs: number;
  pushPeakRss: number;
  restorePeakRss: number;
}

async function copyDurably(from: string, to: string): Promise<void> {
  await copyFile(from, to);
  const handle = await open(to, 'r');
  await handle.sync();
  await handle.close();
}

async function readAll(path: string): Promise<void> {
  for await (const _ of createReadStream(path, { highWaterMark: 4 * MiB }));
}

async function benchEngine(
  engine: string,
  store: string,
  files: string[],
  names: string[],
  guestBytes: number,
  restores: number,
  dir: string,
  keyFile: string,
  env: NodeJS.ProcessEnv,
  plain: { upload(file: string, i: number): Promise<void>; download(i: number): Promise<void> },
): Promise<EngineResult> {
  let pushMs = 0;
  let pushPeakRss = 0;
  for (let i = 0; i < files.length; i++) {
    const run = vmsnap(['push', files[i], store, '--key-file', keyFile, '--name', names[i], '-q'], env);
    pushMs += run.ms;
    pushPeakRss = Math.max(pushPeakRss, run.peakRss);
    process.stderr.write(
      `  ${engine}: pushed ${names[i]}: ${run.json.chunksUploaded} of ${run.json.chunks} chunks uploaded, ` +
        `${(run.ms / 1000).toFixed(1)} s\n`,
    );
  }
  const stats = vmsnap(['store', 'stats', store, '--key-file', keyFile], env).json;
  let plainUploadMs = 0;
  for (let i = 0; i < files.length; i++) {
    const started = performance.now();
    await plain.upload(files[i], i);
    plainUploadMs += performance.now() - started;
  }
  let restoreMs = 0;
  let restorePeakRss = 0;
  let plainDownloadMs = 0;
  let restoreFileBytes = 0;
  for (let i = 0; i < restores; i++) {
    const ram = join(dir, 'restored.ram');
    const tags = join(dir, 'restored.tags');
    const run = vmsnap(
      ['restore', `${store}/${names[i]}`, '--key-file', keyFile, '--ram-out', ram, '--tags-out', tags, '--force', '-q'],
      env,
    );
    restoreMs += run.ms;
    restorePeakRss = Math.max(restorePeakRss, run.peakRss);
    restoreFileBytes += statSync(files[i]).size;
    rmSync(ram, { force: true });
    rmSync(tags, { force: true });
    const started = performance.now();
    await plain.download(i);
    plainDownloadMs += performance.now() - started;
  }
  const fileBytes = files.reduce((sum, file) => sum + statSync(file).size, 0);
  return {
    engine,
    files: files.length,
    fileBytes,
    guestBytes,
    storedBytes: Number(stats.storedBytes),
    dedupRatio: fileBytes / Number(stats.storedBytes),
    pushMs,
    plainUploadMs,
    restores,
    restoreMs,
    restoreFileBytes,
    plainDownloadMs,
    pushPeakRss,
    restorePeakRss,
  };
}

function table(results: EngineResult[], guests: number, sizeMiB: number, differ: number): string {
  const lines = [
    `${guests} guests of ${sizeMiB} MiB RAM (+4 MiB flash), ${differ}% of RAM their own (in 256 KiB extents), 1 MiB chunks, ` +
      `${availableParallelism()} cores`,
    '',
    '| engine | sum of files | stored | dedup ratio | push (MiB/s of files) | plain upload ' +
      '| restore (MiB/s of files) | plain download | peak RSS push / restore |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.engine} | ${(r.fileBytes / MiB).toFixed(0)} MiB | ${(r.storedBytes / MiB).toFixed(0)} MiB | ${r.dedupRatio.toFixed(2)} | ` +
        `${mbps(r.fileBytes, r.pushMs).toFixed(0)} | ${mbps(r.fileBytes, r.plainUploadMs).toFixed(0)} | ` +
        `${mbps(r.restoreFileBytes, r.restoreMs).toFixed(0)} | ${mbps(r.restoreFileBytes, r.plainDownloadMs).toFixed(0)} | ` +
        `${(r.pushPeakRss / MiB).toFixed(0)} / ${(r.restorePeakRss / MiB).toFixed(0)} MiB |`,
    );
  }
  return lines.join('\n');
}

async function main(options: Options): Promise<void> {
  const guests = Number(options.guests);
  const sizeMiB = Number(options.size.replace(/MiB$/i, ''));
  const differ = Number(options.differ);
  const seed = Number(options.seed);
  const restores = Math.min(Number(options.restores), guests);
  const dir = mkdtempSync(join(options.dir ?? tmpdir(), 'vmsnap-store-bench-'));
  let gateway: CephGateway | undefined;
  try {
    rssWrapper(dir);
    const keyFile = join(dir, 'tenant.key');
    writeFileSync(keyFile, randomBytes(32));
    const files: string[] = [];
    const names: string[] = [];
    const fleet = (guest: number) => new FleetGuest({ sizeMiB, seed, guest, differPercent: differ, flashMiB: 4 });
    process.stderr.write(`generating ${guests} guests of ${sizeMiB} MiB as snapshot files in ${dir}\n`);
    for (let i = 0; i < guests; i++) {
      names.push(`guest-${i}`);
      files.push(join(dir, `guest-${i}.vmsnap`));
      await saveSnapshot(fleet(i), files[i]);
    }
    const guestBytes = guests * (sizeMiB + 4) * MiB;
    const results: EngineResult[] = [];

    const plainDir = join(dir, 'plain');
    mkdirSync(plainDir);
    results.push(
      await benchEngine('local directory', join(dir, 'store'), files, names, guestBytes, restores, dir, keyFile, process.env, {
        upload: (file, i) => copyDurably(file, join(plainDir, `${i}.vmsnap`)),
        download: (i) => readAll(join(plainDir, `${i}.vmsnap`)),
      }),
    );
    rmSync(plainDir, { recursive: true, force: true });

    // The restored guest is the fleet guest, page for page and granule for granule.
    const key = new Uint8Array(readFileSync(keyFile));
    const store = await ChunkStore.open(join(dir, 'store'), key);
    const check = await restoreSnapshot(await StoredSnapshot.open(store, names[guests - 1]), {
      backend: 'comparison',
      createVm: () => new ComparingTarget(fleet(guests - 1)),
    });
    const comparison = check.vm.finish();
    store.close();
    if (!comparison.equal)
      throw new Error(`restored ${names[guests - 1]} differs from the guest: ${JSON.stringify(comparison.differences[0])}`);
    process.stderr.write(`  ${names[guests - 1]} restored from the local store equals the guest in every page and granule\n`);

    if (options.s3) {
      gateway = await startCephGateway({ objectStore: 'bluestore', bluestoreBytes: Math.max(16 * 1024 ** 3, guestBytes * 3) });
      const credentials = { accessKeyId: gateway.accessKeyId, secretAccessKey: gateway.secretAccessKey };
      const client = new S3Client({
        region: 'us-east-1',
        endpoint: gateway.endpoint,
        forcePathStyle: true,
        credentials,
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      await client.send(new CreateBucketCommand({ Bucket: 'fleet' }));
      await client.send(new CreateBucketCommand({ Bucket: 'plain' }));
      const env = {
        ...process.env,
        AWS_ENDPOINT_URL: gateway.endpoint,
        AWS_ACCESS_KEY_ID: gateway.accessKeyId,
        AWS_SECRET_ACCESS_KEY: gateway.secretAccessKey,
        AWS_REGION: 'us-east-1',
      };
      results.push(
        await benchEngine('Ceph RGW (S3)', 's3://fleet/snaps', files, names, guestBytes, restores, dir, keyFile, env, {
          upload: async (file, i) => {
            await client.send(
              new PutObjectCommand({
                Bucket: 'plain',
                Key: `${i}.vmsnap`,
                Body: createReadStream(file),
                ContentLength: statSync(file).size,
              }),
            );
          },
          download: async (i) => {
            const out = await client.send(new GetObjectCommand({ Bucket: 'plain', Key: `${i}.vmsnap` }));
            for await (const _ of out.Body as AsyncIterable<Uint8Array>);
          },
        }),
      );
      client.destroy();
    }
    if (options.json) process.stdout.write(`${JSON.stringify({ guests, sizeMiB, differ, results }, null, 2)}\n`);
    else process.stdout.write(`${table(results, guests, sizeMiB, differ)}\n`);
  } finally {
    gateway?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const program = new Command('store-bench')
  .description('The chunk store on a fleet of similar guests: dedup ratio, push and restore throughput, peak RSS')
  .option('--guests <n>', 'guests in the fleet', '16')
  .option('--size <MiB>', 'RAM per guest, in MiB', '512')
  .option('--differ <percent>', 'percent of RAM each guest has of its own', '3')
  .option('--seed <n>', 'the base image seed', '1')
  .option('--restores <n>', 'guests restored (each writes its raw files)', '4')
  .option('--no-s3', 'skip the Ceph gateway')
  .option('--dir <path>', 'where the files go (default: the temporary directory)')
  .option('--json', 'print the results as JSON');
program.parse();
await main(program.opts<Options>());
