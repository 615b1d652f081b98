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
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StaleReferenceError } from '../src/index.js';
import { closeHeapsAfterEach, expectError, makeHeap, MODES } from './helpers/common.js';
import { allocateUntilReused, granuleOf } from './helpers/slots.js';
import { compilePrepareFreed, prepareFreedGeneric } from '../src/memory/allocator.js';

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

// The compiled preparers (one per slot size up to 64 bytes) against the
// generic one, as an oracle: both must leave the same words and report the
// same spread, for free masks of one run and of scattered slots, headers of
// typeId 0 (the span's base) and of wrapping generations.
describe('compiled preparers', () => {
  const WORDS = 3 * 128;  // three bitmap words of memory (48 B slots straddle a word's end)
  const SLOT_GRANULES = [1, 2, 3, 4];
  const headerArb = fc.oneof(
    fc.constant(0),
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 1, max: 0xffff }).map((t) => (t | 0xffff0000) >>> 0),  // generation about to wrap
  );
  const caseArb = fc.constantFrom(...SLOT_GRANULES).chain((granules) => fc.record({
    granules: fc.constant(granules),
    // Slot starts of the middle word only, every k-th granule of the span.
    free: fc.oneof(
      fc.integer({ min: 0, max: 31 }).chain((lo) => fc.integer({ min: lo, max: 31 }).map((hi) => ({ lo, hi }))).map(({ lo, hi }) =>
        startsOf(granules, 32) & (hi === 31 ? -1 << lo : ((1 << (hi + 1)) - 1) & (-1 << lo))),
      fc.integer({ min: 0, max: 0xffffffff }).map((bits) => startsOf(granules, 32) & bits),
    ).filter((m) => m !== 0),
    base: fc.integer({ min: 0, max: 0xffff }),
    headers: fc.array(headerArb, { minLength: WORDS, maxLength: WORDS }),
    body: fc.integer({ min: 1, max: 0xffffffff }),
  }));
  // Slot starts in bitmap word 1 (granules 32..63) for slots of `granules`, as the span's SLOT_MASK has them.
  function startsOf(granules: number, from: number): number {
    let m = 0;
    for (let g = Math.ceil(from / granules) * granules; g < from + 32; g += granules) m |= 1 << (g - from);
    return m;
  }

  it('leave the same memory and spread as the generic preparer (fast-check)', () => {
    fc.assert(fc.property(caseArb, ({ granules, free, base, headers, body }) => {
      const slotWords = granules * 4;
      const fill = (a: Uint32Array) => {
        a.fill(body);
        for (let h = 0; h + slotWords <= WORDS; h += slotWords) a[h] = headers[h];
      };
      const a = new Uint32Array(WORDS);
      const b = new Uint32Array(WORDS);
      fill(a);
      fill(b);
      const spreadA = compilePrepareFreed(slotWords)(a, 1, free, base);
      const spreadB = prepareFreedGeneric(b, 1, free, base, slotWords);
      expect(spreadA).toBe(spreadB);
      expect(Array.from(a)).toEqual(Array.from(b));
      // And the generic one did what the header rule says, so the two cannot agree on a wrong answer.
      for (let bits = free; bits !== 0; bits &= bits - 1) {
        const h = (32 | (31 - Math.clz32(bits & -bits))) << 2;
        const old = headers[h];
        const type = old & 0xffff;
        expect(b[h] >>> 0).toBe((type | ((type === 0 ? base : ((old >>> 16) + 1) & 0xffff) << 16)) >>> 0);
        for (let i = 1; i < slotWords; i++) expect(b[h + i]).toBe(0);
      }
    }), { numRuns: 2000 });
  });
});

// Found in session 23: the allocator's slow path wrote a slot's typeId with
// a read of its header first. On a fresh page the read maps the shared zero
// page and the write faults again for a page of its own: 2.03 minor faults
// per fresh 4 KiB page of small objects (one word in eight of 16-byte slots
// goes through the slow path, the first of each page among them). A count
// of the process's faults, not a timing (V8 makes a few of its own here).
// Without the prefault thread (prefaultGrowth: false), which would fault
// the same pages first, or, where it cannot keep ahead of the allocator,
// beside it: a fault each on the same page, 1.7-1.9 a page here on a slow
// host in session 30, with or without the allocator's own fault.
describe('the first touch of fresh memory', () => {
  it.each([
    ['alloc()', (N: { alloc(): number }) => N.alloc()],
    ['strings.alloc', (_N: unknown, heap: { strings: { alloc(s: string): number } }) => heap.strings.alloc('abcdef')],
  ] as const)('%s: one minor fault per fresh 4 KiB page, not two', (_what, make) => {
    const heap = makeHeap({ maxHeap: '512MiB', auto: false, hugePages: false, sweepThreads: 0, prefaultGrowth: false });
    const N = heap.defineStruct('N', { next: 'ref', v: 'i32' });
    for (let i = 0; i < 10_000; i++) make(N, heap);  // (code optimized before the count)
    const objects = 3_000_000;  // 16-byte slots: 48 MB, 11,718 pages of 4 KiB
    const before = process.resourceUsage().minorPageFault;
    for (let i = 0; i < objects; i++) make(N, heap);
    const faults = process.resourceUsage().minorPageFault - before;
    const pages = objects * 16 / 4096;
    expect(faults / pages, `${faults} faults for ${pages} fresh pages`).toBeLessThan(1.3);
  }, 60_000);
});
