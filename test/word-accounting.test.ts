// Small objects are counted a cached word of slots at a time
// (src/memory/allocator.ts, `counted`; src/api/core.ts): the slots of a
// word are counted when it is cached and the ones not handed out are taken
// back when it is dropped. heap.stats() must still be exact after every
// allocation, across cycles, and with allocations while a cycle is in flight.
import { describe, expect, it } from 'vitest';
import { SIZE_CLASSES, roundToGranules, sizeClassOf } from '../src/memory/layout.js';
import { closeHeapsAfterEach, makeHeap, MODES } from './helpers/common.js';

closeHeapsAfterEach();

describe('word-at-a-time accounting', () => {
  it.each(MODES)('%s: objects, live bytes and bytes allocated are exact after allocations and cycles', async (mode) => {
    const heap = makeHeap({ mode, sweepThreads: 1 });
    const Small = heap.defineStruct('Small', { next: 'ref', n: 'i32' });
    const Big = heap.defineStruct('Big', { next: 'ref', a: 'f64', b: 'f64', c: 'f64', d: 'f64', e: 'f64' });
    const slot = (size: number) => SIZE_CLASSES[sizeClassOf(roundToGranules(size))];
    const list = heap.root(heap.arrays.alloc(3000));
    // Live (rooted) and garbage figures, kept apart: a cycle frees exactly the garbage.
    const live = { objects: 1, bytes: slot(8 + 3000 * 4) };
    const garbage = { objects: 0, bytes: 0 };
    let total = live.bytes;
    const check = (what: string) => {
      const s = heap.stats();
      expect([s.objects, s.liveBytes, s.allocatedBytesTotal], what)
        .toEqual([live.objects + garbage.objects, live.bytes + garbage.bytes, total]);
    };
    let k = 0;
    const add = (keep: boolean) => {
      const big = k % 3 === 0;
      const r = big ? Big.alloc() : Small.alloc();
      const b = slot(big ? Big.size : Small.size);
      total += b;
      const into = keep ? live : garbage;
      into.objects++;
      into.bytes += b;
      if (keep) heap.arrays.set(list.get(), k, r);
      k++;
    };
    check('after the array');
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 400; i++) {
        add(i % 4 !== 0);
        if (i % 37 === 0) check(`round ${round}: after ${i + 1} allocations`);
      }
      check(`round ${round}: before the cycle`);
      const cycle = heap.collect();
      // Allocations while the cycle is in flight (fork mode: while the child marks) survive it.
      for (let i = 0; i < 200; i++) add(true);
      // The allocations may have moved the cycle on into its sweep (some garbage freed already).
      const s = heap.stats();
      expect(s.allocatedBytesTotal, `round ${round}: during the cycle`).toBe(total);
      expect(s.objects).toBeGreaterThanOrEqual(live.objects);
      expect(s.objects).toBeLessThanOrEqual(live.objects + garbage.objects);
      expect(s.liveBytes).toBeGreaterThanOrEqual(live.bytes);
      expect(s.liveBytes).toBeLessThanOrEqual(live.bytes + garbage.bytes);
      await cycle;
      garbage.objects = garbage.bytes = 0;
      check(`round ${round}: after the cycle`);
    }
  }, 30_000);
});
