/**
 * `vmsnap migrate receive`: the destination of a live migration. It reads a
 * migration stream from standard input or from the one connection it accepts
 * on `--listen`, restores it as the frames arrive, and only once the END
 * frame confirmed the whole stream: keeps the simulated VM (and saves it with
 * `-o`), puts raw RAM and tag files in place (`--ram-out`), or resumes the MTE
 * test guest in a new KVM VM (`--kvm`), tags written before its vCPU runs. A
 * damaged, reordered or cut stream is refused with the stream offset and the
 * reason, exit 1: no VM runs, no file appears, existing files stay as they were.
 */
import type { Socket } from 'node:net';
import type { Command } from 'commander';
import type { RawFilesVm } from '../../src/backends/raw-files/raw-files-vm.js';
import { VmsnapError } from '../../src/format/errors.js';
import { resolveOutput } from '../../src/io/output-file.js';
import { type MigrationReceipt, receiveMigration } from '../../src/live/migration-receiver.js';
import { stateDigest } from '../../src/live/state-digest.js';
import { TagCopyError } from '../../src/vm/tag-copy.js';
import type { Vm, VmFactory } from '../../src/vm/vm.js';
import { type SaveSummary, saveSnapshot } from '../../src/writer/save.js';
import { CliError, describeSystemError, EXIT, toJson } from '../cli-support.js';
import { helpAfter } from '../help.js';
import { createProgress, type Progress } from '../progress.js';
import { type RawTargetFiles, type RawTargetOptions, rawTargetFiles } from '../raw-files-options.js';
import { ScratchSimulatedVmFactory } from '../scratch-vm.js';
import { formatBytes, hex, integerOption } from '../units.js';
import { answerSource, describeEndpoint, listenOn, parseEndpoint } from './migrate-transport.js';

interface ReceiveOptions extends RawTargetOptions {
  listen?: string;
  output?: string;
  kvm?: boolean;
  threads?: number;
  json?: boolean;
  quiet?: boolean;
}

type Target = 'simulated' | 'raw-files' | 'kvm';

function checkTargetOptions(options: ReceiveOptions): Target {
  const rawOnly = (['tagsOut', 'layoutOut', 'tagLayout'] as const).find((key) => options[key] !== undefined);
  if (rawOnly && !options.ramOut)
    throw new CliError(`--${rawOnly.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --ram-out FILE`, 'usage');
  const chosen = [options.output !== undefined && '-o', options.ramOut !== undefined && '--ram-out', options.kvm && '--kvm'].filter(
    Boolean,
  );
  if (chosen.length > 1) throw new CliError(`choose one destination: ${chosen.join(' or ')}`, 'usage');
  if (options.force && !options.output && !options.ramOut) throw new CliError('--force needs -o FILE or --ram-out FILE', 'usage');
  if (options.threads !== undefined && options.output === undefined) throw new CliError('--threads applies to -o FILE', 'usage');
  return options.kvm ? 'kvm' : options.ramOut ? 'raw-files' : 'simulated';
}

/** Counts what arrives, for the progress bar. The input is not destroyed at its end: a socket still answers the source. */
async function* counted(input: NodeJS.ReadableStream | Socket, progress: Progress): AsyncGenerator<Uint8Array | string> {
  let bytes = 0n;
  const chunks = 'iterator' in input ? input.iterator({ destroyOnReturn: false }) : input;
  for await (const chunk of chunks as AsyncIterable<Uint8Array | string>) {
    bytes += BigInt(chunk.length);
    progress.update(bytes);
    yield chunk;
  }
}

/** The stream's source: standard input, or the first connection on --listen (its address printed once it listens). */
async function openInput(options: ReceiveOptions): Promise<{ input: NodeJS.ReadableStream | Socket; from: string }> {
  if (options.listen === undefined) {
    if (process.stdin.isTTY)
      throw new CliError('standard input is a terminal: pipe `vmsnap migrate send --to -` into it, or --listen', 'usage');
    return { input: process.stdin, from: 'standard input' };
  }
  const endpoint = parseEndpoint(options.listen, '--listen');
  if (endpoint.kind === 'stdio') return openInput({ ...options, listen: undefined });
  const listener = await listenOn(endpoint);
  const address = describeEndpoint(listener.address);
  // A script that asked for port 0 needs the port whatever -q says; standard output is kept for the summary.
  if (!options.quiet || (endpoint.kind === 'tcp' && endpoint.port === 0)) process.stderr.write(`listening on ${address}\n`);
  try {
    return { input: await listener.accept(), from: address };
  } catch (error) {
    listener.close();
    throw error;
  }
}

