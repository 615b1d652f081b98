// The heap is full: allocation grows the heap up to maxHeap; at maxHeap with a
// cycle in flight it waits for that cycle (reads the child's stream
// synchronously, sweeps) instead of failing; past that, HeapExhaustedError.
import { describe, expect, it } from 'vitest';
import { Heap, HeapExhaustedError } from '../src/index.js';

describe('allocation at maxHeap', () => {
  for (const threads of [0, 1]) {
    it(`waits for the cycle in flight and sweeps, rather than failing (${threads} sweeper threads)`, async () => {
      const heap = new Heap({
        maxHeap: '16MiB', auto: false, sweepThreads: threads,
        // The child sleeps first, so the allocation below finds it still marking.
        faultInjectionForTesting: { kind: 'delay-before-mark', arg: 200 },
      });
      try {
        const T = heap.defineStruct('T', { a: 'f64', b: 'f64', c: 'f64' });  // 32-byte slots
        const keep = heap.root(heap.arrays.alloc(1000));
        for (let i = 0; i < 1000; i++) heap.arrays.set(keep.get(), i, T.alloc({ a: i }));
        // Fill the heap with garbage until it is full.
        let filled = 0;
        try {
          for (;;) { T.alloc(); filled++; }
        } catch (e) {
          expect(e).toBeInstanceOf(HeapExhaustedError);
        }
        expect(filled).toBeGreaterThan(400_000);
        const cycle = heap.collect();
        expect(heap.stats().phase).toBe('marking');
        // Synchronously, with the child still asleep: these must wait for it.
        const t0 = performance.now();
        for (let i = 0; i < 10_000; i++) T.alloc();
        expect(performance.now() - t0).toBeGreaterThan(100);
        const c = await cycle;
        expect(c.objectsFreed).toBeGreaterThanOrEqual(filled);
        for (let i = 0; i < 1000; i++) expect(T.get.a(heap.arrays.get(keep.get(), i))).toBe(i);
      } finally {
        await heap.close();
      }
    }, 30_000);
  }

  it('throws HeapExhaustedError with advice when even a finished cycle leaves no room', () => {
    const heap = new Heap({ maxHeap: '4MiB', auto: false });
    try {
      const keep = heap.root(heap.arrays.alloc(400_000));
      let error: unknown;
      try {
        for (let i = 0; i < 400_000; i++) heap.arrays.set(keep.get(), i, heap.strings.alloc('x'));
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(HeapExhaustedError);
      expect((error as Error).message).toMatch(/maxHeap/);
      expect((error as Error).message).toMatch(/heap\.collect\(\)|safepoint/);
    } finally {
      void heap.close();
    }
  });
});
