// heap.ready(): resolves once the heap's own sweeper threads have booted
// (loaded and warmed their sweep code; src/memory/sweep-pool.ts), and never
// hangs or rejects: at once without threads of its own, on close, and when
// the threads cannot start (test/sweeper-limits.test.ts, with real limits).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import { native } from '../src/platform/native.js';
import { closeHeapsAfterEach, makeHeap, withTimeout } from './helpers/common.js';

closeHeapsAfterEach();

const FIXTURE = fileURLToPath(new URL('./fixtures/ready-top-level.mjs', import.meta.url));

describe('heap.ready()', () => {
  it('resolves when every sweeper thread of the heap has booted, and the first cycle then sweeps on them', async () => {
    const heap = makeHeap({ sweepThreads: 2, inlineSweepUs: 0 });
    await withTimeout(heap.ready(), 30_000, 'ready');
    expect(heapInternals(heap).sweepPool()?.bootedThreads).toBe(2);
    // Twice: a second call on a ready heap resolves too.
    await withTimeout(heap.ready(), 5_000, 'ready again');
    const T = heap.defineStruct('T', { next: 'ref', v: 'f64' });
    for (let i = 0; i < 300_000; i++) T.alloc();
    const c = await withTimeout(heap.collect(), 30_000, 'collect');
    expect(c.objectsFreed).toBe(300_000);
    expect(c.workerSpansSwept).toBeGreaterThan(0);
  }, 60_000);

  it('each booted thread of the heap\'s own pool already holds the heap\'s views (attached as it booted, not at its first sweep); an application\'s pool attaches only at a task', async () => {
    const heap = makeHeap({ sweepThreads: 2 });
    await withTimeout(heap.ready(), 30_000, 'ready');
    const id = heapInternals(heap).views.regions.id;
    // The heap's own attachment and one per thread, before any cycle.
    expect(native().heapAttachments(id)).toBe(3);
    const pool = new Piscina({ filename: fileURLToPath(new URL('./fixtures/piscina-task.mjs', import.meta.url)), minThreads: 1, maxThreads: 1 });
    try {
      const shared = makeHeap({ piscina: pool });
      await withTimeout(shared.ready(), 1_000, 'ready (shared pool)');
      expect(native().heapAttachments(heapInternals(shared).views.regions.id)).toBe(1);
    } finally {
      await pool.destroy();
    }
    await heap.close();
    expect(native().heapAttachments(id)).toBe(0);
  }, 60_000);

  it('resolves at once without threads of its own: sweepThreads 0, or an application\'s pool', async () => {
    const none = makeHeap({ sweepThreads: 0 });
    expect(heapInternals(none).sweepPool()).toBeUndefined();
    await withTimeout(none.ready(), 1_000, 'ready (no threads)');
    const pool = new Piscina({ filename: fileURLToPath(new URL('./fixtures/piscina-task.mjs', import.meta.url)), minThreads: 0, maxThreads: 1 });
    try {
      const shared = makeHeap({ piscina: pool });
      await withTimeout(shared.ready(), 1_000, 'ready (shared pool)');
    } finally {
      await pool.destroy();
    }
  }, 30_000);

  it('close() right after new Heap() ends the threads only once they have booted (Node can abort a process whose thread is terminated while it loads the worker module)', async () => {
    const heap = makeHeap({ sweepThreads: 2 });
    const pool = heapInternals(heap).sweepPool();
    expect(pool?.bootedThreads).toBeLessThan(2);  // (they boot in the background: not yet)
    await withTimeout(heap.close(), 30_000, 'close');
    expect(pool?.bootedThreads).toBe(2);
  }, 60_000);

  it('resolves when the heap is closed before its threads booted', async () => {
    const heap = makeHeap({ sweepThreads: 1 });
    const ready = heap.ready();
    await heap.close();
    await withTimeout(ready, 15_000, 'ready after close');
  }, 30_000);

  // Regression (found in review): a second close() resolved at once, while
  // the first still waited for the sweeper threads to end.
  it('close() called twice, the second while the first waits for the threads: both resolve together, when the threads have ended', async () => {
    const heap = makeHeap({ sweepThreads: 2 });
    const first = heap.close();
    const second = heap.close();
    expect(second).toBe(first);
    let firstDone = false;
    void first.then(() => { firstDone = true; });
    await second;
    expect(firstDone).toBe(true);
    expect(heap.isClosed).toBe(true);
  });

  // Regression (found in review): a heap with sweeper threads of its own
  // (the default) was never finalized when dropped without close(): the
  // pool's threads held it through the pool's error listener.
  it('heaps dropped without close() are finalized, with or without threads of their own: memory destroyed, threads ended', () => {
    const fixture = fileURLToPath(new URL('./fixtures/unclosed-heaps.mjs', import.meta.url));
    const r = spawnSync(process.execPath, ['--expose-gc', fixture], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { destroyed: boolean[]; before: number; during: number; after: number };
    expect(out.destroyed).toEqual([true, true, true, true]);
    expect(out.during, 'the pools had threads').toBeGreaterThanOrEqual(out.before + 4);
    expect(out.after, 'and they ended').toBe(out.before);
  }, 90_000);

  // Regression (found in review): each worker's end unloaded the addon and
  // its per-process statics, and the next worker opened them again.
  it('heaps in short-lived worker threads leave no descriptor behind and get ids of their own, the main thread never loading the addon', () => {
    const fixture = fileURLToPath(new URL('./fixtures/worker-heaps-fds.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [fixture, '8'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { oomFds: number[]; heapIds: number[]; addonMapped: boolean };
    expect(out.oomFds.every((n) => n <= 1), out.oomFds.join()).toBe(true);
    expect(new Set(out.heapIds).size, `heap ids ${out.heapIds.join()}`).toBe(8);
    expect(out.addonMapped).toBe(true);
  }, 90_000);

  it('settles as a top-level await in a program of its own', () => {
    const r = spawnSync(process.execPath, [FIXTURE], { encoding: 'utf8', timeout: 60_000 });
    expect(r.error).toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('booted 2');
    expect(r.stdout).toContain('done');
  }, 90_000);
});
