// The allocator makes the free slots of a bitmap word ready when it caches
// the word (src/memory/allocator.ts, prepareWord): bodies zeroed, headers
// holding the generation each slot will be handed out with. Two things must
// hold that per-slot preparation gave for free:
//   - a slot made ready but never handed out (the cached word is dropped at
//     a fork or a sweep) must not go back to an older generation when it is
//     made ready again, or a stale Ref of that older generation would be
//     accepted once the slot is reused;
//   - every object handed out from a swept span reads as all zero, in slots
//     of one granule and of several.
import { describe, expect, it } from 'vitest';
import { StaleReferenceError } from '../src/index.js';
import { closeHeapsAfterEach, expectError, makeHeap, MODES } from './helpers/common.js';
import { allocateUntilReused, granuleOf } from './helpers/slots.js';

closeHeapsAfterEach();

describe('slots made ready a word at a time', () => {
  it.each(MODES)('%s: a slot made ready, dropped unused and made ready again keeps moving on: older Refs stay stale', async (mode) => {
    const heap = makeHeap({ mode, sweepThreads: 0 });
    const Rec = heap.defineStruct('Rec', { id: 'i32' });
    const keep = heap.root(Rec.alloc({ id: -1 }));
    const a = Rec.alloc({ id: 1 });  // garbage: its slot is the lowest free one after the cycle
    const old = Rec.alloc({ id: 2 });  // garbage, its Ref held past the cycles
    const ga = granuleOf(heap, a);
    const g = granuleOf(heap, old);
    expect(g >>> 5, 'both slots in one bitmap word').toBe(ga >>> 5);
    await heap.collect();
    // Takes a's slot and makes the whole word ready, g included, without handing g out.
    const filler = Rec.alloc({ id: 3 });
    expect(granuleOf(heap, filler)).toBe(ga);
    // The cycle drops the cached word (at the fork, or when the sweep starts): g was never handed out.
    await heap.collect();
    const fresh = allocateUntilReused(heap, () => Rec.alloc(), g);
    expect(Rec.get.id(fresh), 'the new object reads as zero').toBe(0);
    expectError(() => Rec.get.id(old), StaleReferenceError, 'ERR_STALE_REF', 'the Ref of the first object in the slot');
    expectError(() => Rec.set.id(old, 9), StaleReferenceError, 'ERR_STALE_REF', 'set through it');
    expect(Rec.get.id(fresh)).toBe(0);
    expect(Rec.get.id(keep.get())).toBe(-1);
  }, 30_000);

  it.each(MODES)('%s: objects handed out from swept spans read as zero (one-granule and multi-granule slots)', async (mode) => {
    const heap = makeHeap({ mode, sweepThreads: 0 });
    const Small = heap.defineStruct('Small', { next: 'ref', n: 'i32' });
    const Big = heap.defineStruct('Big', {
      next: 'ref', a: 'f64', b: 'f64', c: 'f64', d: 'f64', e: 'f64', f: 'f64', n: 'u32', flag: 'bool',
    });
    const list = heap.root(heap.arrays.alloc(4000));
    for (let i = 0; i < 4000; i++) {
      const s = Small.alloc({ n: -1 - i });
      const b = Big.alloc({ a: 1.5, b: 2.5, c: 3.5, d: 4.5, e: 5.5, f: 6.5, n: 0xffffffff, flag: true, next: s });
      Small.set.next(s, b);
      // Every other pair survives: the others leave dirty free slots among live ones.
      if (i % 2 === 0) heap.arrays.set(list.get(), i, b);
    }
    await heap.collect();
    for (let i = 0; i < 4000; i++) {
      const s = Small.alloc();
      expect([Small.get.next(s), Small.get.n(s)]).toEqual([0, 0]);
      const b = Big.alloc();
      expect([Big.get.next(b), Big.get.a(b), Big.get.f(b), Big.get.n(b), Big.get.flag(b)]).toEqual([0, 0, 0, 0, false]);
    }
    // The survivors are intact.
    for (let i = 0; i < 4000; i += 2) {
      const b = heap.arrays.get(list.get(), i);
      expect([Big.get.a(b), Big.get.n(b), Small.get.n(Big.get.next(b))]).toEqual([1.5, 0xffffffff, -1 - i]);
    }
  }, 30_000);
});
