// Where objects go while a forked child marks (src/memory/allocator.ts):
// not into free slots of spans the child shares (each first write to such a
// page copies it), but into spans it does not share - released to the OS or
// never used.
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import { SPAN_GRANULES, SPAN_IN_USE, SPAN_WORDS, SW_STATE } from '../src/memory/layout.js';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';

closeHeapsAfterEach();

describe('allocation while the child marks', () => {
  it('new objects never land in a span that held objects at the fork, though those spans have free slots', async () => {
    const heap = makeHeap({ mode: 'fork', sweepThreads: 0 });
    const core = heapInternals(heap);
    const T = heap.defineStruct('T', { next: 'ref', v: 'i32' });
    // Spans with free slots: a list of which every other node is garbage.
    const list = heap.root(0);
    for (let i = 0; i < 20_000; i++) {
      const n = T.alloc({ v: i });
      if (i % 2 === 0) {
        T.set.next(n, list.get());
        list.set(n);
      }
    }
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
});
