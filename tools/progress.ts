/**
 * A one-line progress bar on standard error. It draws only when standard
 * error is a terminal and --quiet is off, so pipes, logs and CI get nothing
 * but the final report; redraws are throttled so that a fast save does not
 * spend its time painting.
 */
import { formatBytes, formatRate } from './units.js';

const REDRAW_MS = 100;
const BAR_WIDTH = 30;

export interface Progress {
  /** `total` null: unknown (a pipe), drawn as bytes and rate only. */
  update(done: bigint, total: bigint | null): void;
  /** Erases the bar so the report that follows starts on a clean line. */
  done(): void;
}

class TerminalProgress implements Progress {
  private readonly started = performance.now();
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream,
  ) {}

  update(done: bigint, total: bigint | null): void {
    const now = performance.now();
    if (now - this.lastDraw < REDRAW_MS && done !== total) return;
    this.lastDraw = now;
    const rate = formatRate(done, now - this.started);
    let line = `${this.label} ${formatBytes(done)}`;
    if (total !== null && total > 0n) {
      const fraction = Math.min(1, Number(done) / Number(total));
      const filled = Math.round(fraction * BAR_WIDTH);
      line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)}`;
    }
    this.stream.write(`\r${line} ${rate}\x1b[K`);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}

const silent: Progress = { update() {}, done() {} };

export function createProgress(label: string, options: { quiet?: boolean }): Progress {
  if (options.quiet || !process.stderr.isTTY) return silent;
  return new TerminalProgress(label, process.stderr);
}
