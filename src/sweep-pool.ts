// The pool of sweeper threads: a piscina instance of our own (sized by the
// sweepThreads option) or one the application passes in, as piscina's README
// recommends for libraries. Tasks name their worker file, so a shared pool
// can run ours beside its own.
import { setMaxListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { NativeLoadError } from './errors.js';
import type { SweepTask, SweepTaskResult } from './sweep-worker.js';

/** The compiled worker entry: beside this module in dist/, or dist/ when run from src/ (tests). */
function workerFile(): string {
  for (const rel of ['./sweep-worker.js', '../dist/sweep-worker.js']) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(file)) return file;
  }
  throw new NativeLoadError('the sweeper worker (dist/sweep-worker.js) is not built: run `npm run build`');
}

export class SweepPool {
  private readonly own: boolean;
  private readonly pool: Piscina;
  private readonly filename: string;
  private readonly pending = new Set<Promise<unknown>>();
  private readonly abort = new AbortController();

  constructor(threads: number, shared?: Piscina) {
    this.filename = workerFile();
    this.own = !shared;
    // One signal for every task of this heap (cancels the queued ones at close).
    setMaxListeners(0, this.abort.signal);
    this.pool = shared ?? new Piscina({
      filename: this.filename,
      minThreads: threads,
      maxThreads: threads,
      // Sweeps come in bursts, one per cycle: keep the threads between them.
      idleTimeout: 60_000,
    });
  }

  run(task: SweepTask): Promise<SweepTaskResult> {
    const p = this.pool.run(task, { filename: this.filename, signal: this.abort.signal }) as Promise<SweepTaskResult>;
    this.pending.add(p);
    const forget = () => { this.pending.delete(p); };
    p.then(forget, forget);
    return p;
  }

  /** Cancels queued tasks, waits for running ones, and ends our own threads. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.pending]);
    if (this.own) await this.pool.destroy();
  }
}
