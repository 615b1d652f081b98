// Where objects go while a forked child marks (src/memory/allocator.ts):
// not into free slots of spans the child shares (each first write to such a
// page copies it), but into spans it does not share - released to the OS or
// never used.
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import { SPAN_GRANULES, SPAN_IN_USE, SPAN_WORDS, SW_STATE } from '../src/memory/layout.js';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';

closeHeapsAfterEach();

/**
 * Spans with free slots once a cycle has run: a rooted list of `n` nodes of
 * a type T { next, v }, every other node garbage. Returns T.
 */
function halfGarbageList(heap: ReturnType<typeof makeHeap>, n: number) {
  const T = heap.defineStruct('T', { next: 'ref', v: 'i32' });
  const list = heap.root(0);
  for (let i = 0; i < n; i++) {
    const node = T.alloc({ v: i });
    if (i % 2 === 0) {
      T.set.next(node, list.get());
      list.set(node);
    }
  }
  return T;
}

describe('allocation while the child marks', () => {
  it('new objects never land in a span that held objects at the fork, though those spans have free slots', async () => {
    const heap = makeHeap({ mode: 'fork', sweepThreads: 0 });
    const core = heapInternals(heap);
    const T = halfGarbageList(heap, 20_000);
    await heap.collect();
    const shared = new Set<number>();
    for (let s = 1; s < core.allocator.topSpan; s++) {
      if (core.views.spans[s * SPAN_WORDS + SW_STATE] === SPAN_IN_USE) shared.add(s);
    }
    expect(shared.size).toBeGreaterThan(0);
    const cycle = heap.collect();
    const marking = heap.stats().phase === 'marking';
    const fresh: number[] = [];
    // Only objects allocated while the child lives count: an allocation that
    // takes a new span moves the cycle on (progress without yielding), and
    // once the child has exited and the sweep begun nothing is shared.
    const whileMarking: number[] = [];
    for (let i = 0; i < 5_000; i++) {
      const during = heap.stats().phase === 'marking';
      const r = T.alloc({ v: 1000 + i });
      fresh.push(r);
      if (during) whileMarking.push(r);
    }
    expect(whileMarking.length).toBeGreaterThan(0);
    const spansUsed = new Set(whileMarking.map((r) => Math.floor(core.refs.any(r) / SPAN_GRANULES)));
    const stats = await cycle;
    if (!marking || stats.fallback) {
      console.warn('skipped: fork() failed, the cycle ran stop-the-world (no child to share pages with)');
      return;
    }
    expect([...spansUsed].filter((s) => shared.has(s)), 'spans shared with the child that got new objects').toEqual([]);
    fresh.forEach((r, i) => expect(T.get.v(r)).toBe(1000 + i));
  }, 30_000);

  it('past the heap the pacer plans for, the free slots of spans the child shares are used rather than new spans', async () => {
    // A cache-like heap under random replacement frees its objects scattered,
    // so few spans come out whole; taking a new span for every allocation
    // while the child marked grew such heaps cycle after cycle (towards
    // maxHeap). The child of cycle 2 waits 1.5 s before marking, so all of
    // the allocation below happens while it lives.
    const heap = makeHeap({
      mode: 'fork', sweepThreads: 0, maxHeap: '256MiB',
      faultInjectionForTesting: { kind: 'delay-before-mark', arg: 1500, cycles: (id) => id === 2 },
    });
    const core = heapInternals(heap);
    const T = halfGarbageList(heap, 400_000);
    await heap.collect();  // cycle 1: every span half free
    const before = heap.stats();
    const limit = before.liveBytes + core.policy.retainFreeBytes(before.liveBytes);
    expect(before.heapBytes).toBeLessThan(limit);
    const cycle = heap.collect();
    const made: number[] = [];
    for (let i = 0; i < 300_000; i++) {
      const n = T.alloc({ v: 1_000_000 + i });
      if (i % 2 === 0) made.push(n);
    }
    const during = heap.stats();
    const stats = await cycle;
    if (stats.fallback) {
      console.warn('skipped: fork() failed, the cycle ran stop-the-world (no child to share pages with)');
      return;
    }
    expect(during.phase, 'the child still marked after the allocations').toBe('marking');
    // 4.8 MB allocated: with new spans the heap would be about that much over where it started.
    expect(during.heapBytes, `heapBytes ${during.heapBytes} against the limit ${limit}`).toBeLessThanOrEqual(limit + 4 * 65536);
    made.forEach((r, k) => expect(T.get.v(r)).toBe(1_000_000 + 2 * k));
  }, 30_000);
});
