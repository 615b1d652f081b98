// What a sweep keeps resident (Policy.retainFreeBytes, retainTarget) and what
// it gives back (Allocator.releaseFreeSpans), on a real heap: free memory the
// mutator is about to take again stays, the excess of a live set that shrank
// goes back, and the spans kept are the ones taken first. The policy as a
// pure function: test/pacer.test.ts.
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import { FREE_RELEASED, SPAN_BYTES, SPAN_FREE, SPAN_WORDS, SW_AUX, SW_STATE } from '../src/memory/layout.js';
import type { Heap } from '../src/index.js';
import { closeHeapsAfterEach, makeHeap, MiB } from './helpers/common.js';

closeHeapsAfterEach();

/** Spans that once held objects (below the high water, above the top too) that are free and still resident (not given back). */
function residentFreeSpans(heap: Heap): number[] {
  const core = heapInternals(heap);
  const spans = core.views.spans;
  const out: number[] = [];
  for (let s = 1; s < core.allocator.highWaterSpan; s++) {
    if (spans[s * SPAN_WORDS + SW_STATE] === SPAN_FREE && spans[s * SPAN_WORDS + SW_AUX] !== FREE_RELEASED) out.push(s);
  }
  return out;
}

/** Stop-the-world, one thread: no child, no sweeper threads, every span swept when collect() resolves. */
const options = { mode: 'stw', sweepThreads: 0, maxHeap: '256MiB', minTriggerBytes: '4MiB' } as const;

describe('retention of free spans after a sweep', () => {
  it('a heap that frees what it allocated keeps it resident for the next cycle: nothing given back', async () => {
    const heap = makeHeap(options);
    const T = heap.defineStruct('T', { next: 'ref', v: 'f64' });
    const keep = heap.root(T.alloc({ v: 1 }));
    // ~3 MiB of garbage a cycle (under the 4 MiB goal of a nearly empty heap)
    const churn = () => { for (let i = 0; i < 3 * MiB / 32; i++) T.alloc({ v: i }); };
    churn();
    await heap.collect();
    for (let cycle = 0; cycle < 4; cycle++) {
      churn();
      const c = await heap.collect();
      expect(c.bytesFreed, `cycle ${cycle}`).toBeGreaterThan(2 * MiB);
      expect(c.bytesReturned, `cycle ${cycle}: free memory the next cycle reuses was given back`).toBe(0);
    }
    expect(T.get.v(keep.get())).toBe(1);
    expect(residentFreeSpans(heap).length * SPAN_BYTES).toBeLessThanOrEqual(heapInternals(heap).policy.retainFreeBytes(heap.stats().liveBytes));
  }, 60_000);

  it('after the live set shrinks and stays small, the excess goes back within 2 cycles', async () => {
    const heap = makeHeap(options);
    const T = heap.defineStruct('T', { next: 'ref', v: 'f64' });
    const big = heap.root(0);
    for (let i = 0; i < 32 * MiB / 32; i++) big.set(T.alloc({ next: big.get(), v: i }));
    const small = heap.root(T.alloc({ v: 7 }));
    const c0 = await heap.collect();
    expect(c0.liveBytesAfter).toBeGreaterThan(30 * MiB);
    big.release();
    let returned = 0;
    for (let cycle = 0; cycle < 2; cycle++) {
      for (let i = 0; i < 10_000; i++) T.alloc({ v: i });  // a little garbage: the heap goes on
      returned += (await heap.collect()).bytesReturned;
    }
    const live = heap.stats().liveBytes;
    expect(live).toBeLessThan(MiB);
    const retain = heapInternals(heap).policy.retainFreeBytes(live);
    expect(retain).toBeLessThan(5 * MiB);
    expect(returned, 'the free memory beyond the goal went back').toBeGreaterThanOrEqual(32 * MiB - retain - 2 * MiB);
    expect(heap.stats().returnedBytesTotal).toBe(returned + c0.bytesReturned);
    expect(residentFreeSpans(heap).length * SPAN_BYTES).toBeLessThanOrEqual(retain);
    expect(T.get.v(small.get())).toBe(7);
  }, 60_000);

  it('the spans kept resident are taken before a released one is faulted back in', async () => {
    const heap = makeHeap(options);
    const core = heapInternals(heap);
    const T = heap.defineStruct('T', { next: 'ref', v: 'f64' });
    // ~24 MiB of garbage, then one rooted object in the top span: the free
    // spans below it stay under the top, resident (the lowest) or released.
    for (let i = 0; i < 24 * MiB / 32; i++) T.alloc({ v: i });
    const pin = heap.root(T.alloc({ v: 3 }));
    const c = await heap.collect();
    expect(c.bytesReturned).toBeGreaterThan(8 * MiB);
    const resident = new Set(residentFreeSpans(heap));
    expect(resident.size).toBeGreaterThan(32);
    const released: number[] = [];
    for (let s = 1; s < core.allocator.topSpan; s++) {
      if (core.views.spans[s * SPAN_WORDS + SW_AUX] === FREE_RELEASED && core.views.spans[s * SPAN_WORDS + SW_STATE] === SPAN_FREE) released.push(s);
    }
    expect(released.length).toBeGreaterThan(0);
    // 2 MiB of new objects, kept alive: 32 spans' worth, fewer than are resident.
    const list = heap.root(0);
    for (let i = 0; i < 2 * MiB / 32; i++) list.set(T.alloc({ next: list.get(), v: i }));
    const taken = released.filter((s) => core.views.spans[s * SPAN_WORDS + SW_STATE] !== SPAN_FREE);
    expect(taken, 'released spans taken while resident free ones were left').toEqual([]);
    expect(T.get.v(pin.get())).toBe(3);
  }, 60_000);

  it('free spans kept resident, then left above a lowered top, go back once the live set is gone (found in review)', async () => {
    const heap = makeHeap({ ...options, hugePages: false });
    const core = heapInternals(heap);
    const N = 4000;
    const keep = heap.root(heap.arrays.alloc(N));
    for (let i = 0; i < N; i++) heap.arrays.set(keep.get(), i, heap.bytes.alloc(4000));  // ~16 MiB live, low spans
    for (let i = 0; i < 2 * N; i++) heap.bytes.alloc(4000);  // ~32 MiB of garbage above it
    await heap.collect();
    keep.release();  // everything is garbage now
    for (let cycle = 0; cycle < 3; cycle++) await heap.collect();
    const retain = core.policy.retainFreeBytes(heap.stats().liveBytes);
    expect(core.allocator.topSpan, 'the top came down').toBeLessThan(10);
    expect(residentFreeSpans(heap).length * SPAN_BYTES, 'resident free memory, above the top too').toBeLessThanOrEqual(retain);
  }, 60_000);
});
