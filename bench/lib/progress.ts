/**
 * Progress on stderr: an ANSI bar redrawn in place on a TTY, plain lines otherwise
 * (CI logs, redirected output). No dependency.
 */
export class Progress {
  private readonly tty: boolean;
  private done = 0;
  private current = '';
  private started = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly total: number, private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = !!stream.isTTY && process.env.TERM !== 'dumb';
  }

  start(label: string): void {
    this.current = label;
    this.started = Date.now();
    if (this.tty) {
      this.draw();
      this.timer ??= setInterval(() => this.draw(), 250);
    } else {
      this.stream.write(`[${this.done + 1}/${this.total}] ${label} ...\n`);
    }
  }

  /** A finished item: its summary line goes above the bar. */
  finish(summary: string): void {
    this.done++;
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    this.line(`${summary} (${secs}s)`);
  }

  /** A line that stays (a skipped peer, a warning). */
  line(text: string): void {
    if (this.tty) {
      this.stream.write(`\r\x1b[2K${text}\n`);
      if (this.done < this.total) this.draw();
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  end(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.tty) this.stream.write('\r\x1b[2K');
  }

  private draw(): void {
    const width = 28;
    const filled = Math.round((this.done / Math.max(1, this.total)) * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    const cols = this.stream.columns ?? 100;
    const text = `[${bar}] ${this.done}/${this.total}  ${this.current}  ${secs}s`;
    this.stream.write(`\r\x1b[2K\x1b[36m${text.slice(0, cols - 1)}\x1b[0m`);
  }
}
