/**
 * Failure model, part 5: several heaps at once, and threads (issue 4).
 *
 *   - three heaps in one process collect at the same time: their children
 *     overlap (each child's snapshot is the whole process, the other heaps
 *     included) and each heap frees exactly its own garbage;
 *   - the same while one heap's child lies and another's is SIGKILLed: only
 *     those two cycles abort, the third is untouched;
 *   - a heap created and collected inside a worker_threads Worker (the fork
 *     happens on the worker's thread), while a main-thread heap collects too;
 *   - a Worker terminated while its heap's child is in flight: the child must
 *     not survive it, nor stay a zombie of this process;
 *   - a heap used while piscina workers run: one heap sweeping on the
 *     application's own Piscina instance (option `piscina`) beside the
 *     application's tasks, one with a pool of its own (sweepThreads: 2).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import { CycleAbortedError, type FaultKind, type Heap } from '../src/index.js';
import { native } from '../src/platform/native.js';
import {
  childrenOf, closeHeapsAfterEach, describeError, isFreed, makeHeap, procStat, withTimeout, type CycleStats, type HeapOptions, type Ref,
} from './helpers/common.js';

closeHeapsAfterEach();

const WORKER = fileURLToPath(new URL('./fixtures/worker-heap.mjs', import.meta.url));
const TASK = fileURLToPath(new URL('./fixtures/piscina-task.mjs', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Tenant {
  heap: Heap;
  fault: { on: boolean };
  garbage: Ref[];
  makeGarbage(n: number): void;
  check(): void;
}

/** A heap holding `records` checksummed records, tagged so that heaps cannot be mixed up. */
function tenant(tag: number, records: number, opts: HeapOptions = {}, kind?: FaultKind, arg?: number): Tenant {
  const fault = { on: false };
  const heap = makeHeap({
    sweepThreads: 0, maxConsecutiveAborts: 1000, ...opts,
    ...(kind ? { faultInjectionForTesting: { kind, arg, cycles: () => fault.on } } : {}),
  });
  const Rec = heap.defineStruct(`Rec${tag}`, { next: 'ref', data: 'ref', tag: 'u32', i: 'u32' });
  const top = heap.arrays.alloc(records);
  const root = heap.root(top);
  const garbage: Ref[] = [];
  for (let i = 0; i < records; i++) {
    const data = heap.strings.alloc(`heap ${tag} record ${i}`);
    heap.arrays.set(top, i, Rec.alloc({ next: i ? heap.arrays.get(top, i - 1) : 0, data, tag, i }));
  }
  return {
    heap, fault, garbage,
    makeGarbage(n: number): void {
      for (let k = 0; k < n; k++) {
        const d = heap.strings.alloc(`garbage ${tag}`);
        garbage.push(d, Rec.alloc({ next: heap.arrays.get(root.get(), k % records), data: d, tag: 999, i: k }));
      }
    },
    check(): void {
      const t = root.get();
      for (let i = 0; i < records; i++) {
        const r = heap.arrays.get(t, i);
        if (Rec.get.tag(r) !== tag || Rec.get.i(r) !== i || heap.strings.read(Rec.get.data(r)) !== `heap ${tag} record ${i}`) {
          throw new Error(`heap ${tag}: record ${i} changed`);
        }
        if (Rec.get.next(r) !== (i ? heap.arrays.get(t, i - 1) : 0)) throw new Error(`heap ${tag}: link ${i} changed`);
      }
    },
  };
}

function alive(pid: number): boolean {
  const st = procStat(pid);
  return st !== null && st.state !== 'Z';
}
const zombies = (): number[] => childrenOf().filter((c) => c.state === 'Z').map((c) => c.pid);

async function settle<T>(p: Promise<T>): Promise<T | CycleAbortedError> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof CycleAbortedError) return e;
    throw e;
  }
}

