/**
 * `vmsnap migrate send`: the source of a live migration. A guest that keeps
 * running (the simulated guest mutating its data and tags, or the MTE test
 * guest on KVM) is copied in pre-copy rounds driven by the dirty log into a
 * migration stream (docs/migration.md) on standard output, a TCP connection
 * or a Unix socket; it is paused only for the last round and its vCPUs. The
 * source then reports the rounds and a digest of the state it sent, which
 * the destination prints too.
 */
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { ScratchFilesStorageFactory } from '../../src/backends/raw-files/scratch-files.js';
import type { LiveGuest, PrecopyOptions, RoundStats } from '../../src/live/precopy.js';
import { streamLayoutOf } from '../../src/live/precopy.js';
import { type StateDigest, stateDigest } from '../../src/live/state-digest.js';
import { type MigrationSummary, sendMigration } from '../../src/live/stream-sink.js';
import type { Vm } from '../../src/vm/vm.js';
import { MutatingSimulatedGuest } from '../../src/workload/mutating-guest.js';
import { createSimulatedGuest } from '../../src/workload/simulated-guest.js';
import { CliError, EXIT, toJson } from '../cli-support.js';
import { helpAfter } from '../help.js';
import { createProgress, type Progress } from '../progress.js';
import { parseSimGuest, type SimGuestOptions } from '../sim-guest.js';
import { formatBytes, integerOption } from '../units.js';
import { connectTo, type DestinationAnswer, describeEndpoint, destinationAnswer, parseEndpoint } from './migrate-transport.js';

interface SendOptions extends SimGuestOptions {
  sim?: boolean;
  kvm?: boolean;
  fill?: string;
  to: string;
  maxRounds?: number;
  stopAtPages?: number;
  json?: boolean;
  quiet?: boolean;
}

/** A running guest, ready for pre-copy. */
interface MigrationSource {
  readonly vm: Vm;
  readonly guest: LiveGuest;
  readonly description: string;
  readonly details: Readonly<Record<string, unknown>>;
  /** A line on where the guest was when it paused, if the source can tell. */
  pausePoint?(): string;
  close(): Promise<void>;
}

/**
 * The seeded simulated guest, with a mutator that keeps writing words and tags between the copies. Its memory and
 * tags are in scratch files (unlinked, sparse: ScratchFilesStorageFactory), not in this process, so that the
 * sender's memory does not grow with the guest and guests beyond an in-memory slot's limit can be sent.
 */
function simulatedSource(options: SendOptions, progress: Progress): MigrationSource {
  const spec = parseSimGuest(options);
  progress.phase('generating guest');
  const storage = new ScratchFilesStorageFactory();
  let generated: ReturnType<typeof createSimulatedGuest>;
  try {
    generated = createSimulatedGuest({ ...spec, storage, onProgress: (done, total) => progress.update(done, total) });
  } catch (error) {
    try {
      storage.close();
    } catch {
      // The generation's own error says more; the files go with their descriptors either way.
    }
    throw error;
  } finally {
    progress.done();
  }
  const vm = generated.vm;
  const ram = generated.workload.regions.find((region) => region.mte)!;
  const shape = `${spec.sizeMiB} MiB, seed ${spec.seed}, ${spec.pageSize}-byte pages`;
  return {
    vm,
    guest: new MutatingSimulatedGuest(vm, { slot: ram.slot, seed: spec.seed }),
    description: `simulated guest, ${shape}, writing data and tags as it is sent`,
    details: { kind: 'simulated', guestBytes: BigInt(spec.sizeMiB) << 20n, seed: spec.seed, pageSize: spec.pageSize },
    close: async () => {
      vm.close();
      storage.close();
    },
  };
}

function checkSourceOptions(options: SendOptions): void {
  if (options.sim === options.kvm)
    throw new CliError('choose one source: --sim (a simulated guest) or --kvm (the MTE test guest)', 'usage');
  if (options.sim && options.fill !== undefined) throw new CliError('--fill applies to --kvm, not --sim', 'usage');
  if (options.kvm && (options.size !== undefined || options.pageSize !== undefined))
    throw new CliError("--size and --page-size apply to --sim; a KVM guest has this host's page size", 'usage');
}

