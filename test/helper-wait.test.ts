/**
 * A cycle the pacer starts does not fork, and so wait in the pause, while
 * one of the heap's own threads is in a piece of work that fork() would
 * wait for (src/api/core.ts, helpersDefer; native/huge_page_restore.cc).
 *
 * fork() waits for the restore thread's range or pages in progress (the
 * hold waits for it, and the kernel would: it takes the mmap lock), and on
 * the project's VM such a piece takes 1-14 ms. So a cycle the pacer wants
 * stops the heap's threads from taking new work and, while a piece is in
 * progress, goes to the next safepoint or turn of the event loop (a timer
 * of a millisecond: the unref'd immediate it was before waited for the
 * loop's next wake-up, 7.2 s in this test's worker, a second in a probe
 * with a 1 s interval running). Here the restore thread's pieces are made
 * to take 80 ms (setHugePageRestoreDelayForTesting): a fork that waited for
 * one has a pause of tens of ms (checked failing before: the cycle started
 * at the safepoint, and a fork's pause was 78-81 ms), one that did not a few. An explicit
 * collect() is not put off: its cycle starts in the call.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import type { CycleStats } from '../src/index.js';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';

closeHeapsAfterEach();

const PIECE_MS = 80;

const populates = (() => {
  const [major, minor] = readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number);
  return major > 5 || (major === 5 && minor >= 14);
})();

/**
 * A heap with 32 MiB of resident objects on 4 KiB pages whose restore
 * thread, right after a cycle, is in the first of its (slow) pieces of
 * work: the thread exists from the first cycle's end, so the pieces are
 * made slow from the second cycle on.
 */
async function heapWithRestoreAtWork(auto: boolean) {
  const heap = makeHeap({ maxHeap: '256MiB', mode: 'fork', hugePages: false, auto, minTriggerBytes: '1MiB', gcPercent: 10 });
  const core = heapInternals(heap);
  const objects = 8192;  // 4000 bytes each, every page written: 32 MiB for the thread to make writable again
  const list = heap.root(heap.arrays.alloc(objects));
  for (let i = 0; i < objects; i++) heap.arrays.set(list.get(), i, heap.bytes.alloc(4000));
  for (let i = 0; i < objects; i++) heap.bytes.set(heap.arrays.get(list.get(), i), 0, 1);
  const figures = () => core.addon.hugePageRestoreFigures(core.regions.id);
  const working = () => figures().working;
  await heap.collect();
  // Until the thread is done with the first cycle's pages (bounded: 10 s).
  let last = -1;
  for (let quiet = 0, i = 0; quiet < 3 && i < 200; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const made = figures().bytesMadeWritable;
    quiet = made === last && !working() ? quiet + 1 : 0;
    last = made;
  }
  core.addon.setHugePageRestoreDelayForTesting(core.regions.id, PIECE_MS);
  await heap.collect();
  const until = Date.now() + 5000;
  while (!working() && Date.now() < until) await new Promise((r) => setTimeout(r, 1));
  expect(working(), 'the restore thread took a piece of work after the cycle').toBe(true);
  return { heap, core, list, working };
}

