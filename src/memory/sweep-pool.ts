// The pool of sweeper threads: a piscina instance of our own (sized by the
// sweepThreads option) or one the application passes in, as piscina's README
// recommends for libraries. Tasks name their worker file, so a shared pool
// can run ours beside its own.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { NativeLoadError } from '../api/errors.js';
import { packageRoot } from '../platform/native.js';
import type { PiscinaPool } from '../api/options.js';
import type { SweepTask, SweepTaskResult } from './sweep-worker.js';

/**
 * The compiled worker entry (a worker thread runs JavaScript): beside this
 * module in dist/, or, when this module runs from src/ (the tests), at the
 * same place under dist/. Both inside forkgc's own package directory.
 */
function workerFile(): string {
  const beside = fileURLToPath(new URL('./sweep-worker.js', import.meta.url));
  if (existsSync(beside)) return beside;
  const root = packageRoot();
  const built = path.join(root, 'dist', path.relative(path.join(root, 'src'), beside));
  if (existsSync(built)) return built;
  throw new NativeLoadError(`the sweeper worker is not built (${path.relative(root, built)} is missing in ${root}): run \`npm run build\``);
}

export class SweepPool {
  private readonly pool: PiscinaPool;
  private readonly ownPool: Piscina | undefined;
  private readonly filename: string;
  private readonly pending = new Set<Promise<unknown>>();
  /**
   * Set at close; every task checks it before each span and stops. (Not an
   * AbortSignal: piscina answers an aborted running task by terminating its
   * thread in the middle of whatever it is doing, native calls included.)
   */
  private readonly cancelled = new Int32Array(new SharedArrayBuffer(4));

  constructor(threads: number, shared?: PiscinaPool) {
    this.filename = workerFile();
    this.ownPool = shared ? undefined : new Piscina({
      filename: this.filename,
      minThreads: threads,
      maxThreads: threads,
      // Sweeps come in bursts, one per cycle: keep the threads between them.
      idleTimeout: 60_000,
    });
    this.pool = shared ?? this.ownPool!;
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
    if (this.ownPool) await this.ownPool.destroy();
  }
}