/** Counts what goes by, for the progress bar. */
function countingStream(progress: Progress): Transform {
  let bytes = 0n;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += BigInt(chunk.length);
      progress.update(bytes);
      callback(null, chunk);
    },
  });
}

/** The destination said no: its reason, as one line. */
function refusal(answer: Extract<DestinationAnswer, { accepted: false }>): CliError {
  return new CliError(`the destination refused the stream: ${answer.message} (${answer.code})`, 'io');
}

/**
 * Sends the stream through a byte counter into `output`. A destination that answers a refusal while the stream still
 * flows stops it at once; one that goes away surfaces as the output's own error (EPIPE, ECONNRESET), reported as
 * its refusal when it said why.
 */
async function send(
  source: MigrationSource,
  output: Writable,
  answering: Promise<DestinationAnswer | null> | undefined,
  precopy: PrecopyOptions,
  progress: Progress,
): Promise<MigrationSummary> {
  const counter = countingStream(progress);
  const piped = pipeline(counter, output, { end: true });
  piped.catch(() => undefined);
  void answering?.then((answer) => {
    if (answer && !answer.accepted) counter.destroy(refusal(answer));
  });
  progress.phase('migrating');
  try {
    const summary = await sendMigration(source.vm, source.guest, counter, precopy).catch(async (error: unknown) => {
      await piped;
      throw error;
    });
    await piped;
    return summary;
  } catch (error) {
    const answer = answering && (await answering);
    if (answer && !answer.accepted) throw refusal(answer);
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EPIPE' || code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
      throw new CliError(
        `the destination closed the stream before it was whole (${code}): it refused it or stopped; see its message`,
        'io',
      );
    }
    throw error;
  } finally {
    progress.done();
  }
}

/** What the destination's answer says of the state it holds: the same as the one sent, or not. */
function checkAnswer(answer: DestinationAnswer | null | undefined, state: StateDigest): { answer?: DestinationAnswer; matches?: boolean } {
  if (answer === undefined) return {};
  if (answer === null) throw new CliError('the destination closed the connection without answering: see its own message', 'io');
  if (!answer.accepted) throw refusal(answer);
  const matches = answer.state.memory === state.memory && answer.state.vcpus === state.vcpus;
  return { answer, matches };
}

function describeRounds(rounds: readonly RoundStats[]): string {
  return rounds.map((round) => `${round.pages}${round.paused ? ' (paused)' : ''}`).join(', ');
}

function describeSent(
  summary: MigrationSummary,
  target: string,
  where: string | undefined,
  state: StateDigest,
  checked: ReturnType<typeof checkAnswer>,
): string[] {
  const lines = [
    `migrated to ${target}${where ? `; the guest ${where}` : ''}`,
    `  ${summary.rounds.length} rounds of ${describeRounds(summary.rounds)} pages, ${formatBytes(summary.bytes)} of memory and tags, ` +
      `stream ${formatBytes(summary.streamBytes)}; downtime ${summary.downtimeMilliseconds.toFixed(1)} ms`,
    `  state sent: memory and tags sha256 ${state.memory}`,
    `              vCPUs sha256 ${state.vcpus}`,
  ];
  const answer = checked.answer;
  if (answer?.accepted) {
    const guest = answer.guest ? `; the resumed guest: ${answer.guest}` : '';
    lines.push(`the destination accepted it: its state ${checked.matches ? 'is the state sent' : 'DIFFERS from the state sent'}${guest}`);
  }
  return lines;
}

