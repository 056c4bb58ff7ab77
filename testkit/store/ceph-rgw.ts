/**
 * A throwaway single-node Ceph cluster with a RADOS Gateway on 127.0.0.1,
 * from Debian's packages (ceph-mon ceph-osd radosgw ceph-common), for the
 * S3 tier of the tests and the store bench: the measured recipe of
 * shared/reference/ceph-rgw-lab.md. Everything lives in one short directory
 * (its own ceph.conf, fsid, cephx keyrings, the mon's data, one OSD, logs,
 * pid files); daemons write pid files and stop() kills exactly those PIDs,
 * then removes the directory. No mgr, no systemd, no containers.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export interface CephGateway {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly directory: string;
  /** Kills the daemons it started (by their pid files) and removes its directory. */
  stop(): void;
}

export interface CephGatewayOptions {
  /** memstore (data in the OSD's memory, faster start) or bluestore on a sparse file (default memstore). */
  readonly objectStore?: 'memstore' | 'bluestore';
  /** bluestore: the size of its sparse file (default 16 GiB). */
  readonly bluestoreBytes?: number;
}

const DAEMON_NAMES = ['mon.a', 'osd.0', 'client.rgw.vmsnap'];

/** Whether the Ceph programs the gateway needs are installed. */
export function cephInstalled(): boolean {
  return ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'monmaptool', 'ceph-authtool'].every(
    (program) => spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0,
  );
}

function portFree(port: number): Promise<boolean> {
  return new Promise((settle) => {
    const server = createServer();
    server.once('error', () => settle(false));
    server.listen(port, '127.0.0.1', () => server.close(() => settle(true)));
  });
}

/** A free port below the kernel's ephemeral range (an outgoing connection could take one inside it). */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    if (await portFree(port)) return port;
  }
  throw new Error('no free port found for the Ceph gateway');
}

function run(program: string, args: string[], input?: string): string {
  return execFileSync(program, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 });
}

async function waitFor(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not up yet.
    }
    if (Date.now() > deadline) throw new Error(`Ceph gateway: ${what} did not come up within ${timeoutMs / 1000} s`);
    await new Promise((settle) => setTimeout(settle, 200));
  }
}

/** Bluestore on a sparse file it creates itself, with a small fixed cache (one node, two cores). */
function bluestoreSettings(bytes: number): string {
  return [
    'bluestore_block_create = true',
    `bluestore_block_size = ${bytes}`,
    'bluestore_cache_autotune = false',
    'bluestore_cache_size = 134217728',
  ].join('\n');
}

function configuration(dir: string, fsid: string, monPort: number, rgwPort: number, options: CephGatewayOptions): string {
  const bluestore = options.objectStore === 'bluestore';
  return `[global]
fsid = ${fsid}
mon_host = v2:127.0.0.1:${monPort}
public_addr = 127.0.0.1
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
ms_bind_msgr1 = false
ms_bind_msgr2 = true
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
mon_mgr_mkfs_grace = 31536000
mon_warn_on_pool_no_redundancy = false
run_dir = ${dir}/run
pid_file = ${dir}/run/$name.pid
admin_socket = ${dir}/run/$name.asok
log_file = ${dir}/log/$name.log
[mon]
mon_data = ${dir}/mon/$cluster-$id
keyring = ${dir}/mon.keyring
[osd]
osd_data = ${dir}/osd/$cluster-$id
keyring = ${dir}/osd/$cluster-$id/keyring
osd_objectstore = ${bluestore ? 'bluestore' : 'memstore'}
${bluestore ? bluestoreSettings(options.bluestoreBytes ?? 16 * 1024 ** 3) : 'memstore_device_bytes = 8589934592'}
[client.admin]
keyring = ${dir}/admin.keyring
[client.rgw.vmsnap]
keyring = ${dir}/rgw.keyring
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw_data = ${dir}/rgw
`;
}