describe.skipIf(!populates)('a cycle is not forked while the heap\'s threads are in a piece of work', () => {
  it('an explicit collect() is not put off: its cycle starts in the call (its snapshot is the heap the call found)', { timeout: 60_000 }, async () => {
    const { heap, core, list, working } = await heapWithRestoreAtWork(false);
    let forked = false;
    heap.once('fork', () => { forked = true; });
    const cycle = heap.collect();
    expect(forked, 'forked within the call').toBe(true);
    core.addon.setHugePageRestoreDelayForTesting(core.regions.id, 0);
    await cycle;
    const until = Date.now() + 10_000;
    while (working() && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    expect(heap.bytes.get(heap.arrays.get(list.get(), 8191), 0)).toBe(1);
  });

  it('a cycle the pacer starts at a safepoint is put off while the piece is in progress', { timeout: 60_000 }, async () => {
    const { heap, core, working } = await heapWithRestoreAtWork(true);
    let started = 0;
    heap.on('cycleStart', () => { started++; });
    const forked = new Promise<number>((resolve) => heap.once('fork', (e) => resolve(e.pauseUs)));
    // Past the trigger (a tenth of the 32 MiB live), all at once (no turn of
    // the event loop), then a safepoint: no cycle while the piece is in progress.
    for (let i = 0; i < 2048; i++) heap.bytes.alloc(4000);
    expect(working()).toBe(true);
    expect(heapInternals(heap).policy.shouldCollect(heapInternals(heap).account.allocatedSinceCycle), 'a cycle is due').toBe(true);
    const t0 = performance.now();
    heap.safepoint();
    expect(core.collector.busy, 'a cycle started at the safepoint').toBe(false);
    // It starts from the event loop once the piece is done.
    const swept = new Promise<void>((resolve) => heap.once('sweepEnd', () => resolve()));
    const pauseUs = await forked;
    // Soon after the piece is done: the retry is a timer (an unref'd
    // immediate waited for the loop's next wake-up: 7.2 s here before).
    expect(performance.now() - t0, 'ms from the safepoint to the fork').toBeLessThan(PIECE_MS + 1000);
    expect(started).toBe(1);
    expect(pauseUs / 1000, 'fork pause, ms').toBeLessThan(PIECE_MS / 2);
    core.addon.setHugePageRestoreDelayForTesting(core.regions.id, 0);
    await swept;
  });

  // Found in a full test run: a program that never yields, whose prefault
  // thread got no CPU in a chunk (a loaded machine), had its due cycles put
  // off for as long: no cycle in 64 MB of allocation (test/progress.test.ts).
  // A cycle is put off for at most HELPER_DEFER_MAX_MS (100 ms); then it
  // starts, and its fork waits for the piece. Here the prefault thread
  // sleeps 2 s in each chunk: before, the cycle started when the chunk was
  // done, 1.9 s after it was due; now about 100 ms.
  it('a cycle put off for a piece that does not end starts after 100 ms all the same (a program that never yields)', { timeout: 60_000 }, () => {
    // 2 GiB: the pacer's soft limit (90% of it, where the cycle goes first) stays far.
    const heap = makeHeap({ maxHeap: '2GiB', mode: 'fork', auto: true, sweepThreads: 0 });
    const core = heapInternals(heap);
    const T = heap.defineStruct('DeferT', { next: 'ref', v: 'f64' });
    T.alloc();  // the thread is made at the first growth
    core.addon.setGrowthPrefaultDelayForTesting(core.regions.id, 2000);
    let startedAt = 0;
    heap.on('cycleStart', () => { startedAt ||= performance.now(); });
    let dueAt = 0;
    const t0 = performance.now();
    try {
      while (startedAt === 0 && performance.now() - t0 < 5000) {
        for (let i = 0; i < 1000; i++) T.alloc();
        if (dueAt === 0 && core.policy.shouldCollect(core.account.allocatedSinceCycle)) dueAt = performance.now();
        heap.safepoint();
      }
    } finally {
      core.addon.setGrowthPrefaultDelayForTesting(core.regions.id, 0);
    }
    expect(dueAt, 'a cycle came due').toBeGreaterThan(0);
    expect(startedAt, 'the cycle started').toBeGreaterThan(0);
    expect(startedAt - dueAt, 'ms from due to start').toBeLessThan(800);
  });

  // Only a fork waits for the helpers' pieces: a cycle the marker choice
  // marks in-process (src/collector/mark-choice.ts) was put off all the
  // same, up to 100 ms, before the choice was asked first. Here it starts
  // at the safepoint where it came due, with the prefault thread in a 2 s chunk.
  it('a cycle that will mark in-process is not put off: it starts at the safepoint where it came due', { timeout: 60_000 }, async () => {
    const heap = makeHeap({ maxHeap: '2GiB', mode: 'fork', auto: true, sweepThreads: 0, inProcessMarkUs: 50_000, minTriggerBytes: '32MiB' });
    const core = heapInternals(heap);
    const T = heap.defineStruct('DeferInProcessT', { next: 'ref', v: 'f64' });
    heap.root(T.alloc());
    await heap.collect();  // the first cycle forks; its figures let the next mark in-process
    core.addon.setGrowthPrefaultDelayForTesting(core.regions.id, 2000);
    const cycle = new Promise<CycleStats>((resolve) => heap.once('cycle', resolve));
    let started = false;
    heap.on('cycleStart', () => { started = true; });
    let dueBeforeStart = 0;
    let sawBusy = false;
    try {
      for (let round = 0; !started && round < 100_000; round++) {
        for (let i = 0; i < 1000; i++) T.alloc();
        sawBusy ||= core.addon.growthPrefaultFigures(core.regions.id).working;
        if (core.policy.shouldCollect(core.account.allocatedSinceCycle)) dueBeforeStart++;
        heap.safepoint();
      }
    } finally {
      core.addon.setGrowthPrefaultDelayForTesting(core.regions.id, 0);
    }
    expect(started, 'the cycle started').toBe(true);
    expect((await cycle).marker).toBe('in-process');
    expect(sawBusy, 'the prefault thread was in a chunk').toBe(true);
    expect(dueBeforeStart, 'safepoints at which the cycle was due (the last started it)').toBe(1);
  });
});