async function sendAction(options: SendOptions): Promise<void> {
  checkSourceOptions(options);
  const destination = parseEndpoint(options.to, '--to');
  if (destination.kind === 'stdio' && process.stdout.isTTY)
    throw new CliError('--to -: standard output is a terminal; pipe it into `vmsnap migrate receive`', 'usage');
  if (destination.kind === 'tcp' && destination.port === 0) throw new CliError('--to: a tcp destination needs its port, not 0', 'usage');
  const precopy: PrecopyOptions = { maxRounds: options.maxRounds, stopAtPages: options.stopAtPages };
  const progress = createProgress(options);
  // Standard output may be carrying the stream itself.
  const report = destination.kind === 'stdio' ? process.stderr : process.stdout;
  const people = !options.quiet && !options.json;
  // Connected before the guest is made: a destination that is not there costs no guest generation.
  let output: Writable;
  if (destination.kind === 'stdio') {
    // A reader that goes away surfaces through the pipeline as EPIPE (exit 3), not as an unhandled 'error' event.
    process.stdout.on('error', () => undefined);
    output = process.stdout;
  } else output = await connectTo(destination);
  // Over a socket the destination answers; read from the start, so that a refusal stops the stream at once.
  const answering = output instanceof Socket && destination.kind !== 'stdio' ? destinationAnswer(output) : undefined;
  let source: MigrationSource;
  try {
    source = options.kvm ? await (await import('./migrate-kvm.js')).startKvmSource(options) : simulatedSource(options, progress);
  } catch (error) {
    if (output !== process.stdout) output.destroy();
    throw error;
  }
  try {
    if (people) report.write(`${source.description}\n`);
    const summary = await send(source, output, answering, precopy, progress);
    const state = stateDigest(source.vm, streamLayoutOf(source.vm), summary.vcpus);
    const checked = checkAnswer(answering && (await answering), state);
    const where = source.pausePoint?.();
    const target = describeEndpoint(destination);
    if (options.json && !options.quiet) {
      const { rounds, downtimeMilliseconds, bytes, streamBytes } = summary;
      const answer = checked.answer && { ...checked.answer, stateMatches: checked.matches };
      report.write(
        `${toJson({ source: source.details, destination: target, rounds, downtimeMilliseconds, bytes, streamBytes, state, answer })}\n`,
      );
    } else if (people) {
      report.write(`${describeSent(summary, target, where, state, checked).join('\n')}\n`);
    }
    const guestFailed = checked.answer?.accepted && checked.answer.guest !== undefined && checked.answer.guest !== 'verified';
    if (checked.matches === false || guestFailed) {
      const why =
        checked.matches === false ? 'the state the destination received differs from the state sent' : 'the resumed guest did not verify';
      process.stderr.write(`vmsnap: ${why}\n`);
      process.exitCode = EXIT.differs;
    }
  } finally {
    await source.close();
  }
}

export function registerMigrateSend(migrate: Command): void {
  migrate
    .command('send')
    .description(
      'Send a running guest to `vmsnap migrate receive`: pre-copy rounds driven by the dirty log while it runs, paused only for the last',
    )
    .requiredOption('--to <destination>', 'where the stream goes: - (standard output), tcp:HOST:PORT or unix:PATH (a listening receiver)')
    .option('--sim', 'source: the seeded simulated guest, writing data and tags while it is sent (see --size, --seed, --page-size)')
    .option('--kvm', "source: the MTE test guest on this host's KVM, filling memory and tags while it is sent (see --fill, --seed)")
    .option('--size <bytes>', 'with --sim: guest RAM size (default 256MiB)')
    .option('--seed <n>', "with --sim: workload and mutation seed (default 1); with --kvm: the guest's pattern seed")
    .option('--page-size <bytes>', 'with --sim: host page size, 4096, 16384 or 65536 (default 4096)')
    .option('--fill <bytes>', 'with --kvm: how much memory the guest fills, 1MiB..512MiB (default 4MiB)')
    .option(
      '--max-rounds <n>',
      'rounds sent while the guest runs, the first (all of RAM) included; 0 is stop-and-copy (default 8)',
      integerOption('--max-rounds', 0, 1000),
    )
    .option(
      '--stop-at-pages <n>',
      'pause the guest as soon as a round would send this many pages or fewer (default 16)',
      integerOption('--stop-at-pages', 0, 2 ** 31),
    )
    .option('--json', 'print the rounds, downtime and state digest as JSON (to standard error with --to -)')
    .option('-q, --quiet', 'no progress bar and no summary')
    .addHelpText(
      'after',
      helpAfter([
        'vmsnap migrate send --sim --size 64MiB --seed 7 --to - | vmsnap migrate receive -o guest.vmsnap',
        'vmsnap migrate receive --listen tcp:0.0.0.0:4444 -o guest.vmsnap     # on the destination, then:',
        'vmsnap migrate send --sim --size 64MiB --to tcp:dest-host:4444',
        'vmsnap migrate send --sim --max-rounds 0 --to unix:/run/vmsnap.sock      # stop-and-copy, for comparison',
        "vmsnap migrate send --kvm --fill 16MiB --to - | ssh dest 'vmsnap migrate receive --kvm'",
      ]),
    )
    .action(sendAction);
}
