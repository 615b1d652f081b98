// The inline sweep (src/collector/sweep-driver.ts): a heap small enough for
// the inlineSweepUs budget is swept whole on the main thread when marking
// ends; a sweep that runs over hands the rest of the cursor to the sweeper
// threads; inlineSweepUs: 0 always uses the threads. Every path must free
// exactly the garbage and keep every survivor intact.
import { describe, expect, it } from 'vitest';
import { closeHeapsAfterEach, expectError, isFreed, makeHeap, MODES, type HeapOptions } from './helpers/common.js';
import { InvalidOptionError, type Heap } from '../src/index.js';
import { heapInternals } from '../src/internal.js';
import { SweepSpeed } from '../src/collector/sweep-speed.js';

closeHeapsAfterEach();

interface Built {
  heap: Heap;
  keep: number[];
  garbage: number[];
  check(): void;
}

/** A heap with `n` small objects, every third kept by a root array, the rest garbage. */
function build(options: HeapOptions, n: number): Built {
  const heap = makeHeap({ sweepThreads: 1, ...options });
  const T = heap.defineStruct('T', { id: 'u32', next: 'ref' });
  const keep: number[] = [];
  const garbage: number[] = [];
  for (let i = 0; i < n; i++) (i % 3 === 0 ? keep : garbage).push(T.alloc({ id: i }));
  const table = heap.arrays.alloc(keep.length);
  keep.forEach((r, i) => heap.arrays.set(table, i, r));
  heap.root(table);
  return {
    heap, keep, garbage,
    check() {
      keep.forEach((r, i) => expect(T.get.id(r)).toBe(i * 3));
      expect(garbage.every((g) => isFreed(heap, g))).toBe(true);
    },
  };
}

/** The driver's measured sweep speed (private), for steering the decision in a test. */
function speed(h: Heap): SweepSpeed {
  return (heapInternals(h).collector as unknown as { sweeper: { speed: SweepSpeed } }).sweeper.speed;
}

