/**
 * Huge pages after a cycle (HeapOptions.restoreHugePages; native/huge_page_restore.cc).
 *
 * While a child shares the arena, the parent's first write to a shared 2 MiB
 * page splits it into small pages, and it stays split after the child is
 * gone, so every later fork copies 512 entries for it. After each cycle the
 * heap merges such ranges back on a thread of its own. Checked here from the
 * arena mapping's own AnonHugePages line in /proc/self/smaps:
 *   - a cycle with scattered writes splits the ranges it wrote (the kernel's
 *     part: if it does not, there is nothing to test and the test says so);
 *   - with the option on, they are huge again soon after the cycle, and the
 *     next cycle reports them (hugeRangesRestored, hugeRestoreMs);
 *   - with it off, they stay split (the same check fails: khugepaged alone
 *     merges a few MiB every 10 s);
 *   - ranges given back to the OS are left alone (hugeRangesToRestore);
 *   - closing the heap while the thread works joins it.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Heap } from '../src/index.js';
import { heapInternals } from '../src/internal.js';
import { hugeRangesToRestore } from '../src/memory/huge-pages.js';
import { FREE_RELEASED, SPAN_FREE, SPAN_IN_USE, SPAN_WORDS, SW_AUX, SW_STATE } from '../src/memory/layout.js';
import { closeHeap, closeHeapsAfterEach, makeHeap, type Ref } from './helpers/common.js';
import { expectRefusedRestoreThreadHarmless } from './helpers/restore-thread-refused.js';
import { anonHugeBytesAt } from './helpers/smaps.js';

closeHeapsAfterEach();

const MiB = 1024 * 1024;


const thpEnabled = (() => {
  try {
    return !readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').includes('[never]');
  } catch {
    return false;
  }
})();

/** ~`mib` MiB of 2047-node trees off one rooted array, and a writer of random leaves. */
function build(heap: Heap, mib: number) {
  const Node = heap.defineStruct('PNode', { left: 'ref', right: 'ref', w: 'f64' });
  const tree = (d: number): Ref => {
    const n = Node.alloc();
    if (d > 0) {
      Node.set.left(n, tree(d - 1));
      Node.set.right(n, tree(d - 1));
    }
    return n;
  };
  const chunks = Math.floor((mib * MiB) / (2047 * Node.size));
  const spine = heap.root(heap.arrays.alloc(chunks));
  for (let i = 0; i < chunks; i++) heap.arrays.set(spine.get(), i, tree(10));
  let seed = 1;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
  return () => {
    for (let k = 0; k < 1000; k++) {
      let n = heap.arrays.get(spine.get(), Math.floor(rnd() * chunks));
      for (let d = 0; d < 10; d++) n = rnd() < 0.5 ? Node.get.left(n) : Node.get.right(n);
      Node.set.w(n, Node.get.w(n) + 1);
    }
  };
}

/** One cycle with the mutator writing scattered leaves until it is over. */
async function cycleWithWrites(heap: Heap, write: () => void) {
  let done = false;
  const p = heap.collect().finally(() => { done = true; });
  while (!done) {
    write();
    await new Promise((r) => setImmediate(r));
  }
  return p;
}

async function hugeAfter(arena: bigint, wantBytes: number, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let now = anonHugeBytesAt(arena);
  while (now < wantBytes && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    now = anonHugeBytesAt(arena);
  }
  return now;
}

