// Struct layout (src/api/type-registry.ts): no padding without f64 fields,
// `size` is what the object is allocated with, every field kind round-trips.
import { describe, expect, it } from 'vitest';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';

closeHeapsAfterEach();

describe('struct layout', () => {
  it('{next: ref, value: i32} is 16 bytes (no 8-byte alignment without an f64 field)', () => {
    const heap = makeHeap();
    expect(heap.defineStruct('ListNode', { next: 'ref', value: 'i32' }).size).toBe(16);
    expect(heap.defineStruct('Flags', { a: 'ref', b: 'bool', c: 'bool' }).size).toBe(16);
    expect(heap.defineStruct('Three', { a: 'ref', b: 'ref', c: 'u32', d: 'i32' }).size).toBe(32);
    // With an f64: a 32-bit field fills the hole before it.
    expect(heap.defineStruct('Mixed', { a: 'ref', x: 'f64', n: 'i32' }).size).toBe(32);
    expect(heap.defineStruct('Wide', { x: 'f64' }).size).toBe(16);
  });

  it('every field of a packed struct holds its own value', () => {
    const heap = makeHeap();
    const T = heap.defineStruct('T', { next: 'ref', w: 'weak', x: 'f64', n: 'i32', u: 'u32', b: 'bool', c: 'bool', y: 'f64' });
    const other = T.alloc();
    heap.root(other);
    const t = T.alloc({ next: other, w: other, x: 1.5, n: -7, u: 2 ** 32 - 1, b: true, c: false, y: -2.25 });
    expect([T.get.next(t), T.get.w(t), T.get.x(t), T.get.n(t), T.get.u(t), T.get.b(t), T.get.c(t), T.get.y(t)])
      .toEqual([other, other, 1.5, -7, 2 ** 32 - 1, true, false, -2.25]);
    T.set.n(t, 5);
    T.set.c(t, true);
    expect([T.get.x(t), T.get.n(t), T.get.u(t), T.get.b(t), T.get.c(t), T.get.y(t)]).toEqual([1.5, 5, 2 ** 32 - 1, true, true, -2.25]);
  });
});

// Found in the session-16 review: the compiled bool accessors indexed the
// byte view with `g << 4`, which overflows int32 for an object 2 GiB or more
// into the arena: reads gave true, writes were dropped. The 2 GiB filler is
// fresh spans the heap never touches, so the test costs address space only.
describe('bool fields of an object 2 GiB or more into a 4 GiB heap', () => {
  it('read what was written, through alloc(init), set, unchecked set and a fresh alloc()', async () => {
    const heap = makeHeap({ maxHeap: '4GiB', sweepThreads: 0, hugePages: false, auto: false });
    const S = heap.defineStruct('S', { flag: 'bool', n: 'i32' });
    const filler = heap.root(heap.bytes.alloc(2 ** 31));
    let high = S.alloc({ flag: true, n: 2 });
    for (let i = 0; i < 1 << 15 && (high & (2 ** 28 - 1)) * 16 < 2 ** 31; i++) high = S.alloc({ flag: true, n: 2 });
    const kept = heap.root(high);
    const fresh = heap.root(S.alloc());
    expect((high & (2 ** 28 - 1)) * 16, 'the object lies above 2 GiB').toBeGreaterThanOrEqual(2 ** 31);
    expect(S.get.flag(high)).toBe(true);
    expect(S.get.n(high)).toBe(2);
    S.set.flag(high, false);
    expect(S.get.flag(high)).toBe(false);
    S.unchecked.set.flag(high, true);
    expect(S.unchecked.get.flag(high)).toBe(true);
    expect(S.get.flag(fresh.get())).toBe(false);
    kept.release();
    fresh.release();
    filler.release();
  }, 30_000);
});