describe('inline sweep of a small heap', () => {
  for (const mode of MODES) {
    it(`${mode}: a small heap is swept whole on the main thread, with no sweeper thread involved`, async () => {
      const b = build({ mode }, 30_000);
      const c = await b.heap.collect();
      expect(c.objectsFreed).toBe(b.garbage.length);
      expect(c.workerSpansSwept, 'no sweeper thread swept').toBe(0);
      expect(c.spansSwept, 'the main thread swept every span').toBeGreaterThan(0);
      expect(c.stalls.sweepStart.count).toBe(1);
      expect(c.stalls.sweepEnd.count, 'no separate sweep end: it completed inside the start').toBe(0);
      b.check();
      // And the heap goes on: the freed slots are handed out again.
      const again = await b.heap.collect();
      expect(again.objectsFreed).toBe(0);
      b.check();
    });
  }

  it('inlineSweepUs: 0 hands every sweep to the sweeper threads', async () => {
    const b = build({ inlineSweepUs: 0 }, 30_000);
    const c = await b.heap.collect();
    expect(c.objectsFreed).toBe(b.garbage.length);
    expect(c.workerSpansSwept, 'the sweeper thread swept').toBeGreaterThan(0);
    b.check();
  });

  it('a heap over the budget goes to the threads', async () => {
    const b = build({}, 30_000);
    speed(b.heap).reset(1e9);  // every span "costs" a second: nothing fits
    const c = await b.heap.collect();
    expect(c.objectsFreed).toBe(b.garbage.length);
    expect(c.workerSpansSwept).toBeGreaterThan(0);
    b.check();
  });

  it('an inline sweep that overruns stops at its deadline and the threads sweep the rest from the cursor', async () => {
    // 1 µs of budget that the (doctored) speed says fits: the main thread
    // sweeps one batch, finds its 2 µs deadline passed, and leaves the rest.
    const b = build({ inlineSweepUs: 1 }, 120_000);
    speed(b.heap).reset(1e-6);
    const c = await b.heap.collect();
    expect(c.objectsFreed).toBe(b.garbage.length);
    expect(c.spansSwept, 'the main thread swept a part').toBeGreaterThan(0);
    expect(c.workerSpansSwept, 'the sweeper thread swept the rest').toBeGreaterThan(0);
    b.check();
  });

  it('with no sweeper threads, an overrun inline sweep is finished in main-thread slices', async () => {
    const b = build({ inlineSweepUs: 1, sweepThreads: 0 }, 120_000);
    speed(b.heap).reset(1e-6);
    const c = await b.heap.collect();
    expect(c.objectsFreed).toBe(b.garbage.length);
    expect(c.workerSpansSwept).toBe(0);
    b.check();
  });

  it('the driver learns its speed from the threads while the heap is swept there', async () => {
    const b = build({}, 200_000);  // more than a batch of spans: the thread's sweep is a measurement
    // A second per span: the sweep goes to the thread, and whatever the thread
    // measures, even preempted on a loaded machine, is faster than that.
    speed(b.heap).reset(1e9);
    const first = await b.heap.collect();
    expect(first.workerSpansSwept).toBeGreaterThanOrEqual(16);
    expect(speed(b.heap).nsPerSpan, 'the thread measured the real speed').toBeLessThan(1e9);
    b.check();
  });

  it('an overrun forgets the faster samples: the next sweeps go to the threads', async () => {
    const b = build({ inlineSweepUs: 1 }, 120_000);
    speed(b.heap).reset(1e-6);
    await b.heap.collect();
    expect(speed(b.heap).nsPerSpan).toBeGreaterThan(1e-6);
    const again = await b.heap.collect();
    expect(again.spansSwept, 'the main thread did not try again').toBe(0);
    b.check();
  });

  for (const event of ['sweepStart', 'sweepProgress'] as const) {
    it(`a '${event}' listener that closes the heap stops the inline sweep (the cycle is CLOSED, nothing touches the unmapped heap)`, async () => {
      // (No threads: close() then unmaps the heap at once, not after the pool has stopped.)
      const b = build({ sweepThreads: 0 }, 30_000);
      let closing: Promise<void> | undefined;
      b.heap.on(event, () => { closing ??= b.heap.close(); });
      const errors: unknown[] = [];
      const onError = (e: unknown): void => { errors.push(e); };
      process.on('uncaughtException', onError);
      try {
        await expect(b.heap.collect()).rejects.toMatchObject({ reason: 'CLOSED' });
        await closing;
        await new Promise((r) => setImmediate(r));
      } finally {
        process.off('uncaughtException', onError);
      }
      expect(errors).toEqual([]);
      expect(b.heap.isClosed).toBe(true);
    });
  }

  it('rejects a bad inlineSweepUs', () => {
    for (const bad of [-1, 1.5, 2_000_000, '10' as unknown as number]) {
      expectError(() => makeHeap({ inlineSweepUs: bad }), InvalidOptionError, 'ERR_INVALID_OPTION', String(bad));
    }
  });
});

describe('the sweep speed estimate', () => {
  it('is the lowest of the last 8 samples: a preempted sweep does not count, an old fast one ages out', () => {
    const s = new SweepSpeed(3000);
    expect(s.nsPerSpan).toBe(3000);
    s.measured(1000 * 100, 100);  // 1000 ns/span
    expect(s.nsPerSpan).toBe(1000);
    s.measured(50_000 * 100, 100);  // preempted: 50 µs/span
    expect(s.nsPerSpan).toBe(1000);
    for (let i = 0; i < 8; i++) s.measured(2000 * 10, 10);
    expect(s.nsPerSpan, 'the 1000 aged out').toBe(2000);
  });

  it('an overrun replaces every sample by at least twice the figure', () => {
    const s = new SweepSpeed(1000);
    s.overran(100 * 16, 16);  // the cut-off sweep measured 100 ns/span, but it overran
    expect(s.nsPerSpan).toBe(2000);
    s.overran(10_000 * 16, 16);
    expect(s.nsPerSpan).toBe(10_000);
  });
});
