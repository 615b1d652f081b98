// The pool of sweeper threads: a piscina instance of our own (sized by the
// sweepThreads option) or one the application passes in, as piscina's README
// recommends for libraries. Tasks name their worker file, so a shared pool
// can run ours beside its own.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { NativeLoadError } from '../api/errors.js';
import type { SweepTask, SweepTaskResult } from './sweep-worker.js';

/** The compiled worker entry: beside this module in dist/memory/, or dist/memory/ when run from src/memory/ (tests). */
function workerFile(): string {
  for (const rel of ['./sweep-worker.js', '../../dist/memory/sweep-worker.js']) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(file)) return file;
  }
  throw new NativeLoadError('the sweeper worker (dist/memory/sweep-worker.js) is not built: run `npm run build`');
}

export class SweepPool {
  private readonly own: boolean;
  private readonly pool: Piscina;
  private readonly filename: string;
  private readonly pending = new Set<Promise<unknown>>();
  /**
   * Set at close; every task checks it before each span and stops. (Not an
   * AbortSignal: piscina answers an aborted running task by terminating its
   * thread in the middle of whatever it is doing, native calls included.)
   */
  private readonly cancelled = new Int32Array(new SharedArrayBuffer(4));

  constructor(threads: number, shared?: Piscina) {
    this.filename = workerFile();
    this.own = !shared;
    this.pool = shared ?? new Piscina({
      filename: this.filename,
      minThreads: threads,
      maxThreads: threads,
      // Sweeps come in bursts, one per cycle: keep the threads between them.
      idleTimeout: 60_000,
    });
  }

  run(task: Omit<SweepTask, 'cancelled'>): Promise<SweepTaskResult> {
    const p = this.pool.run({ ...task, cancelled: this.cancelled }, { filename: this.filename }) as Promise<SweepTaskResult>;
    this.pending.add(p);
    const forget = () => { this.pending.delete(p); };
    p.then(forget, forget);
    return p;
  }

  /** Makes queued and running tasks stop at their next span, waits for them, and ends our own threads. */
  async close(): Promise<void> {
    Atomics.store(this.cancelled, 0, 1);
    await Promise.allSettled([...this.pending]);
    if (this.own) await this.pool.destroy();
  }
}
