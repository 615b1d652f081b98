/**
 * The runner's progress, one job after another, on the CLI's progress display
 * (src/progress.ts: a cli-progress bar on a terminal, plain lines otherwise).
 */
import { Progress as Display } from '../../src/tools/progress.js';

export class Progress {
  private readonly display: Display;
  private done = 0;
  private started = 0;

  constructor(total: number) {
    // Not a terminal: one line per job as it starts (plainEveryMs 0).
    this.display = new Display({ total, unit: 'runs', plainEveryMs: 0 });
  }

  start(label: string): void {
    this.started = Date.now();
    this.display.update(this.done, `[${this.done + 1}] ${label} ...`);
  }

  /** A finished item: its summary line goes above the bar. */
  finish(summary: string): void {
    this.done++;
    this.display.line(`${summary} (${((Date.now() - this.started) / 1000).toFixed(1)}s)`);
  }

  /** A line that stays (a skipped peer, a warning). */
  line(text: string): void {
    this.display.line(text);
  }

  end(): void {
    this.display.stop();
  }
}