describe('several heaps in one process collect at the same time', () => {
  it('three overlapping children: each heap frees exactly its own garbage', async () => {
    const ts = [tenant(1, 3000, {}, 'delay-before-mark', 300), tenant(2, 2000, {}, 'delay-before-mark', 300), tenant(3, 1000, {}, 'delay-before-mark', 300)];
    for (const t of ts) { await t.heap.collect(); t.garbage.length = 0; }
    ts.forEach((t, i) => t.makeGarbage(100 * (i + 1)));
    const pids: number[] = [0, 0, 0];
    ts.forEach((t, i) => t.heap.once('fork', (e) => { pids[i] = e.pid; }));
    for (const t of ts) t.fault.on = true;
    const cycles = ts.map((t) => t.heap.collect());
    // All three children exist at once (each sleeps 300 ms before marking).
    await sleep(100);
    expect(pids.every((p) => p > 0)).toBe(true);
    expect(new Set(pids).size).toBe(3);
    expect(pids.map(alive), 'the three children overlap').toEqual([true, true, true]);
    const stats = await withTimeout(Promise.all(cycles), 20_000, 'three cycles');
    for (const t of ts) t.fault.on = false;
    stats.forEach((s, i) => {
      expect(s.childPid).toBe(pids[i]);
      expect(s.objectsFreed, `heap ${i + 1}`).toBe(ts[i].garbage.length);
      expect(ts[i].garbage.every((g) => isFreed(ts[i].heap, g))).toBe(true);
      ts[i].check();
    });

    // Then 10 rounds of unrestrained concurrent cycles with varied garbage.
    for (let round = 0; round < 10; round++) {
      ts.forEach((t, i) => { t.garbage.length = 0; t.makeGarbage(((round * 37 + i * 11) % 90) + 1); });
      const rs = await withTimeout(Promise.all(ts.map((t) => t.heap.collect())), 20_000, `round ${round}`);
      rs.forEach((s, i) => {
        expect(s.fallback).toBe(false);
        expect(s.objectsFreed, `round ${round}, heap ${i + 1}`).toBe(ts[i].garbage.length);
      });
      for (const t of ts) t.check();
    }
    expect(zombies()).toEqual([]);
  }, 60_000);

  it('one heap’s child lies, another’s is SIGKILLed, the third completes: only the first two abort', async () => {
    const liar = tenant(1, 2000, {}, 'zombie-mark');
    const victim = tenant(2, 2000, {}, 'delay-before-mark', 400);
    const fine = tenant(3, 2000, {}, 'delay-before-mark', 200);
    const ts = [liar, victim, fine];
    for (const t of ts) { await t.heap.collect(); t.garbage.length = 0; t.makeGarbage(200); t.fault.on = true; }
    const objects = ts.map((t) => t.heap.stats().objects);
    victim.heap.once('fork', (e) => setTimeout(() => {
      if (victim.heap.stats().phase === 'marking' && procStat(e.pid)?.ppid === process.pid) process.kill(e.pid, 'SIGKILL');
    }, 100));
    const [a, b, c] = await withTimeout(Promise.all(ts.map((t) => settle(t.heap.collect()))), 20_000, 'three cycles');
    for (const t of ts) t.fault.on = false;
    expect(a, describeError(a)).toBeInstanceOf(CycleAbortedError);
    expect((a as CycleAbortedError).reason).toBe('ZOMBIE_MARK');
    expect(b, describeError(b)).toBeInstanceOf(CycleAbortedError);
    expect((b as CycleAbortedError).reason).toBe('CHILD_SIGNALED');
    expect((c as CycleStats).objectsFreed).toBe(fine.garbage.length);
    // The aborted heaps freed nothing; the next cycles free exactly their garbage.
    expect(liar.heap.stats().objects).toBe(objects[0]);
    expect(victim.heap.stats().objects).toBe(objects[1]);
    for (const t of [liar, victim]) {
      expect(t.garbage.some((g) => isFreed(t.heap, g))).toBe(false);
      t.check();
      const s = await withTimeout(t.heap.collect(), 20_000, 'recovery');
      expect(s.objectsFreed).toBe(t.garbage.length);
    }
    for (const t of ts) t.check();
    expect(zombies()).toEqual([]);
  }, 60_000);
});

// ---------------------------------------------------------------------------

interface WorkerOutcome {
  forks: number[];
  done?: { cycles: { childPid: number; objectsFreed: number; expected: number; fallback: boolean }[]; intact: boolean; objects: number };
  error?: string;
  exitCode?: number;
}

function runWorker(data: object, opts: { onFork?: (pid: number, w: Worker, heapId: number) => void } = {}): { worker: Worker; outcome: Promise<WorkerOutcome> } {
  const worker = new Worker(WORKER, { workerData: data });
  const out: WorkerOutcome = { forks: [] };
  const outcome = new Promise<WorkerOutcome>((resolve) => {
    worker.on('message', (m: { event: string; pid?: number; heapId?: number; message?: string } & WorkerOutcome['done']) => {
      if (m.event === 'fork') { out.forks.push(m.pid!); opts.onFork?.(m.pid!, worker, m.heapId!); }
      if (m.event === 'done') out.done = m as WorkerOutcome['done'];
      if (m.event === 'error') out.error = m.message;
    });
    worker.on('error', (e) => { out.error = String(e?.stack ?? e); });
    worker.on('exit', (code) => { out.exitCode = code; resolve(out); });
  });
  return { worker, outcome };
}