function factoryFor(
  target: Target,
  raw: RawTargetFiles | undefined,
  kvm: VmFactory<Vm> | undefined,
  scratch: ScratchSimulatedVmFactory | undefined,
): VmFactory<Vm> {
  if (target === 'raw-files') return raw!.factory;
  if (target === 'kvm') return kvm!;
  return scratch!;
}

interface Outcome {
  readonly saved?: SaveSummary;
  readonly verdict?: { readonly status: string; readonly text: string; readonly report: unknown };
}

/** What becomes of a whole stream's VM: saved, written to raw files, resumed, or kept in memory only. */
async function finish(
  target: Target,
  received: MigrationReceipt<Vm>,
  options: ReceiveOptions,
  progress: Progress,
  raw: RawTargetFiles | undefined,
): Promise<Outcome> {
  const { vm } = received;
  if (target === 'raw-files') {
    (vm as RawFilesVm).markTaggedRegions(received.layout.slots.map((slot) => ({ slot: slot.slot, mte: slot.tagged })));
    // Flushed, the layout written, and only then put in place of the targets.
    vm.close();
    raw!.commit();
    return {};
  }
  if (target === 'kvm') {
    const { report, verdict } = (await import('./migrate-kvm.js')).resumeToVerdict(vm);
    return { verdict: { status: report.status, text: verdict, report } };
  }
  if (options.output === undefined) return {};
  progress.phase('saving');
  try {
    const saved = await saveSnapshot(vm, options.output, {
      force: options.force,
      threads: options.threads,
      annotations: { 'migration.rounds': String(received.rounds), 'migration.source': received.layout.backend },
      onProgress: (p) => progress.update(p.guestBytesDone, p.guestBytesTotal),
    });
    return { saved };
  } finally {
    progress.done();
  }
}

async function receiveAction(options: ReceiveOptions): Promise<void> {
  const target = checkTargetOptions(options);
  const scratch = target === 'simulated' ? new ScratchSimulatedVmFactory() : undefined;
  try {
    await receiveInto(target, options, scratch);
  } finally {
    // The VM is closed by now, received or refused: its scratch files go.
    scratch?.close();
  }
}

