// The child leaves the forking thread's CPU (native/child.cc,
// cpusAwayFromHere): a new child preempts its parent on the parent's CPU, and
// the scheduler moves one of them to an idle CPU only at a later balancing
// tick, which the parent spent runnable inside the fork pause. The child's
// allowed CPUs are the process's less one; with one CPU it stays. "The
// process's": the forking thread's, and those its heap's creator had.
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canHoldMainThread, setMainThreadCpus } from '../bench/lib/main-cpu.js';
import { heapInternals } from '../src/internal.js';
import { allowedCpus as cpus } from './helpers/cpus.js';
import { closeHeapsAfterEach, makeHeap, withTimeout } from './helpers/common.js';

closeHeapsAfterEach();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether taskset can set this process's main thread here. */
const haveTaskset = canHoldMainThread();

/** Holds this process's main thread (only) to `list`. */
function pinMainThread(list: number[]): void {
  if (!setMainThreadCpus(list)) throw new Error(`taskset could not hold the main thread to ${list.join(',')}`);
}

/** Waits until the child's CPUs differ from `from` (it moves itself as its second instruction; bounded). */
async function cpusOnceMoved(child: number, from: Set<number>): Promise<Set<number>> {
  let theirs = cpus(child);
  const same = (a: Set<number>) => a.size === from.size && [...a].every((c) => from.has(c));
  for (let i = 0; i < 200 && same(theirs); i++) {
    await sleep(10);
    theirs = cpus(child);
  }
  return theirs;
}

describe('the child and the CPUs', () => {
  it.runIf(cpus('self').size > 1)('a held child may run on every CPU of the process but one', async () => {
    const mine = cpus('self');
    const heap = makeHeap({ sweepThreads: 0, childTimeoutMs: 20_000, faultInjectionForTesting: { kind: 'delay-before-mark', arg: 3000 } });
    const T = heap.defineStruct('T', { next: 'ref' });
    heap.root(T.alloc());
    const pid = new Promise<number>((r) => heap.once('fork', (e) => r(e.pid)));
    const cycle = heap.collect();
    const child = await withTimeout(pid, 10_000, 'fork event');
    // It moves itself as its second instruction: give it a moment to run (bounded).
    let theirs = cpus(child);
    for (let i = 0; i < 200 && theirs.size === mine.size; i++) {
      await sleep(10);
      theirs = cpus(child);
    }
    expect(theirs.size).toBe(mine.size - 1);
    for (const c of theirs) expect(mine.has(c)).toBe(true);
    // The parent's own are untouched.
    expect([...cpus('self')]).toEqual([...mine]);
    await withTimeout(cycle, 20_000, 'cycle');
  }, 30_000);

  it.runIf(cpus('self').size > 1 && haveTaskset)('a main thread pinned to one CPU after the heap was made does not pin the child beside it', async () => {
    const mine = cpus('self');
    const all = [...mine];
    const heap = makeHeap({ sweepThreads: 0, childTimeoutMs: 20_000, faultInjectionForTesting: { kind: 'delay-before-mark', arg: 3000 } });
    const T = heap.defineStruct('T', { next: 'ref' });
    heap.root(T.alloc());
    const one = Math.min(...mine);
    pinMainThread([one]);
    try {
      expect([...cpus('self')]).toEqual([one]);
      const pid = new Promise<number>((r) => heap.once('fork', (e) => r(e.pid)));
      const cycle = heap.collect();
      cycle.catch(() => {});  // (awaited below; a failed expect closes the heap under it)
      const child = await withTimeout(pid, 10_000, 'fork event');
      // Born with the forking thread's one CPU; it leaves it for the others the heap's creator had.
      const theirs = await cpusOnceMoved(child, new Set([one]));
      expect(theirs.has(one)).toBe(false);
      expect(theirs.size).toBe(mine.size - 1);
      for (const c of theirs) expect(mine.has(c)).toBe(true);
      await withTimeout(cycle, 20_000, 'cycle');
    } finally {
      pinMainThread(all);
    }
    expect([...cpus('self')]).toEqual([...mine]);
  }, 30_000);

  it.runIf(cpus('self').size > 1 && haveTaskset)('nor the huge-page restore thread it starts after a cycle', async () => {
    const mine = cpus('self');
    const all = [...mine];
    const heap = makeHeap({ hugePages: true, sweepThreads: 0 });
    if (!heapInternals(heap).regions.hugePages) {
      console.warn('skipped: no transparent huge pages for the arena');
      return;
    }
    const T = heap.defineStruct('T', { next: 'ref' });
    heap.root(T.alloc());
    const one = Math.min(...mine);
    pinMainThread([one]);
    try {
      // The thread is made at the first cycle's end, by the (pinned) main thread.
      await withTimeout(heap.collect(), 20_000, 'cycle');
      let tid = 0;
      for (let i = 0; i < 200 && tid === 0; i++) {
        for (const t of readdirSync('/proc/self/task')) {
          try {
            if (readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'forkgc-restore') tid = Number(t);
          } catch { /* the thread ended meanwhile */ }
        }
        if (tid === 0) await sleep(10);
      }
      expect(tid, 'a forkgc-restore thread').toBeGreaterThan(0);
      const theirs = await cpusOnceMoved(tid, new Set([one]));
      expect([...theirs].sort()).toEqual([...mine].sort());
    } finally {
      pinMainThread(all);
    }
  }, 30_000);
});
