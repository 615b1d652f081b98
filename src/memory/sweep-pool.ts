// The pool of sweeper threads: a piscina instance of our own (sized by the
// sweepThreads option) or one the application passes in, as piscina's README
// recommends for libraries. Tasks name their worker file, so a shared pool
// can run ours beside its own.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { NativeLoadError, describe } from '../api/errors.js';
import { packageRoot } from '../platform/native.js';
import type { SharedPool } from '../api/options.js';
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

/**
 * An Error of ours for what an application's pool rejected with: its
 * message and a string code copied (isStartFailure reads the code), the
 * original as the cause; nothing of it that throws when read gets further.
 */
function plainError(e: unknown): Error {
  let message: string;
  let code: unknown;
  try {
    message = e instanceof Error ? `the pool's run() rejected: ${String(e.message)}` : `the pool's run() rejected with ${describe(e)}`;
    code = (e as { code?: unknown } | null)?.code;
  } catch {
    message = "the pool's run() rejected with an error that cannot be read";
    code = undefined;
  }
  const out = new Error(message, { cause: e });
  if (typeof code === 'string') (out as Error & { code?: string }).code = code;
  return out;
}

export class SweepPool {
  private readonly pool: SharedPool | Piscina;
  private readonly ownPool: Piscina | undefined;
  /** Tasks per cycle on an application's pool. */
  private readonly sharedThreads: number;
  private readonly filename: string;
  private readonly pending = new Set<Promise<unknown>>();
  /**
   * Set at close; every task checks it before each span and stops. (Not an
   * AbortSignal: piscina answers an aborted running task by terminating its
   * thread in the middle of whatever it is doing, native calls included.)
   */
  private readonly cancelled = new Int32Array(new SharedArrayBuffer(4));
  /**
   * Threads of our own pool whose sweep code is loaded and warm, and that
   * hold views of the heap: each adds 1 at the end of its worker module's top
   * level (sweep-worker.ts), which piscina runs when the thread starts.
   * heap.ready() waits for all of them.
   */
  private readonly booted = new Int32Array(new SharedArrayBuffer(4));
  /** Why our threads cannot be used (first failure), if they cannot. */
  broken: Error | undefined;

  /**
   * Starts the threads now (at heap creation, so the first cycle does not pay
   * for it). Throws if piscina cannot even be set up; a thread that fails to
   * start later is reported through `onBroken`, never as an unhandled 'error'.
   */
  constructor(threads: number, shared: SharedPool | undefined, private readonly onBroken: (e: Error) => void, heapId: number) {
    this.filename = workerFile();
    this.ownPool = shared ? undefined : new Piscina({
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
      // The heap's id: each thread attaches to the heap as it boots, so that
      // the first sweep does not pay for making the views (6-13 ms measured
      // in a fresh thread, 64 MiB to 4 GiB arenas: native/binding.cc, attachHeap).
      workerData: { forkgcBooted: this.booted, forkgcHeapId: heapId },
    });
    this.pool = shared ?? this.ownPool!;
    // (options.ts read it once and checked it is a whole number): the sweep's tasks are sized from it.
    this.sharedThreads = Math.min(4, shared?.maxThreads ?? 1);
    // Piscina emits 'error' when a thread dies with no task on it (a thread
    // that could not start): unhandled, that would end the process.
    if (this.ownPool) this.ownPool.on('error', (e: Error) => this.brokenBy(e));
  }

  /** Tasks to post per cycle: one per thread (at most 4 on a pool the application shares with us). */
  get threads(): number {
    return this.ownPool ? Math.max(1, this.ownPool.maxThreads) : this.sharedThreads;
  }

  /** Threads of our own pool that have booted (sweep code loaded and warm). */
  get bootedThreads(): number { return Atomics.load(this.booted, 0); }

  /**
   * Resolves once every thread of our own pool has booted, or the pool broke
   * (the heap sweeps on the main thread then) or is closing. At once for an
   * application's pool: its threads are not ours to start or count. Polls
   * every 2 ms (a ref'd timer: the wait keeps the event loop alive, as any
   * pending work a program awaits should).
   */
  ready(): Promise<void> {
    return this.booting(() => Atomics.load(this.cancelled, 0) !== 0);
  }

  /**
   * Resolves once every thread of our own pool has booted, the pool broke, or
   * `stop()` says so; at once without a pool of our own. Polls every 2 ms on
   * a ref'd timer (ready() above says why).
   */
  private booting(stop: () => boolean): Promise<void> {
    const own = this.ownPool;
    if (!own) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.broken || stop() || Atomics.load(this.booted, 0) >= own.maxThreads) resolve();
        else setTimeout(check, 2);
      };
      check();
    });
  }

  brokenBy(e: Error): void {
    if (this.broken) return;
    this.broken = e;
    this.onBroken(e);
  }

  /**
   * Posts a task. Whatever an application's pool does - throw, return
   * something that is not a promise, reject with a value that is not an
   * Error - the result is a promise that fulfils or rejects with an Error
   * (an untyped throw here was an uncaught exception in fork mode, and left
   * the cycle sweeping for ever; found in review). An application's pool
   * rejects with an Error of ours, holding what could be read of its own:
   * one whose message or code getter threw did the same (found in review).
   */
  run(task: Omit<SweepTask, 'cancelled'>): Promise<SweepTaskResult> {
    let p: Promise<SweepTaskResult>;
    try {
      p = Promise.resolve(this.pool.run({ ...task, cancelled: this.cancelled, release: this.ownPool === undefined }, { filename: this.filename }) as SweepTaskResult);
    } catch (e) {
      p = Promise.reject(e);
    }
    const own = this.ownPool !== undefined;
    p = p.catch((e: unknown) => { throw own && e instanceof Error ? e : plainError(e); });
    this.pending.add(p);
    const forget = () => { this.pending.delete(p); };
    p.then(forget, forget);
    return p;
  }

  /**
   * Makes queued and running tasks stop at their next span, waits for them
   * (bounded), waits for our threads to finish booting (bounded), and ends
   * them.
   */
  async close(): Promise<void> {
    Atomics.store(this.cancelled, 0, 1);
    let timer: NodeJS.Timeout | undefined;
    // A task queued on threads that never start never settles: do not wait for it forever.
    const bound = new Promise<void>((resolve) => { timer = setTimeout(resolve, this.broken ? 0 : 10_000); timer.unref(); });
    await Promise.race([Promise.allSettled([...this.pending]), bound]);
    clearTimeout(timer);
    if (!this.ownPool) return;
    // A thread terminated while Node is still loading its worker module
    // (piscina require()s it: an ES module, instantiated and evaluated
    // synchronously) can abort the whole process: "v8::Module::IsGraphAsync
    // must be used on an instantiated module" (the previous version, a heap
    // closed 0-59 ms after it was made: 2 runs in 10 of
    // test/fixtures/close-during-boot.mjs). So the threads are ended only
    // once they have booted (the module's last statement counts them), or
    // broke, or after a bound.
    const deadline = performance.now() + 10_000;
    await this.booting(() => performance.now() >= deadline);
    await this.ownPool.destroy().catch(() => undefined);
  }
}