/** Huge pages khugepaged has merged, system-wide (0 where the count cannot be read). */
function khugepagedCollapsed(): number {
  try {
    return Number(readFileSync('/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed', 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

function threadNames(): string[] {
  return readdirSync('/proc/self/task').map((t) => {
    try {
      return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
    } catch {
      return '';  // the thread ended meanwhile
    }
  });
}

describe.skipIf(!thpEnabled)('restoring huge pages after a cycle', () => {
  for (const restore of [true, false]) {
    it(`restoreHugePages: ${restore}`, { timeout: 60_000 }, async () => {
      const heap = makeHeap({ maxHeap: '256MiB', hugePages: true, restoreHugePages: restore });
      const arena = heapInternals(heap).regions.arenaAddress;
      const write = build(heap, 64);
      await heap.collect();
      const before = anonHugeBytesAt(arena);
      if (before < 32 * MiB) {
        console.warn(`skipped: the kernel gave the arena ${before / MiB} MiB of huge pages`);
        return;
      }
      // Nothing is merged back while the sweep runs (it would take a CPU
      // from it): the main thread held for 200 ms as the sweep starts, the
      // thread has merged no range since the fork stopped it.
      const core = heapInternals(heap);
      const collapsed = () => core.addon.hugePageRestoreFigures(core.regions.id).rangesCollapsed;
      let atFork = -1;
      let atSweepStart = -2;
      const onFork = () => { atFork = collapsed(); };
      const onSweepStart = () => {
        const until = performance.now() + 200;
        while (performance.now() < until) { /* hold */ }
        atSweepStart = collapsed();
      };
      heap.on('fork', onFork);
      heap.on('sweepStart', onSweepStart);
      const khugepaged0 = khugepagedCollapsed();
      await cycleWithWrites(heap, write);
      heap.off('fork', onFork);
      heap.off('sweepStart', onSweepStart);
      expect(atSweepStart).toBe(atFork);
      const split = anonHugeBytesAt(arena);
      const after = await hugeAfter(arena, before * 0.9, 5000);
      if (restore) {
        // Split by the writes (or already merged back: the thread starts when the sweep is over).
        expect(after).toBeGreaterThanOrEqual(before * 0.9);
        const next = await heap.collect();
        // Less the ranges khugepaged merged meanwhile: it scans the arena too
        // (MADV_HUGEPAGE) and may take a range before the thread reaches it
        // (the likely cause of 29 of 32 once, in a fresh clone's full run);
        // its count is the system's, so this can only loosen the bound.
        const byKhugepaged = khugepagedCollapsed() - khugepaged0;
        expect(next.hugeRangesRestored).toBeGreaterThanOrEqual(Math.floor((before * 0.9) / (2 * MiB)) - byKhugepaged);
        expect(next.hugeRestoreMs).toBeGreaterThan(0);
        // The thread is named, for traces and top (bench/sched-waits.ts).
        expect(threadNames()).toContain('forkgc-restore');
      } else {
        expect(split).toBeLessThan(before / 2);
        expect(after).toBeLessThan(before / 2);
        const next = await heap.collect();
        expect(next.hugeRangesRestored).toBe(0);
      }
    });
  }

  // Regression (found in review): the thread was a std::thread in a build
  // without exceptions, so a pthread_create refused (EAGAIN: a pids-cgroup
  // or RLIMIT_NPROC limit) aborted the whole process at the end of a cycle.
  it('a restore thread that cannot be created costs the process nothing: cycles complete, the heap closes', { timeout: 60_000 }, () => {
    expectRefusedRestoreThreadHarmless('huge');
  });

  it('closing the heap while ranges are being merged joins the thread', { timeout: 60_000 }, async () => {
    for (let i = 0; i < 3; i++) {
      const heap = makeHeap({ maxHeap: '256MiB', hugePages: true });
      const write = build(heap, 32);
      await cycleWithWrites(heap, write);
      await closeHeap(heap);  // the restore thread is most likely mid-range here
    }
    const heap = makeHeap({ maxHeap: '64MiB', hugePages: true });
    build(heap, 8);
    expect((await heap.collect()).objectsMarked).toBeGreaterThan(0);
  });
});

describe('which ranges are merged back', () => {
  it('every range with a span not given back to the OS, and no other', () => {
    const topSpan = 32 * 4;
    const spans = new Int32Array(topSpan * SPAN_WORDS);
    const set = (s: number, state: number, aux = 0) => {
      spans[s * SPAN_WORDS + SW_STATE] = state;
      spans[s * SPAN_WORDS + SW_AUX] = aux;
    };
    for (let s = 0; s < topSpan; s++) set(s, SPAN_FREE, FREE_RELEASED);
    set(33, SPAN_IN_USE);        // range 1: one span in use
    set(64 + 5, SPAN_FREE, 0);   // range 2: a resident free span
    // range 0: only span 0 (reserved, never touched) is not released; range 3: all released
    expect([...hugeRangesToRestore(spans, topSpan)]).toEqual([0, 1, 1, 0]);
    expect([...hugeRangesToRestore(spans, 40)]).toEqual([0, 1]);
  });
});

describe.skipIf(!thpEnabled)('another heap\'s child (found in review)', () => {
  // A fork that excludes nothing (selectiveFork: false) shares every heap's
  // arena with its child; only the forking heap's restore thread was held,
  // and another heap's kept collapsing ranges the child shared (each a 2 MiB
  // copy for nothing). Every restore thread now waits while such a child lives.
  it('no heap collapses a range while a child that shares every arena lives', { timeout: 60_000 }, async () => {
    const b = makeHeap({ maxHeap: '512MiB', hugePages: true, selectiveFork: false, sweepThreads: 0 });
    const a = makeHeap({
      maxHeap: '64MiB', hugePages: true, selectiveFork: false, sweepThreads: 0,
      faultInjectionForTesting: { kind: 'delay-before-mark', arg: 600 },
    });
    const A = a.defineStruct('A', { v: 'i32' });
    const keepA = a.root(A.alloc({ v: 1 }));
    const bInternals = heapInternals(b);
    const figures = () => bInternals.addon.hugePageRestoreFigures(bInternals.regions.id).rangesCollapsed
      + bInternals.addon.hugePageRestoreFigures(bInternals.regions.id).rangesFailed;
    const write = build(b, 192);
    await b.collect();
    let atFork = -1;
    a.once('fork', () => { atFork = figures(); });
    let atEnd = -1;
    a.once('childDone', () => { atEnd = figures(); });
    // b's cycle splits its ranges, and its thread is given them to merge back
    // when b's stream is accepted ('stream'): a forks right then.
    let cycleA: Promise<unknown> | undefined;
    b.once('stream', () => { cycleA = a.collect(); });
    await cycleWithWrites(b, write);
    await cycleA;
    expect(A.get.v(keepA.get())).toBe(1);
    expect(atFork).toBeGreaterThanOrEqual(0);
    expect(atEnd, 'ranges b took while a\'s child lived').toBe(atFork);
    // And b's thread goes on once the child is gone: it had b's ranges to go
    // through when a forked (the test is not vacuous).
    const until = Date.now() + 10_000;
    while (figures() === atEnd && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(figures()).toBeGreaterThan(atEnd);
  });
});
