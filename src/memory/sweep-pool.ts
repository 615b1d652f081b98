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

/**
 * Whether an error from a task means its thread never ran it (could not
 * start: a pids or thread limit, descriptors exhausted, out of memory), as
 * opposed to a sweep that started and threw. The board says which: a task
 * that ran stored RUNNING in its slot first.
 */
export function isStartFailure(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ERR_WORKER_INIT_FAILED' || code === 'ERR_WORKER_OUT_OF_MEMORY' || code === 'EAGAIN' ||
    code === 'EMFILE' || code === 'ENFILE' || code === 'ENOMEM';
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
  /** Why our threads cannot be used (first failure), if they cannot. */
  broken: Error | undefined;

  /**
   * Starts the threads now (at heap creation, so the first cycle does not pay
   * for it). Throws if piscina cannot even be set up; a thread that fails to
   * start later is reported through `onBroken`, never as an unhandled 'error'.
   */
  constructor(threads: number, shared: Piscina | undefined, private readonly onBroken: (e: Error) => void) {
    this.filename = workerFile();
    this.own = !shared;
    this.pool = shared ?? new Piscina({
      filename: this.filename,
      minThreads: threads,
      maxThreads: threads,
      // Sweeps come in bursts, one per cycle: keep the threads between them.
      idleTimeout: 60_000,
      // One task per thread per cycle, but piscina counts a task as running
      // until the main thread's event loop has taken its result: a program
      // that rarely yields would otherwise find the thread "busy" with the
      // last cycle's task and get the next one queued, unswept. The thread
      // runs its tasks in order either way.
      concurrentTasksPerWorker: 16,
    });
    // Piscina emits 'error' when a thread dies with no task on it (a thread
    // that could not start): unhandled, that would end the process.
    if (this.own) this.pool.on('error', (e: Error) => this.brokenBy(e));
  }

  /** Tasks to post per cycle: one per thread (at most 4 on a pool the application shares with us). */
  get threads(): number { return Math.max(1, this.own ? this.pool.maxThreads : Math.min(4, this.pool.maxThreads)); }

  brokenBy(e: Error): void {
    if (this.broken) return;
    this.broken = e;
    this.onBroken(e);
  }

  run(task: Omit<SweepTask, 'cancelled'>): Promise<SweepTaskResult> {
    const p = this.pool.run({ ...task, cancelled: this.cancelled }, { filename: this.filename }) as Promise<SweepTaskResult>;
    this.pending.add(p);
    const forget = () => { this.pending.delete(p); };
    p.then(forget, forget);
    return p;
  }

  /** Makes queued and running tasks stop at their next span, waits for them (bounded), and ends our own threads. */
  async close(): Promise<void> {
    Atomics.store(this.cancelled, 0, 1);
    let timer: NodeJS.Timeout | undefined;
    // A task queued on threads that never start never settles: do not wait for it forever.
    const bound = new Promise<void>((resolve) => { timer = setTimeout(resolve, this.broken ? 0 : 10_000); timer.unref(); });
    await Promise.race([Promise.allSettled([...this.pending]), bound]);
    clearTimeout(timer);
    if (this.own) await this.pool.destroy().catch(() => undefined);
  }
}