describe('a heap inside a worker_threads Worker', () => {
  it('created, filled and collected in a Worker (forks from the worker thread) while a main-thread heap collects too', async () => {
    const main = tenant(7, 3000);
    await main.heap.collect();
    main.garbage.length = 0;
    const { worker, outcome } = runWorker({ records: 3000, garbage: 700, cycles: 4 });
    try {
      // The main thread collects concurrently with the worker.
      for (let i = 0; i < 6; i++) {
        main.garbage.length = 0;
        main.makeGarbage(50 + i);
        const s = await withTimeout(main.heap.collect(), 20_000, `main cycle ${i}`);
        expect(s.objectsFreed).toBe(main.garbage.length);
        main.check();
      }
      const o = await withTimeout(outcome, 30_000, 'worker');
      expect(o.error, o.error).toBeUndefined();
      expect(o.exitCode).toBe(0);
      expect(o.done!.intact).toBe(true);
      expect(o.done!.cycles).toHaveLength(4);
      for (const c of o.done!.cycles) {
        expect(c.fallback).toBe(false);
        expect(c.childPid).toBeGreaterThan(0);
        expect(c.childPid).not.toBe(process.pid);
        expect(c.objectsFreed).toBe(c.expected);
      }
      expect(o.forks).toEqual(o.done!.cycles.map((c) => c.childPid));
      // Each of the worker's children was reaped.
      for (const pid of o.forks) expect(procStat(pid)?.ppid === process.pid, `worker child ${pid}: ${JSON.stringify(procStat(pid))}`).toBe(false);
      expect(zombies()).toEqual([]);
    } finally {
      await worker.terminate();
    }
  }, 60_000);

  it('a Worker terminated while its heap’s child is in flight leaves no child, no zombie and no heap behind', async () => {
    let childPid = 0;
    let heapId = 0;
    const { worker, outcome } = runWorker({ records: 200, garbage: 10, cycles: 1, hold: 60_000 }, {
      onFork: (pid, _w, id) => { childPid = pid; heapId = id; },
    });
    try {
      const t0 = performance.now();
      while (childPid === 0 && performance.now() - t0 < 10_000) await sleep(10);
      expect(childPid, 'the worker forked').toBeGreaterThan(0);
      await sleep(50);
      expect(alive(childPid)).toBe(true);
      await withTimeout(worker.terminate(), 10_000, 'terminate');
      await withTimeout(outcome, 10_000, 'worker exit');
      // The child must die with the thread that forked it, and be reaped.
      const deadline = performance.now() + 2000;
      while (performance.now() < deadline && procStat(childPid)?.ppid === process.pid) await sleep(10);
      const st = procStat(childPid);
      expect(st === null || st.ppid !== process.pid,
        `child ${childPid} of the terminated worker is still this process's child: ${JSON.stringify(st)}`).toBe(true);
      expect(zombies()).toEqual([]);
      // Regression (found in review): the heap the worker never closed was
      // never destroyed (no finalizer runs when a thread's environment ends):
      // its mappings stayed for the process's life.
      expect(heapId).toBeGreaterThan(0);
      expect(native().heapDestroyed(heapId), 'the worker\'s heap was destroyed with its environment').toBe(true);
    } finally {
      await worker.terminate();
      // Clean up after a failure so that the zombie does not fail the tests that follow.
      if (childPid > 0 && procStat(childPid)?.ppid === process.pid) {
        try { process.kill(childPid, 'SIGKILL'); } catch { /* gone */ }
        native().waitChild(childPid, 2000);
      }
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------

describe('a heap used while piscina workers run', () => {
  // Regression (found in review): a Worker terminated right after forkCycle
  // returned, before JS wrapped the child's pipe, left its read end open for
  // the process's life; the environment's cleanup hook, which kills and
  // reaps the child, now closes it too until JS adopts it.
  it('a worker whose environment ends before JS takes the child\'s pipe leaves the pipe closed', () => {
    const fixture = fileURLToPath(new URL('./fixtures/worker-unadopted-pipe.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { pid: number; fd: number; open: boolean };
    expect(out.pid).toBeGreaterThan(0);
    expect(out.fd).toBeGreaterThan(2);
    expect(out.open).toBe(false);
  }, 60_000);

  it('one heap sweeps on the application’s Piscina beside its tasks, another on its own 2 threads: all results exact', async () => {
    const pool = new Piscina({ filename: TASK, minThreads: 2, maxThreads: 2 });
    const expectTask = (seed: number, rounds: number): number => {
      let h = seed >>> 0;
      for (let i = 0; i < rounds; i++) {
        h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
        h = (h + i) >>> 0;
      }
      return h;
    };
    let stop = false;
    let tasksDone = 0;
    const taskErrors: string[] = [];
    // The application's own work: 3 tasks in flight at all times, checked.
    const app = Array.from({ length: 3 }, async (_, lane) => {
      for (let k = 0; !stop; k++) {
        const seed = lane * 1_000_003 + k;
        const got = await pool.run({ seed, rounds: 200_000 });
        if (got !== expectTask(seed, 200_000)) taskErrors.push(`task ${seed}: ${got}`);
        tasksDone++;
      }
    });
    try {
      // (inlineSweepUs: 0: heaps this small would otherwise be swept inline, without the pools.)
      const shared = tenant(1, 20_000, { maxHeap: '128MiB', piscina: pool, inlineSweepUs: 0 });
      const own = tenant(2, 20_000, { maxHeap: '128MiB', sweepThreads: 2, inlineSweepUs: 0 });
      // The shared pool's sweep task queues behind the application's: a
      // round whose task started only after the main thread had swept it
      // all (it helps after 5 ms) is right too. Across the rounds the pool
      // must have swept (found once in the full suite: a round with 0).
      let sharedSpans = 0;
      const sharedThreads = new Set<number>();  // the threads that swept for the shared heap
      for (let round = 0; round < 6; round++) {
        for (const t of [shared, own]) { t.garbage.length = 0; t.makeGarbage(3000 + round * 500); }
        const [a, b] = await withTimeout(Promise.all([shared.heap.collect(), own.heap.collect()]), 30_000, `round ${round}`);
        expect(a.objectsFreed, `round ${round}, shared pool`).toBe(shared.garbage.length);
        expect(b.objectsFreed, `round ${round}, own pool`).toBe(own.garbage.length);
        sharedSpans += a.workerSpansSwept;
        for (const w of a.workers) if (w.spans > 0) sharedThreads.add(w.threadId);
        expect(b.workerSpansSwept, 'the own pool swept spans').toBeGreaterThan(0);
        expect(shared.garbage.every((g) => isFreed(shared.heap, g))).toBe(true);
        shared.check();
        own.check();
      }
      expect(sharedSpans, 'the shared pool swept spans').toBeGreaterThan(0);
      // Its threads, not threads of the heap's own (found in review: the test passed either way).
      const poolThreads = new Set(pool.threads.map((t) => t.threadId));
      expect([...sharedThreads].some((id) => poolThreads.has(id)), `threads ${[...sharedThreads].join(', ')} of the pool's ${[...poolThreads].join(', ')}`).toBe(true);
      expect(tasksDone, 'the application’s tasks ran meanwhile').toBeGreaterThan(3);
      expect(taskErrors).toEqual([]);
      // Closing the heap that borrowed the pool leaves the pool to the application.
      await shared.heap.close();
      expect(await pool.run({ seed: 1, rounds: 10 })).toBe(expectTask(1, 10));
      expect(zombies()).toEqual([]);
    } finally {
      stop = true;
      await withTimeout(Promise.allSettled(app), 20_000, 'application tasks');
      await pool.destroy();
    }
  }, 60_000);

  it('a heap that swept on the application’s Piscina gives its memory back at close()', async () => {
    // The pool's threads kept their attachments to the heap between tasks,
    // and with them the closed heap's memory, until a task of another heap
    // ran on them (found in review: RSS unchanged after close()).
    const rssMiB = () => (Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096) / 2 ** 20;
    const pool = new Piscina({ filename: TASK, minThreads: 2, maxThreads: 2 });
    try {
      const heap = makeHeap({ maxHeap: '512MiB', auto: false, inlineSweepUs: 0, hugePages: false, piscina: pool });
      const B = heap.defineStruct('B', { next: 'ref' });
      const list = heap.root(0);
      for (let i = 0; i < 3_000_000; i++) list.set(B.alloc({ next: list.get() }));  // ~48 MiB live
      for (let i = 0; i < 3_000_000; i++) B.alloc();  // garbage
      const s = await withTimeout(heap.collect(), 30_000, 'cycle');
      expect(s.workerSpansSwept, 'the pool swept').toBeGreaterThan(0);
      const before = rssMiB();
      await heap.close();
      const after = rssMiB();
      expect(before - after, `RSS ${before.toFixed(0)} -> ${after.toFixed(0)} MiB`).toBeGreaterThan(30);
    } finally {
      await pool.destroy();
    }
  }, 60_000);
});
