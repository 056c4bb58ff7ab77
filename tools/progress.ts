/**
 * A one-line progress bar on standard error. It draws only when standard
 * error is a terminal and --quiet is off, so pipes, logs and CI get nothing
 * but the final report.
 *
 * Work goes in named phases ("generating guest", "saving", "comparing"). A
 * phase draws its first frame the moment it starts, and a timer redraws it
 * while no update comes, so the elapsed time keeps moving and a slow step is
 * never silent. Updates in between are throttled, so that a fast save does
 * not spend its time painting.
 */
import { formatBytes, formatRate } from './units.js';

/** Throttle for updates: at most one redraw per this many milliseconds. */
const REDRAW_MS = 100;
/** Redraw at least this often while a phase runs, updates or not. */
const REFRESH_MS = 250;
const MAX_BAR_WIDTH = 30;
/** Narrower than this and the bar is left out: the numbers matter more. */
const MIN_BAR_WIDTH = 8;
/** Room kept for what follows the bar, as in "  50% 258 MiB/516 MiB  160 MB/s  3s elapsed  ETA 3s". */
const NUMBERS_WIDTH = 56;

/** Where frames go: process.stderr, or a test's fake. */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressOptions {
  quiet?: boolean;
  /** Default process.stderr. */
  stream?: ProgressStream;
  /** Monotonic milliseconds; default performance.now. Injected so tests need no real time. */
  now?: () => number;
}

export interface Progress {
  /** Starts a phase and draws it at once. `total` null or omitted: not known yet. */
  phase(name: string, total?: bigint | null): void;
  /** Bytes done in the current phase; `total` null: unknown (a pipe), drawn as bytes and rate only; omitted: the phase's. */
  update(done: bigint, total?: bigint | null): void;
  /** Erases the bar and stops redrawing, so that what is printed next starts on a clean line. */
  done(): void;
}

interface PhaseState {
  readonly name: string;
  readonly started: number;
  done: bigint;
  total: bigint | null;
}

class TerminalProgress implements Progress {
  private current: PhaseState | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly stream: ProgressStream,
    private readonly now: () => number,
  ) {}

  phase(name: string, total: bigint | null = null): void {
    this.current = { name, started: this.now(), done: 0n, total };
    this.draw();
    // unref: a bar must never keep the process alive.
    this.timer ??= setInterval(() => this.draw(), REFRESH_MS).unref();
  }

  update(done: bigint, total?: bigint | null): void {
    const phase = this.current;
    if (!phase) return;
    phase.done = done;
    if (total !== undefined) phase.total = total;
    const finished = phase.total !== null && done >= phase.total;
    if (this.now() - this.lastDraw < REDRAW_MS && !finished) return;
    this.draw();
  }

  done(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.current = undefined;
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }

  private draw(): void {
    if (!this.current) return;
    this.lastDraw = this.now();
    this.stream.write(`\r${frame(this.current, this.lastDraw, this.stream.columns || 80)}\x1b[K`);
    this.drawn = true;
  }
}

/**
 * One line, never wider than the terminal: a wrapped line would defeat the carriage return. The bar's width
 * depends on the phase's name only, so that it does not jitter as the numbers after it change length; the
 * numbers win when both do not fit.
 */
function frame(phase: PhaseState, now: number, columns: number): string {
  const elapsed = Math.max(0, now - phase.started);
  const { done, total } = phase;
  const known = total !== null && total > 0n;
  const fraction = known ? Math.min(1, Number(done) / Number(total)) : 0;
  const numbers: string[] = [];
  if (known) numbers.push(`${(fraction * 100).toFixed(0)}% ${formatBytes(done)}/${formatBytes(total)}`);
  else if (done > 0n) numbers.push(formatBytes(done));
  if (done > 0n && elapsed > 0) numbers.push(formatRate(done, elapsed));
  numbers.push(`${formatDuration(elapsed)} elapsed`);
  if (known && done > 0n && fraction < 1) numbers.push(`ETA ${formatDuration((elapsed * (1 - fraction)) / fraction)}`);
  const tail = `  ${numbers.join('  ')}`;
  const room = columns - 1;
  const width = Math.min(MAX_BAR_WIDTH, room - phase.name.length - 3 - NUMBERS_WIDTH);
  const bar = known && width >= MIN_BAR_WIDTH ? ` [${'#'.repeat(Math.round(fraction * width)).padEnd(width, '.')}]` : '';
  const line = `${phase.name}${bar}${tail}`;
  return (line.length <= room ? line : `${phase.name}${tail}`).slice(0, Math.max(0, room));
}

/** "9s", "1m05s", "2h03m": whole seconds are precise enough for a person waiting. */
function formatDuration(milliseconds: number): string {
  const seconds = Math.round(milliseconds / 1000);
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor(seconds / 60) % 60).padStart(2, '0')}m`;
}

const silent: Progress = { phase() {}, update() {}, done() {} };

export function createProgress(options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  if (options.quiet || !stream.isTTY) return silent;
  return new TerminalProgress(stream, options.now ?? (() => performance.now()));
}
