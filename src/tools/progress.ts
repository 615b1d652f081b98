// Progress of the long commands (`forkgc trace`, the benchmark runner, the
// soak): a cli-progress bar redrawn in place on a terminal, with lines that
// stay printed above it; plain lines when stderr is not a terminal (CI logs,
// redirected output), at most one progress line every `plainEveryMs`. Always
// on stderr, so stdout keeps only the results.
import cliProgress from 'cli-progress';

export interface ProgressOptions {
  /** The value at which the work is done (seconds, jobs...). */
  total: number;
  /** What the values count, shown after them ("s", "runs"). */
  unit: string;
  stream?: NodeJS.WriteStream;
  /** Not a terminal: the least time between two progress lines. Default 5 s. */
  plainEveryMs?: number;
}

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly bars: cliProgress.MultiBar | null;
  private readonly bar: cliProgress.SingleBar | null;
  private readonly total: number;
  private readonly unit: string;
  private readonly plainEveryMs: number;
  private lastPlain = 0;
  private stopped = false;

  constructor(o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.total = o.total;
    this.unit = o.unit;
    this.plainEveryMs = o.plainEveryMs ?? 5000;
    const tty = !!this.stream.isTTY && process.env.TERM !== 'dumb';
    this.bars = tty
      ? new cliProgress.MultiBar({
        stream: this.stream,
        format: `[{bar}] {value}/{total} ${o.unit}  {label}  {duration_formatted}`,
        barCompleteChar: '█',
        barIncompleteChar: '░',
        barsize: 28,
        hideCursor: true,
        clearOnComplete: true,
        fps: 4,
      })
      : null;
    this.bar = this.bars ? this.bars.create(o.total, 0, { label: '' }) : null;
  }

  /** Where the work is: a redraw on a terminal, else a plain line now and then. */
  update(value: number, label: string): void {
    if (this.stopped) return;
    if (this.bar) {
      this.bar.update(Math.min(value, this.total), { label });
      return;
    }
    const now = Date.now();
    if (now - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = now;
      this.stream.write(`${label} (${value}/${this.total} ${this.unit})\n`);
    }
  }

  /** A line that stays (a finished step, a warning), above the bar. */
  line(text: string): void {
    if (this.bars && !this.stopped) this.bars.log(`${text}\n`);
    else this.stream.write(`${text}\n`);
  }

  /** Removes the bar; later lines are plain. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    // cli-progress writes logged lines at its next redraw: draw once, so none is lost.
    this.bars?.update();
    this.bars?.stop();
  }
}