async function receiveInto(target: Target, options: ReceiveOptions, scratch: ScratchSimulatedVmFactory | undefined): Promise<void> {
  // Every output is checked (and raw files made under temporary names) before anything is read.
  if (options.output !== undefined && options.output !== '-') resolveOutput(options.output, { force: options.force, streamable: true });
  if (options.output === '-' && process.stdout.isTTY)
    throw new CliError('-o -: standard output is a terminal; redirect it to a file or a pipe', 'usage');
  const kvm = target === 'kvm' ? (await import('./migrate-kvm.js')).kvmTargetFactory() : undefined;
  const raw = options.ramOut ? rawTargetFiles({ ...options, ramOut: options.ramOut }, []) : undefined;
  const report = options.output === '-' ? process.stderr : process.stdout;
  const progress = createProgress(options);
  const opened = await openInput(options).catch((error: unknown) => {
    raw?.abort();
    throw error;
  });
  // Over a socket the source hears the outcome (migrate-transport.ts); a pipe has no way back.
  const socket = opened.input === process.stdin ? undefined : (opened.input as Socket);
  const refuse = async (error: unknown): Promise<never> => {
    raw?.abort();
    if (socket) {
      const named = error instanceof VmsnapError ? error : describeSystemError(error);
      const message = named?.message ?? (error instanceof Error ? error.message : String(error));
      await answerSource(socket, { accepted: false, code: named?.code ?? 'internal', message });
    }
    throw error;
  };
  let received: MigrationReceipt<Vm>;
  try {
    progress.phase('receiving');
    // On failure receiveMigration closed the half-filled VM: nothing of it runs; temporary raw files go, targets stay.
    received = await receiveMigration(counted(opened.input, progress), factoryFor(target, raw, kvm, scratch)).finally(() =>
      progress.done(),
    );
  } catch (error) {
    if (error instanceof TagCopyError && options.ramOut && !options.tagsOut) {
      const hint = `the stream carries MTE tags (the first at IPA ${hex(error.guestAddress)}); give --tags-out FILE to receive them`;
      return refuse(new CliError(hint, 'usage'));
    }
    return refuse(error);
  } finally {
    // Standard input is done with either way: a refused stream's source sees its pipe closed.
    if (!socket) process.stdin.destroy();
  }
  let outcome: Outcome;
  let state: ReturnType<typeof stateDigest>;
  try {
    // Digested before the guest resumes and changes it: the state the source sent.
    state = stateDigest(received.vm, received.layout, received.vcpus);
    outcome = await finish(target, received, options, progress, raw);
  } catch (error) {
    received.vm.close();
    return refuse(error);
  }
  received.vm.close();
  if (socket) await answerSource(socket, { accepted: true, state, ...(outcome.verdict ? { guest: outcome.verdict.status } : {}) });
  const summary = { rounds: received.rounds, pages: received.pages, streamBytes: received.bytes };
  if (options.json && !options.quiet) {
    const result = { from: opened.from, target, source: received.layout.backend, ...summary, state };
    report.write(`${toJson({ ...result, saved: outcome.saved, guest: outcome.verdict?.report })}\n`);
  } else if (!options.quiet) {
    const into =
      target === 'kvm'
        ? 'a new KVM VM, resumed'
        : target === 'raw-files'
          ? `raw files ${[options.ramOut, options.tagsOut].filter(Boolean).join(' + ')} (vCPU registers not kept)`
          : 'a simulated VM';
    const lines = [
      `received a ${received.layout.backend} guest from ${opened.from} into ${into}: ` +
        `${received.rounds} rounds, ${received.pages} pages, stream ${formatBytes(received.bytes)}`,
      `  state received: memory and tags sha256 ${state.memory}`,
      `                  vCPUs sha256 ${state.vcpus}`,
    ];
    if (outcome.saved)
      lines.push(`saved to ${outcome.saved.destination}: ${formatBytes(outcome.saved.fileBytes)} in ${outcome.saved.chunks} chunks`);
    if (outcome.verdict) lines.push(`guest: ${outcome.verdict.text}`);
    report.write(`${lines.join('\n')}\n`);
  }
  if (outcome.verdict && outcome.verdict.status !== 'verified') process.exitCode = EXIT.differs;
}

export function registerMigrateReceive(migrate: Command): void {
  migrate
    .command('receive')
    .description(
      'Receive a guest from `vmsnap migrate send`, restoring as the stream arrives; ' +
        'a damaged or cut stream is refused and nothing is kept or run',
    )
    .option(
      '--listen <address>',
      'take the stream from one connection on tcp:HOST:PORT (port 0: any, printed) or unix:PATH (default: standard input)',
    )
    .option('-o, --output <file>', 'save the received guest as a snapshot file (- for standard output), only once the whole stream arrived')
    .option('--ram-out <file>', 'restore into raw files instead: the RAM image to create (raw files keep no vCPU registers)')
    .option('--tags-out <file>', 'with --ram-out: the tag file to create')
    .option('--tag-layout <layout>', 'with --tags-out: byte (one tag per byte) or packed (two per byte); default byte')
    .option('--layout-out <file>', 'with --ram-out: write the layout JSON (docs/raw-layout.md)')
    .option(
      '--kvm',
      "restore into a new VM on this host's KVM and resume the MTE test guest; exits 4 unless it verifies every tag and word",
    )
    .option('--force', 'replace existing output files')
    .option(
      '--threads <n>',
      'with -o: compression threads (default: one per core, one more with the system libzstd; 0: the main thread)',
      integerOption('--threads', 0, 256),
    )
    .option('--json', 'print the rounds, the state digest and what became of the guest as JSON')
    .option('-q, --quiet', 'no progress bar and no summary (a --listen port 0 is still printed)')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap migrate send --sim --size 64MiB --to - | vmsnap migrate receive -o guest.vmsnap',
        'vmsnap migrate receive --listen tcp:127.0.0.1:0 --json     # prints "listening on tcp:127.0.0.1:PORT" first',
        'vmsnap migrate receive --listen unix:/run/vmsnap.sock --ram-out guest.ram --tags-out guest.tags --layout-out guest.json',
        "ssh source 'vmsnap migrate send --kvm --to -' | vmsnap migrate receive --kvm",
        'vmsnap migrate receive -o guest.vmsnap < damaged.stream    # exits 1, names the frame offset; no guest.vmsnap',
      ]),
    )
    .action(receiveAction);
}