function killDaemons(dir: string): void {
  const pids: number[] = [];
  for (const name of DAEMON_NAMES) {
    const file = join(dir, 'run', `${name}.pid`);
    if (!existsSync(file)) continue;
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 1) pids.push(pid);
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  const deadline = Date.now() + 5000;
  for (const pid of pids) {
    for (;;) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      if (Date.now() > deadline) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
        break;
      }
      spawnSync('sleep', ['0.05']);
    }
  }
}

/** Starts the cluster and its gateway; on any failure stops what it started and throws with the gateway's log tail. */
export async function startCephGateway(options: CephGatewayOptions = {}): Promise<CephGateway> {
  // Admin socket paths over 107 bytes are disabled: keep the directory short.
  const dir = mkdtempSync('/tmp/vrgw-');
  try {
    for (const sub of ['run', 'log', 'mon', 'osd/ceph-0', 'rgw']) mkdirSync(join(dir, sub), { recursive: true });
    const [monPort, rgwPort] = [await freePort(), await freePort()];
    const fsid = randomUUID();
    const conf = join(dir, 'ceph.conf');
    writeFileSync(conf, configuration(dir, fsid, monPort, rgwPort, options));
    const c = ['-c', conf];
    run('ceph-authtool', ['--create-keyring', join(dir, 'mon.keyring'), '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    run('ceph-authtool', [
      '--create-keyring',
      join(dir, 'admin.keyring'),
      '--gen-key',
      '-n',
      'client.admin',
      '--cap',
      'mon',
      'allow *',
      '--cap',
      'osd',
      'allow *',
      '--cap',
      'mgr',
      'allow *',
    ]);
    run('ceph-authtool', [join(dir, 'mon.keyring'), '--import-keyring', join(dir, 'admin.keyring')]);
    run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, join(dir, 'monmap')]);
    run('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap'), '--keyring', join(dir, 'mon.keyring')]);
    run('ceph-mon', [...c, '-i', 'a']);
    await waitFor('the monitor', 30_000, () => {
      run('ceph', [...c, '--connect-timeout', '5', 'mon', 'stat']);
      return true;
    });

    const osdUuid = randomUUID();
    const osdKey = run('ceph-authtool', ['--gen-print-key']).trim();
    const osdId = run('ceph', [...c, 'osd', 'new', osdUuid, '-i', '-'], JSON.stringify({ cephx_secret: osdKey })).trim();
    if (osdId !== '0') throw new Error(`Ceph gateway: expected osd.0, got osd.${osdId}`);
    run('ceph-authtool', ['--create-keyring', join(dir, 'osd/ceph-0/keyring'), '--name', 'osd.0', '--add-key', osdKey]);
    run('ceph-osd', [...c, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    run('ceph-osd', [...c, '-i', '0']);
    await waitFor('osd.0', 60_000, () => /osd\.0 up\s+in/.test(run('ceph', [...c, 'osd', 'dump'])));

    run('ceph', [
      ...c,
      'auth',
      'get-or-create',
      'client.rgw.vmsnap',
      'mon',
      'allow rw',
      'osd',
      'allow rwx',
      '-o',
      join(dir, 'rgw.keyring'),
    ]);
    run('radosgw', [...c, '-n', 'client.rgw.vmsnap']);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await waitFor('the RADOS Gateway', 60_000, async () => (await fetch(`${endpoint}/`)).status === 200);
    const accessKeyId = randomBytes(10).toString('hex').toUpperCase();
    const secretAccessKey = randomBytes(20).toString('hex');
    run('radosgw-admin', [
      ...c,
      '-n',
      'client.admin',
      'user',
      'create',
      '--uid=vmsnap',
      '--display-name=vmsnap',
      `--access-key=${accessKeyId}`,
      `--secret-key=${secretAccessKey}`,
    ]);
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      directory: dir,
      stop: () => {
        killDaemons(dir);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    const log = join(dir, 'log', 'client.rgw.vmsnap.log');
    const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '';
    const stderr = (error as { stderr?: string }).stderr ?? '';
    killDaemons(dir);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`Ceph gateway did not start: ${(error as Error).message}\n${stderr}\n${tail}`, { cause: error });
  }
}
