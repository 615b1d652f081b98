/**
 * Heap-resident maps (src/collections/heap-maps.ts, README "Heap maps"):
 * key semantics (SameValueZero, UTF-8 strings), every error, growth, and a
 * property test against a JS Map shadow model with real cycles — explicit
 * ones and ones in flight while the map changes (allocate black, invariant 2;
 * snapshot at the beginning, invariant 1) — in fork and stw modes.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FieldValueError, HeapClosedError, HeapExhaustedError, InvalidArgumentError, InvalidKeyError, InvalidReferenceError, MapModifiedError,
  StaleReferenceError, TypeDefinitionError, WrongTypeError, type Heap, type MapKey,
} from '../src/index.js';
import { heapInternals } from '../src/internal.js';
import {
  SPAN_BITMAP_WORDS, SPAN_GRANULES, SPAN_IN_USE, SPAN_SWEEPING, SPAN_SWEPT, SPAN_UNSWEPT, SPAN_WORDS, SW_LIVE, SW_STATE,
} from '../src/memory/layout.js';
import { granuleOf } from './helpers/slots.js';
import {
  DEAD_CODES, MODES, closeHeap, closeHeapsAfterEach, expectCode, expectError, isFreed, makeHeap,
  type Mode, type Ref,
} from './helpers/common.js';

closeHeapsAfterEach();

/** The rest of a pass begun with one next(): each value's number is its key, `entries` in all. */
function expectRestOfPass(pass: Iterator<[MapKey, Ref | 0]>, numberOf: (v: Ref | 0) => number, entries: number): void {
  let steps = 1;
  for (let x = pass.next(); !x.done; x = pass.next()) {
    const [k, v] = x.value;
    expect(numberOf(v)).toBe(k);
    steps++;
  }
  expect(steps).toBe(entries);
}

/**
 * A sweeper thread's steps on span s (src/memory/sweeper.ts,
 * sweepClaimedSpan), up to: its claim; the cleared marks; its live count
 * written (the last step before it publishes the state).
 */
function sweepAs(v: { spans: Int32Array; allocBits: Uint32Array; markBits: Uint32Array }, s: number, upTo: 'claim' | 'marks' | 'count'): void {
  const e = s * SPAN_WORDS;
  expect(Atomics.compareExchange(v.spans, e + SW_STATE, SPAN_UNSWEPT, SPAN_SWEEPING), "the thread's claim").toBe(SPAN_UNSWEPT);
  if (upTo === 'claim') return;
  const w0 = s * SPAN_BITMAP_WORDS;
  let live = 0;
  for (let w = w0; w < w0 + SPAN_BITMAP_WORDS; w++) {
    v.allocBits[w] &= v.markBits[w];
    for (let b = v.allocBits[w]; b !== 0; b &= b - 1) live++;
  }
  Atomics.store(v.spans, e + SW_STATE, SPAN_SWEPT);
  v.markBits.fill(0, w0, w0 + SPAN_BITMAP_WORDS);
  if (upTo === 'marks') return;
  v.spans[e + SW_LIVE] = live;
}

function valueTypes(heap: Heap) {
  const Val = heap.defineStruct('Val', { child: 'ref', id: 'i32' });
  const Leaf = heap.defineStruct('Leaf', { id: 'i32' });
  const make = (id: number): Ref => {
    const v = Val.alloc({ id });
    Val.set.child(v, Leaf.alloc({ id }));
    return v;
  };
  // The id a value carries, checked through its child too.
  const idOf = (v: Ref): number => {
    const id = Val.get.id(v);
    expect(Leaf.get.id(Val.get.child(v))).toBe(id);
    return id;
  };
  return { Val, Leaf, make, idOf };
}

describe('heap maps: semantics', () => {
  it('string and number keys, SameValueZero, UTF-8 content, value 0', () => {
    const heap = makeHeap();
    const { maps } = heap;
    const m = maps.alloc();
    const a = heap.strings.alloc('a');
    const b = heap.strings.alloc('b');
    expect(heap.typeOf(m)).toBe('HeapMap');
    expect(maps.is(m)).toBe(true);
    expect(maps.is(a)).toBe(false);
    expect(maps.is('x')).toBe(false);
    expect(maps.size(m)).toBe(0);
    expect(maps.capacity(m)).toBe(0);
    expect(maps.get(m, 'nope')).toBe(0);
    expect(maps.has(m, 1)).toBe(false);
    expect(maps.delete(m, 'nope')).toBe(false);

    maps.set(m, -0, a);
    expect(maps.get(m, 0)).toBe(a);            // -0 is +0
    expect([...maps.keys(m)]).toEqual([0]);
    expect(Object.is([...maps.keys(m)][0], 0)).toBe(true);
    maps.set(m, NaN, a);
    expect(maps.get(m, 0 / 0)).toBe(a);        // every NaN is one key
    expect(maps.get(m, Number('x'))).toBe(a);
    maps.set(m, 1, a);
    maps.set(m, '1', b);                       // a number and a string are two keys
    expect(maps.get(m, 1)).toBe(a);
    expect(maps.get(m, '1')).toBe(b);
    for (const k of [1.5, -7, 2 ** 53, -(2 ** 31), 2 ** 31, Infinity, -Infinity, Number.MIN_VALUE, 1e300]) {
      maps.set(m, k, b);
      expect(maps.get(m, k), String(k)).toBe(b);
    }
    const strs = ['', 'é', 'ß→∑', '😀', 'a😀b', '\u0000', 'x'.repeat(5000), '日本語のキー', '\u07ff\u0800\uffff'];
    for (const s of strs) maps.set(m, s, a);
    for (const s of strs) expect(maps.get(m, s), JSON.stringify(s)).toBe(a);
    expect(maps.has(m, 'e')).toBe(false);      // not 'é'
    expect(maps.has(m, 'x'.repeat(4999))).toBe(false);
    const keys = new Set(maps.keys(m));
    for (const s of strs) expect(keys.has(s), JSON.stringify(s)).toBe(true);

    // 0 is a value: get() cannot tell it from absence, has() can.
    maps.set(m, 'zero', 0);
    expect(maps.get(m, 'zero')).toBe(0);
    expect(maps.has(m, 'zero')).toBe(true);
    const before = maps.size(m);
    maps.set(m, 'zero', b);                    // overwrite: same size
    expect(maps.size(m)).toBe(before);
    expect(maps.delete(m, 'zero')).toBe(true);
    expect(maps.delete(m, 'zero')).toBe(false);
    expect(maps.size(m)).toBe(before - 1);

    maps.clear(m);
    expect(maps.size(m)).toBe(0);
    expect(maps.capacity(m)).toBe(0);
    expect(maps.get(m, 1)).toBe(0);
    maps.set(m, 'again', a);
    expect(maps.get(m, 'again')).toBe(a);
  });

  it('iteration: forEach, entries, keys, values agree; deleting the visited entry is allowed', () => {
    const heap = makeHeap();
    const { maps } = heap;
    const m = maps.alloc();
    const vals = new Map<MapKey, Ref>();
    for (let i = 0; i < 500; i++) {
      const k: MapKey = i % 3 === 0 ? i * 1.25 : `k${i}`;
      const v = heap.strings.alloc(`v${i}`);
      maps.set(m, k, v);
      vals.set(k, v);
    }
    const seen = new Map<MapKey, Ref>();
    maps.forEach(m, (k, v) => { expect(seen.has(k)).toBe(false); seen.set(k, v); });
    expect(seen).toEqual(vals);
    expect(new Map(maps.entries(m))).toEqual(vals);
    expect(new Set(maps.keys(m))).toEqual(new Set(vals.keys()));
    expect(new Set(maps.values(m))).toEqual(new Set(vals.values()));

    // Delete every other visited entry (back-shifts pull unvisited entries
    // into the visited slot; each is still visited exactly once).
    const visited = new Set<MapKey>();
    let n = 0;
    maps.forEach(m, (k, v) => {
      expect(visited.has(k)).toBe(false);
      visited.add(k);
      if (n++ % 2 === 0) expect(maps.delete(m, k)).toBe(true);
      else maps.set(m, k, v);                  // overwriting a value is allowed too
    });
    expect(visited).toEqual(new Set(vals.keys()));
    expect(maps.size(m)).toBe(250);
    // The same through the iterator.
    const visited2 = new Set<MapKey>();
    for (const [k] of maps.entries(m)) {
      visited2.add(k);
      maps.delete(m, k);
    }
    expect(visited2.size).toBe(250);
    expect(maps.size(m)).toBe(0);
  });

  it('grows by rehash to 300k entries (string and number keys) and keeps every one across a cycle', async () => {
    const heap = makeHeap({ maxHeap: '512MiB' });
    const { maps } = heap;
    const root = heap.root(maps.alloc());
    const N = 300_000;
    let m = root.get();
    const v = heap.strings.alloc('shared value');
    for (let i = 0; i < N; i++) maps.set(m, i % 2 === 0 ? `user:${i}` : i * 0.5, v);
    expect(maps.size(m)).toBe(N);
    expect(maps.capacity(m)).toBe(2 ** 19);   // 300k > 3/4 of 2^18
    await heap.collect();
    m = root.get();
    for (let i = 0; i < N; i++) {
      const k = i % 2 === 0 ? `user:${i}` : i * 0.5;
      if (maps.get(m, k) === 0) throw new Error(`lost key ${k}`);
    }
    for (let i = 0; i < N; i += 2) expect(maps.delete(m, `user:${i}`)).toBe(true);
    expect(maps.size(m)).toBe(N / 2);
    const s = await heap.collect();
    expect(s.objectsFreed).toBeGreaterThanOrEqual(N / 2);     // the deleted keys' Strings
    m = root.get();
    for (let i = 1; i < N; i += 2) if (!maps.has(m, i * 0.5)) throw new Error(`lost key ${i * 0.5}`);

    // A capacity hint sizes the first table: no growth up to it.
    const p = maps.alloc(100_000);
    maps.set(p, 'first', v);
    const cap = maps.capacity(p);
    expect(cap).toBe(2 ** 18);
    for (let i = 0; i < 100_000; i++) maps.set(p, i, v);
    expect(maps.capacity(p)).toBe(cap);
  });
});

describe('heap maps: tracing', () => {
  for (const mode of MODES) {
    it(`[${mode}] a map keeps its keys and values (and what they reach) alive; unrooted, all of it is freed`, async () => {
      const heap = makeHeap({ mode });
      const { make, idOf } = valueTypes(heap);
      const base = heap.stats().objects;
      const root = heap.root(heap.maps.alloc());
      for (let i = 0; i < 1000; i++) heap.maps.set(root.get(), i % 2 ? i : `k${i}`, make(i));
      await heap.collect();
      await heap.collect();
      const m = root.get();
      for (let i = 0; i < 1000; i++) expect(idOf(heap.maps.get(m, i % 2 ? i : `k${i}`))).toBe(i);
      // map + entries + hashes + numbers + 500 key Strings + 1000 x (Val + Leaf)
      expect(heap.stats().objects - base).toBe(1 + 3 + 500 + 2000);
      root.release();
      await heap.collect();
      expect(heap.stats().objects).toBe(base);
    });
  }
});

describe('heap maps: errors', () => {
  it('a non-map, a freed map, a bad key, a bad value, a bad hint, a closed heap', async () => {
    const heap = makeHeap();
    const { maps } = heap;
    const m = maps.alloc();
    const str = heap.strings.alloc('s');
    const arr = heap.arrays.alloc(2);
    const calls: Array<[string, (map: unknown) => unknown]> = [
      ['get', (x) => maps.get(x as Ref, 'k')],
      ['has', (x) => maps.has(x as Ref, 'k')],
      ['set', (x) => maps.set(x as Ref, 'k', str)],
      ['delete', (x) => maps.delete(x as Ref, 'k')],
      ['size', (x) => maps.size(x as Ref)],
      ['capacity', (x) => maps.capacity(x as Ref)],
      ['clear', (x) => maps.clear(x as Ref)],
      ['forEach', (x) => maps.forEach(x as Ref, () => undefined)],
      ['entries', (x) => [...maps.entries(x as Ref)]],
      ['keys', (x) => [...maps.keys(x as Ref)]],
      ['values', (x) => [...maps.values(x as Ref)]],
    ];
    for (const [what, call] of calls) {
      expectError(() => call(str), WrongTypeError, 'ERR_WRONG_TYPE', `${what} on a String`);
      expectError(() => call(arr), WrongTypeError, 'ERR_WRONG_TYPE', `${what} on a RefArray`);
      expectError(() => call(0), InvalidReferenceError, 'ERR_INVALID_REF', `${what} on null`);
      expectError(() => call('m'), InvalidReferenceError, 'ERR_INVALID_REF', `${what} on a string`);
      expectError(() => call(10 ** 9), InvalidReferenceError, 'ERR_INVALID_REF', `${what} outside the heap`);
    }
    for (const key of [undefined, null, true, {}, [], 1n, Symbol('k'), () => 1]) {
      for (const [what, call] of [
        ['get', () => maps.get(m, key as never)], ['has', () => maps.has(m, key as never)],
        ['set', () => maps.set(m, key as never, str)], ['delete', () => maps.delete(m, key as never)],
      ] as const) {
        expectError(call, InvalidKeyError, 'ERR_INVALID_KEY', `${what} with key ${typeof key}`);
      }
    }
    for (const lone of ['\ud800', 'a\udc00', 'x\ud83d', '\ude00\ud83d']) {
      expectError(() => maps.set(m, lone, str), InvalidKeyError, 'ERR_INVALID_KEY', `lone surrogate ${escape(lone)}`);
      expectError(() => maps.get(m, lone), InvalidKeyError, 'ERR_INVALID_KEY', `lone surrogate ${escape(lone)}`);
    }
    expect(maps.size(m)).toBe(0);              // nothing half-inserted
    expectError(() => maps.set(m, 'k', 'v' as never), InvalidReferenceError, 'ERR_INVALID_REF', 'a string value');
    expectError(() => maps.set(m, 'k', 1.5), InvalidReferenceError, 'ERR_INVALID_REF', 'a fractional value');
    expectError(() => maps.set(m, 'k', 10 ** 9), InvalidReferenceError, 'ERR_INVALID_REF', 'a value outside the heap');
    expect(maps.size(m)).toBe(0);
    for (const hint of [-1, 1.5, NaN, '3', 2 ** 28]) {
      expectError(() => maps.alloc(hint as never), FieldValueError, 'ERR_FIELD_VALUE', `hint ${String(hint)}`);
    }
    expectError(() => heap.defineStruct('HeapMap', { a: 'i32' }), TypeDefinitionError, 'ERR_TYPE_DEFINITION', 'the name HeapMap');
    expectError(() => maps.forEach(m, 5 as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', 'forEach with no function');

    // A map freed by a cycle; and a value freed by a cycle.
    const dead = maps.alloc();
    maps.set(dead, 'k', str);
    const deadValue = heap.strings.alloc('gone');
    const keep = heap.root(m);
    const keepStr = heap.root(str);
    await heap.collect();
    expectCode(() => maps.get(dead, 'k'), DEAD_CODES, 'a freed map');
    expectCode(() => maps.set(keep.get(), 'k', deadValue), DEAD_CODES, 'a freed value');
    expect(maps.size(keep.get())).toBe(0);
    keep.release();
    keepStr.release();

    await closeHeap(heap);
    expectError(() => maps.get(m, 'k'), HeapClosedError, 'ERR_HEAP_CLOSED', 'closed heap get');
    expectError(() => maps.alloc(), HeapClosedError, 'ERR_HEAP_CLOSED', 'closed heap alloc');
  });

  it('checked mode: a map Ref held across a cycle is reported stale', async () => {
    const heap = makeHeap({ checked: true });
    const root = heap.root(heap.maps.alloc());
    const m = root.get();
    heap.maps.set(m, 'k', 0);
    await heap.collect();
    expectError(() => heap.maps.get(m, 'k'), StaleReferenceError, 'ERR_STALE_REF', 'held across a cycle');
    expect(heap.maps.has(root.get(), 'k')).toBe(true);
  });

  // Found in the session-16 review: the iterator checked the Ref it was
  // given at every step, which checked mode reports once a cycle has
  // started, so iterating a rooted map across a yield (which the README
  // allows) threw StaleReferenceError telling the user to root it.
  for (const checked of [true, false]) {
    it(`iterating a rooted map across cycles (${checked ? 'checked' : 'default'} mode): every entry, and the values are current Refs`, async () => {
      const heap = makeHeap({ checked, auto: false });
      const T = heap.defineStruct('V', { n: 'i32' });
      const root = heap.root(heap.maps.alloc());
      for (let i = 0; i < 20; i++) heap.maps.set(root.get(), `k${i}`, T.alloc({ n: i }));
      const seen: number[] = [];
      for (const [k, v] of heap.maps.entries(root.get())) {
        expect(T.get.n(v as never)).toBe(Number((k as string).slice(1)));
        seen.push(T.get.n(v as never));
        await heap.collect();
      }
      expect(seen.sort((a, b) => a - b)).toEqual([...Array(20).keys()]);
    });
  }

  it('iterating an unrooted map across the cycle that frees it: StaleReferenceError', async () => {
    const heap = makeHeap({ auto: false });
    const m = heap.maps.alloc();
    for (let i = 0; i < 5; i++) heap.maps.set(m, i, 0);
    const it = heap.maps.keys(m);
    it.next();
    await heap.collect();
    expectError(() => it.next(), StaleReferenceError, 'ERR_STALE_REF', 'a freed map');
    const root = heap.root(heap.maps.alloc());
    heap.maps.set(root.get(), 1, 0);
    const open = heap.maps.keys(root.get());
    open.next();
    await closeHeap(heap);
    expectError(() => open.next(), HeapClosedError, 'ERR_HEAP_CLOSED', 'the heap closed during the pass');
  });

  // Found in the session-17 review: the identity check saw only the
  // allocation bit and header word, which a dead map keeps until the sweep
  // reaches its span; meanwhile its values' slots were reused, and the pass
  // handed out Refs to other objects (in checked mode too, which exists to
  // report this). A map the last mark left unmarked in a span not swept yet
  // is dead: the pass ends there. A rooted map in the same window goes on.
  for (const checked of [true, false]) {
    it(`an unrooted map held across a cycle, mid-sweep before its span is swept (${checked ? 'checked' : 'default'} mode): StaleReferenceError, no wrong value`, async () => {
      const heap = makeHeap({ checked, mode: 'stw', auto: false, sweepThreads: 0, inlineSweepUs: 0 });
      const S = heap.defineStruct('S', { n: 'i32' });
      const kept = heap.root(heap.maps.alloc());
      const m = heap.maps.alloc();
      const other = heap.maps.alloc();
      heap.maps.set(other, 1, S.alloc({ n: 1 }));
      for (let i = 0; i < 200; i++) {
        heap.maps.set(m, i, S.alloc({ n: i }));
        heap.maps.set(kept.get(), i, S.alloc({ n: i }));
      }
      const dead = heap.maps.entries(m);
      const live = heap.maps.entries(kept.get());
      dead.next();
      live.next();
      const cycle = heap.collect();
      expect(heap.stats().phase, 'stw: marked, the sweep not begun').toBe('sweeping');
      // The dead values' slots are swept (by the allocation, lazily) and reused.
      for (let i = 0; i < 2000; i++) S.alloc({ n: -1 });
      expect(heap.stats().phase).toBe('sweeping');
      expectError(() => dead.next(), StaleReferenceError, 'ERR_STALE_REF', 'a dead map not swept yet');
      expectError(() => heap.maps.keys(other).next(), StaleReferenceError, 'ERR_STALE_REF', 'a pass begun over a dead map not swept yet');
      expectRestOfPass(live, (v) => S.get.n(v as never), 200);
      await cycle;
    });
  }

  // Found in the session-18 review: a failed sweep puts its unswept spans
  // back with their marks cleared and their garbage still allocated, so the
  // check above took a dead map there for live while its values' slots,
  // swept before the failure, were reused (199 wrong values of 200, checked
  // mode too). The failed sweep now says what it left in place.
  for (const checked of [true, false]) {
    it(`an unrooted map held across a cycle whose sweep failed (${checked ? 'checked' : 'default'} mode): StaleReferenceError, no wrong value`, async () => {
      const heap = makeHeap({
        checked, sweepThreads: 1, inlineSweepUs: 0,
        faultInjectionForTesting: { kind: 'sweep-worker-throw', arg: 2, cycles: (id) => id === 1 },
      });
      const S = heap.defineStruct('S', { n: 'i32' });
      const vals: Ref[] = [];
      for (let i = 0; i < 200; i++) vals.push(S.alloc({ n: i }));  // the values' span comes first
      const m = heap.maps.alloc();
      for (let i = 0; i < 200; i++) heap.maps.set(m, i, vals[i]);
      vals.length = 0;
      const kept = heap.root(heap.maps.alloc());
      for (let i = 0; i < 200; i++) heap.maps.set(kept.get(), i, S.alloc({ n: i }));
      const dead = heap.maps.entries(m);
      const live = heap.maps.entries(kept.get());
      dead.next();
      live.next();
      await expect(heap.collect()).rejects.toMatchObject({ reason: 'SWEEP_FAILED' });
      for (let i = 0; i < 2000; i++) S.alloc({ n: -1 });  // reuses the freed values' slots
      const wrong: string[] = [];
      let err: unknown;
      try {
        for (let x = dead.next(); !x.done; x = dead.next()) {
          const [k, v] = x.value;
          if (S.get.n(v as never) !== k) wrong.push(`${String(k)} -> ${S.get.n(v as never)}`);
        }
      } catch (e) {
        err = e;
      }
      expect(wrong).toEqual([]);
      expect(err).toBeInstanceOf(StaleReferenceError);
      expectRestOfPass(live, (v) => S.get.n(v as never), 200);
      // The next completed sweep frees what the failed one left: the record goes with it.
      await heap.collect();
      expect(heap.maps.size(kept.get())).toBe(200);
    });
  }

  // Found in the session-18 reviews of the record above: a thread that died
  // after clearing a span's marks (terminated, or stalled, between two
  // statements) left its survivors allocated and unmarked, and the failed
  // sweep recorded them as garbage: a pass over a rooted map there threw.
  // The thread marks the span SWEPT once its allocation bits are final,
  // before any mark goes. The thread here is the test, doing each step of
  // sweepClaimedSpan up to where it dies.
  for (const diesAt of ['its claim', 'the cleared marks', 'its count, before it publishes the state'] as const) {
    it(`a rooted map in a span whose thread died after ${diesAt}: its pass goes on after SWEEP_FAILED`, async () => {
      const heap = makeHeap({
        mode: 'stw', auto: false, sweepThreads: 1, inlineSweepUs: 0,
        faultInjectionForTesting: { kind: 'sweep-worker-throw', arg: 1, cycles: (id) => id === 1 },
      });
      const S = heap.defineStruct('S', { n: 'i32' });
      for (let i = 0; i < 50; i++) S.alloc({ n: i });  // the first span: the real thread claims it and throws
      const kept = heap.root(heap.maps.alloc());
      for (let i = 0; i < 20; i++) heap.maps.set(kept.get(), i, S.alloc({ n: i }));
      const s = Math.floor(granuleOf(heap, kept.get()) / SPAN_GRANULES);
      expect(s).toBeGreaterThan(1);
      const cycle = heap.collect();
      expect(heap.stats().phase).toBe('sweeping');
      const v = heapInternals(heap).views;
      sweepAs(v, s, diesAt === 'its claim' ? 'claim' : diesAt === 'the cleared marks' ? 'marks' : 'count');
      await expect(cycle).rejects.toMatchObject({ reason: 'SWEEP_FAILED' });
      // Put back in use, its marks cleared, its count that of its allocation bits.
      expect(Atomics.load(v.spans, s * SPAN_WORDS + SW_STATE)).toBe(SPAN_IN_USE);
      let allocated = 0;
      for (let w = s * SPAN_BITMAP_WORDS; w < (s + 1) * SPAN_BITMAP_WORDS; w++) {
        expect(v.markBits[w]).toBe(0);
        for (let b = v.allocBits[w]; b !== 0; b &= b - 1) allocated++;
      }
      expect(v.spans[s * SPAN_WORDS + SW_LIVE]).toBe(allocated);
      let n = 0;
      for (const [k, val] of heap.maps.entries(kept.get())) {
        expect(S.get.n(val as never)).toBe(k);
        n++;
      }
      expect(n).toBe(20);
    });
  }

  // Found in the session-18 review: a dead map in a span a sweeper thread
  // had claimed but not finished was taken for live, and that step handed
  // out a value whose slot had been reused. The claim is made here as a
  // thread's would be, and nothing finishes it.
  it('a dead map in a span a sweeper thread has claimed: StaleReferenceError, no wrong value', async () => {
    const heap = makeHeap({ mode: 'stw', auto: false, sweepThreads: 0, inlineSweepUs: 0 });
    const S = heap.defineStruct('S', { n: 'i32' });
    const m = heap.maps.alloc();
    for (let i = 0; i < 200; i++) heap.maps.set(m, i, S.alloc({ n: i }));
    const dead = heap.maps.entries(m);
    dead.next();
    const cycle = heap.collect();
    expect(heap.stats().phase).toBe('sweeping');
    for (let i = 0; i < 2000; i++) S.alloc({ n: -1 });
    const spans = heapInternals(heap).views.spans;
    const e = Math.floor(granuleOf(heap, m) / SPAN_GRANULES) * SPAN_WORDS + SW_STATE;
    expect(Atomics.compareExchange(spans, e, SPAN_UNSWEPT, SPAN_SWEEPING), "the thread's claim").toBe(SPAN_UNSWEPT);
    let handedOut: unknown;
    let err: unknown;
    try {
      const x = dead.next();
      if (!x.done) handedOut = `${String(x.value[0])} -> ${S.get.n(x.value[1] as never)}`;
    } catch (e2) {
      err = e2;
    } finally {
      Atomics.store(spans, e, SPAN_UNSWEPT);  // the span goes back to the main thread's sweep
    }
    expect(handedOut).toBeUndefined();
    expect(err).toBeInstanceOf(StaleReferenceError);
    await cycle;
  });

  it('a rooted map in a span a thread has swept but not published (marks cleared): the pass goes on', async () => {
    const heap = makeHeap({ mode: 'stw', auto: false, sweepThreads: 0, inlineSweepUs: 0 });
    const S = heap.defineStruct('S', { n: 'i32' });
    const kept = heap.root(heap.maps.alloc());
    for (let i = 0; i < 200; i++) heap.maps.set(kept.get(), i, S.alloc({ n: i }));
    const pass = heap.maps.entries(kept.get());
    pass.next();
    const cycle = heap.collect();
    const v = heapInternals(heap).views;
    const s = Math.floor(granuleOf(heap, kept.get()) / SPAN_GRANULES);
    sweepAs(v, s, 'count');
    try {
      expectRestOfPass(pass, (x) => S.get.n(x as never), 200);
    } finally {
      Atomics.store(v.spans, s * SPAN_WORDS + SW_STATE, SPAN_IN_USE);  // published
    }
    await cycle;
  });

  it('changing the map during iteration throws MapModifiedError', () => {
    const heap = makeHeap();
    const { maps } = heap;
    const m = maps.alloc();
    for (let i = 0; i < 20; i++) maps.set(m, i, 0);
    expectError(() => maps.forEach(m, () => maps.set(m, 'new', 0)), MapModifiedError, 'ERR_MAP_MODIFIED', 'insert in forEach');
    expect(maps.delete(m, 'new')).toBe(true);
    expectError(() => maps.forEach(m, (k) => maps.delete(m, (k as number) === 0 ? 1 : 0)), MapModifiedError,
      'ERR_MAP_MODIFIED', 'delete of another entry in forEach');
    expectError(() => maps.forEach(m, () => maps.clear(m)), MapModifiedError, 'ERR_MAP_MODIFIED', 'clear in forEach');
    for (let i = 0; i < 20; i++) maps.set(m, i, 0);
    const it = maps.keys(m);
    it.next();
    maps.set(m, 'added', 0);
    expectError(() => it.next(), MapModifiedError, 'ERR_MAP_MODIFIED', 'insert between iterator steps');
    // Growth is a change too.
    const it2 = maps.values(m);
    it2.next();
    for (let i = 100; i < 200; i++) maps.set(m, i, 0);
    expectError(() => it2.next(), MapModifiedError, 'ERR_MAP_MODIFIED', 'growth between iterator steps');
  });

  it('HeapExhaustedError in set() leaves the map as it was', () => {
    const heap = makeHeap({ maxHeap: '4MiB' });
    const { maps } = heap;
    const m = maps.alloc();
    const v = heap.strings.alloc('v');
    let n = 0;
    let err: unknown;
    try {
      for (;;) {
        maps.set(m, `key number ${n} padded to need some bytes`, v);
        n++;
      }
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HeapExhaustedError);
    expect(maps.size(m)).toBe(n);
    for (let i = 0; i < n; i++) if (maps.get(m, `key number ${i} padded to need some bytes`) !== v) throw new Error(`lost ${i}`);
    expect(maps.has(m, `key number ${n} padded to need some bytes`)).toBe(false);
    expect(n).toBeGreaterThan(1000);
  });
});

// ---- the shadow model ----------------------------------------------------------

const KEYS: MapKey[] = [
  'a', 'b', 'c', 'user:1', 'user:2', 'é', '😀', '', 'longer key with spaces', '日本',
  0, -0, 1, 2, 3, -1, 0.5, 1e21, NaN, Infinity, -Infinity, 2 ** 31, 7,
];
for (let i = 0; i < 40; i++) KEYS.push(`k${i}`, 100 + i);

type Op =
  | { t: 'set'; k: number }                  // a fresh value under KEYS[k]
  | { t: 'alias'; k: number; from: number }  // the value under KEYS[from] (or 0) under KEYS[k]
  | { t: 'get'; k: number }
  | { t: 'delete'; k: number }
  | { t: 'iterate'; dropEvery: number }      // forEach, deleting every dropEvery-th visited entry (0: none)
  | { t: 'clear' }
  | { t: 'collect' }                         // a whole cycle
  | { t: 'cycleStart' }                      // a cycle in flight while the next ops run
  | { t: 'cycleEnd' };

const keyIdx = fc.nat({ max: KEYS.length - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('set' as const), k: keyIdx }), weight: 12 },
  { arbitrary: fc.record({ t: fc.constant('alias' as const), k: keyIdx, from: keyIdx }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('get' as const), k: keyIdx }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('delete' as const), k: keyIdx }), weight: 7 },
  { arbitrary: fc.record({ t: fc.constant('iterate' as const), dropEvery: fc.nat({ max: 4 }) }), weight: 1 },
  { arbitrary: fc.constant({ t: 'clear' as const }), weight: 1 },
  { arbitrary: fc.constant({ t: 'collect' as const }), weight: 2 },
  { arbitrary: fc.constant({ t: 'cycleStart' as const }), weight: 2 },
  { arbitrary: fc.constant({ t: 'cycleEnd' as const }), weight: 2 },
);

async function runModel(mode: Mode, ops: Op[]): Promise<void> {
  const heap = makeHeap({ mode, maxHeap: '64MiB' });
  try {
    const { Val, make, idOf } = valueTypes(heap);
    const { maps } = heap;
    const base = heap.stats().objects;
    const root = heap.root(maps.alloc());
    // The model: key -> value id (0: the value 0); and each id's raw Ref
    // (unchecked mode: a Ref stays the same number while its object lives).
    const model = new Map<MapKey, number>();
    const refOf = new Map<number, Ref>();
    let nextId = 1;
    let numbersEver = false;       // a number key was inserted since the last clear (the numbers array exists)
    let inFlight: Promise<unknown> | null = null;
    // Values dropped from the model, by when they must be freed: dropped with no
    // cycle in flight -> by the end of the next cycle; dropped while one is in
    // flight (it may still see them) -> by the end of the one after.
    let dueNext: number[] = [];
    let dueAfter: number[] = [];

    const drop = (id: number | undefined) => {
      if (id === undefined || id === 0) return;
      (inFlight ? dueAfter : dueNext).push(id);
    };
    const stillHeld = (id: number) => { for (const v of model.values()) if (v === id) return true; return false; };
    const verifyAll = () => {
      const m = root.get();
      expect(maps.size(m)).toBe(model.size);
      for (const [k, id] of model) {
        expect(maps.has(m, k), `has ${String(k)}`).toBe(true);
        const v = maps.get(m, k);
        if (id === 0) expect(v).toBe(0);
        else {
          expect(v).toBe(refOf.get(id));
          expect(idOf(v)).toBe(id);
        }
      }
    };
    // Freed: the Ref names no object, or (a lazy sweep freed it and an
    // allocation since took the slot) another object than value `id`.
    const gone = (ref: Ref, id: number): boolean =>
      isFreed(heap, ref) || heap.typeOf(ref) !== 'Val' || Val.get.id(ref) !== id;
    let heldAtFork = new Set<number>();
    const forking = () => { heldAtFork = new Set(model.values()); };
    const cycleEnded = () => {
      // Right after the sweep, before any allocation can reuse a slot.
      for (const id of dueNext) {
        // Held at the fork (then dropped while the cycle ran: it is in dueAfter too), still held, or checked already.
        if (heldAtFork.has(id) || stillHeld(id) || !refOf.has(id)) continue;
        expect(gone(refOf.get(id)!, id), `value ${id} dropped before the cycle is freed`).toBe(true);
        refOf.delete(id);
      }
      dueNext = dueAfter;
      dueAfter = [];
      verifyAll();
    };

    for (const op of ops) {
      const m = root.get();
      switch (op.t) {
        case 'set': {
          const k = KEYS[op.k];
          const id = nextId++;
          const v = make(id);
          refOf.set(id, v);
          maps.set(m, k, v);
          drop(model.get(k));
          model.set(k, id);
          if (typeof k === 'number') numbersEver = true;
          break;
        }
        case 'alias': {
          const k = KEYS[op.k];
          const id = model.get(KEYS[op.from]) ?? 0;
          maps.set(m, k, id === 0 ? 0 : refOf.get(id)!);
          const old = model.get(k);
          model.set(k, id);
          if (old !== id) drop(old);
          if (typeof k === 'number') numbersEver = true;
          break;
        }
        case 'get': {
          const k = KEYS[op.k];
          const id = model.get(k);
          expect(maps.has(m, k)).toBe(id !== undefined);
          const v = maps.get(m, k);
          if (id === undefined || id === 0) expect(v).toBe(0);
          else expect(idOf(v)).toBe(id);
          break;
        }
        case 'delete': {
          const k = KEYS[op.k];
          const id = model.get(k);
          expect(maps.delete(m, k)).toBe(id !== undefined);
          model.delete(k);
          drop(id);
          break;
        }
        case 'iterate': {
          const before = new Map(model);
          const seen = new Map<MapKey, number>();
          let n = 0;
          maps.forEach(m, (k, v) => {
            expect(seen.has(k), `visited ${String(k)} twice`).toBe(false);
            seen.set(k, v === 0 ? 0 : idOf(v));
            if (op.dropEvery > 0 && n++ % op.dropEvery === 0) {
              expect(maps.delete(m, k)).toBe(true);
              const id = model.get(k);
              model.delete(k);
              drop(id);
            }
          });
          // Every entry there was before the pass was visited once, with its value.
          expect(seen).toEqual(before);
          expect(maps.size(m)).toBe(model.size);
          break;
        }
        case 'clear': {
          maps.clear(m);
          for (const id of model.values()) drop(id);
          model.clear();
          numbersEver = false;
          break;
        }
        case 'collect': {
          if (inFlight) { await inFlight; cycleEnded(); inFlight = null; }
          forking();
          await heap.collect();
          cycleEnded();
          break;
        }
        case 'cycleStart': {
          if (!inFlight) { forking(); inFlight = heap.collect(); }
          break;
        }
        case 'cycleEnd': {
          if (inFlight) { await inFlight; inFlight = null; cycleEnded(); }
          break;
        }
      }
    }
    if (inFlight) { await inFlight; inFlight = null; cycleEnded(); }
    forking();
    await heap.collect();
    cycleEnded();
    forking();
    await heap.collect();
    cycleEnded();
    // Exactly the map's own objects, its key Strings and the live values (Val + Leaf) are left.
    const m = root.get();
    const table = maps.capacity(m) > 0 ? 2 + (numbersEver ? 1 : 0) : 0;
    const stringKeys = [...model.keys()].filter((k) => typeof k === 'string').length;
    const liveValues = new Set([...model.values()].filter((id) => id !== 0)).size;
    expect(heap.stats().objects - base).toBe(1 + table + stringKeys + 2 * liveValues);
    // And the whole map goes when unrooted.
    root.release();
    await heap.collect();
    expect(heap.stats().objects).toBe(base);
  } finally {
    await closeHeap(heap);
  }
}

describe('heap maps: shadow model with real cycles', () => {
  for (const mode of MODES) {
    it(`[${mode}] random set/get/has/delete/iterate/clear interleaved with cycles (some in flight: invariants 1 and 2) agree with a JS Map`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 20, maxLength: 150 }), (ops) => runModel(mode, ops)),
        { numRuns: 40 },
      );
    }, 120_000);
  }
});

// Passes held across cycles, against real sweeper threads (found over the
// session-18 reviews: passes over maps that died handed out freed values at
// several points of a sweep). Maps are made rooted or not, roots released,
// passes begun and stepped while cycles run, garbage made to reuse freed
// slots. The oracle: every value a pass hands out is the one its key had;
// a pass over a map that was unrooted when some cycle began since the pass
// began may end with StaleReferenceError instead; a rooted map's pass
// visits every entry.
type PassOp =
  | { t: 'map'; n: number; rooted: boolean }
  | { t: 'unroot'; i: number }
  | { t: 'begin'; i: number }
  | { t: 'step'; i: number; k: number }
  | { t: 'garbage'; n: number }
  | { t: 'collect' }
  | { t: 'cycleStart' }
  | { t: 'window'; n: number }  // a cycle begun and garbage made at once: freed slots reused mid-sweep
  | { t: 'cycleEnd' };
const passOpArb: fc.Arbitrary<PassOp> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('map' as const), n: fc.integer({ min: 1, max: 60 }), rooted: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('unroot' as const), i: fc.nat(20) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('begin' as const), i: fc.nat(20) }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('step' as const), i: fc.nat(20), k: fc.integer({ min: 1, max: 40 }) }), weight: 6 },
  { arbitrary: fc.record({ t: fc.constant('garbage' as const), n: fc.integer({ min: 100, max: 3000 }) }), weight: 2 },
  { arbitrary: fc.constant({ t: 'collect' as const }), weight: 2 },
  { arbitrary: fc.constant({ t: 'cycleStart' as const }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('window' as const), n: fc.integer({ min: 500, max: 3000 }) }), weight: 5 },
  { arbitrary: fc.constant({ t: 'cycleEnd' as const }), weight: 2 },
);

async function runPasses(mode: Mode, sweepThreads: number, ops: PassOp[]): Promise<void> {
  const heap = makeHeap({ mode, sweepThreads, inlineSweepUs: 0, auto: false, maxHeap: '64MiB' });
  try {
    const { Val, make, idOf } = valueTypes(heap);
    type MapRec = { ref: Ref; root: { release(): void; get(): Ref } | null; entries: Map<number, number>; unrootedAt: number; born: number };
    const mapsMade: MapRec[] = [];
    type PassRec = { map: MapRec; pass: Iterator<[MapKey, Ref | 0]>; seen: Set<number>; began: number };
    const passes: PassRec[] = [];
    let cycles = 0;     // cycles begun
    let nextId = 1;
    let inFlight: Promise<unknown> | null = null;
    const start = () => { cycles++; for (const m of mapsMade) if (!m.root && m.unrootedAt < 0) m.unrootedAt = cycles; };
    // The map may be dead by a cycle that began after the pass did.
    const mayBeDead = (p: PassRec) => p.map.unrootedAt >= 0 && p.map.unrootedAt > p.began;
    for (const op of ops) {
      switch (op.t) {
        case 'map': {
          const m = heap.maps.alloc();
          const rec: MapRec = { ref: m, root: op.rooted ? heap.root(m) : null, entries: new Map(), unrootedAt: -1, born: cycles };
          for (let k = 0; k < op.n; k++) {
            const id = nextId++;
            heap.maps.set(rec.root ? rec.root.get() : m, k, make(id));
            rec.entries.set(k, id);
          }
          mapsMade.push(rec);
          break;
        }
        case 'unroot': {
          const rec = mapsMade[op.i % Math.max(1, mapsMade.length)];
          if (rec?.root) { rec.ref = rec.root.get(); rec.root.release(); rec.root = null; }
          break;
        }
        case 'begin': {
          // A rooted map, or one made since the last cycle began (its Ref is still good).
          const rec = mapsMade[op.i % Math.max(1, mapsMade.length)];
          if (!rec || (!rec.root && rec.born !== cycles)) break;
          passes.push({ map: rec, pass: heap.maps.entries(rec.root ? rec.root.get() : rec.ref), seen: new Set(), began: cycles });
          break;
        }
        case 'step': {
          const p = passes[op.i % Math.max(1, passes.length)];
          if (!p) break;
          for (let s = 0; s < op.k; s++) {
            // Only the pass's own step may end it: a value it hands out
            // must check out whatever the map's fate (found in review: a
            // check of a freed value threw StaleReferenceError too, and was
            // taken for the pass's).
            let x: IteratorResult<[MapKey, Ref | 0]>;
            try {
              x = p.pass.next();
            } catch (e) {
              if (!(e instanceof StaleReferenceError) || !mayBeDead(p)) throw e;
              passes.splice(passes.indexOf(p), 1);
              break;
            }
            if (x.done) {
              expect(p.seen.size, 'a finished pass visited every entry').toBe(p.map.entries.size);
              passes.splice(passes.indexOf(p), 1);
              break;
            }
            const [k, v] = x.value as [number, Ref];
            expect(p.seen.has(k), 'each key once').toBe(false);
            p.seen.add(k);
            expect(heap.typeOf(v), `the value of key ${k}`).toBe('Val');
            expect(idOf(v), `the value of key ${k}`).toBe(p.map.entries.get(k));
          }
          break;
        }
        case 'garbage':
          for (let i = 0; i < op.n; i++) make(-1);
          break;
        case 'collect':
          if (inFlight) { await inFlight; inFlight = null; }
          start();
          await heap.collect();
          break;
        case 'cycleStart':
          if (!inFlight) { start(); inFlight = heap.collect(); }
          break;
        case 'window':
          if (!inFlight) { start(); inFlight = heap.collect(); }
          for (let i = 0; i < op.n; i++) make(-1);
          break;
        case 'cycleEnd':
          if (inFlight) { await inFlight; inFlight = null; }
          break;
      }
    }
    if (inFlight) await inFlight;
    // Rooted maps' passes go on to the end, every entry seen once.
    for (const p of passes) {
      if (!p.map.root) continue;
      for (let x = p.pass.next(); !x.done; x = p.pass.next()) {
        const [k, v] = x.value as [number, Ref];
        expect(p.seen.has(k), 'each key once').toBe(false);
        p.seen.add(k);
        expect(heap.typeOf(v)).toBe('Val');
        expect(idOf(v)).toBe(p.map.entries.get(k));
      }
      expect(p.seen.size).toBe(p.map.entries.size);
    }
  } finally {
    await closeHeap(heap);
  }
}

// (With the identity check's UNSWEPT/SWEEPING test taken out, the stw
// variant with a sweeper thread found a wrong value in two runs of three; PASS_RUNS=N
// runs more.)
describe('heap maps: passes held across cycles, against a shadow model', () => {
  for (const mode of MODES) {
    for (const sweepThreads of [0, 1]) {
      it(`[${mode}, ${sweepThreads} sweeper threads] no pass hands out a value its key did not have`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.array(passOpArb, { minLength: 20, maxLength: 120 }), (ops) => runPasses(mode, sweepThreads, ops)),
          { numRuns: Number(process.env.PASS_RUNS ?? (sweepThreads > 0 ? 40 : 15)) },
        );
      }, 120_000);
    }
  }
});

describe('examples/http-cache.mjs', () => {
  // Runs the README's LRU recipe end to end (a real server, real requests, a
  // cycle between them); it imports dist/, which `npm test` builds first.
  const root = resolve(import.meta.dirname, '..');
  it.skipIf(!existsSync(resolve(root, 'dist/index.js')))('passes its self-test', async () => {
    const out = await new Promise<string>((res, rej) => {
      execFile(process.execPath, [resolve(root, 'examples/http-cache.mjs'), '--self-test'], { timeout: 60_000 },
        (err, stdout, stderr) => (err ? rej(new Error(`${err.message}\n${stderr}`)) : res(stdout)));
    });
    expect(out).toMatch(/self-test ok/);
  }, 70_000);
});

describe('heap maps: code that runs inside set()\'s allocations', () => {
  it('listeners that use the maps while set() allocates leave every entry in place', async () => {
    // A full heap with a cycle in flight: set()'s allocation of the key
    // String finishes the cycle itself, and the cycle's event listeners run
    // inside it. They insert into the same map, look keys up in another,
    // and so move the slot set() had found and may grow the table.
    const heap = makeHeap({ maxHeap: '8MiB' });
    const map = heap.root(heap.maps.alloc());
    const other = heap.root(heap.maps.alloc());
    heap.maps.set(other.get(), 'probe', 0);
    let inSet = false;
    let inside = 0;
    const fromListeners: string[] = [];
    const useMaps = () => {
      if (!inSet) return;
      inside++;
      for (let k = 0; k < 20; k++) {
        const key = `listener ${inside}.${k}`;
        // At maxHeap with the cycle not yet able to free anything (a slow
        // child: the loop below filled the heap first), a listener's
        // allocation fails, as documented, and the failed set() leaves the
        // map as it was (tested above): only keys that went in must stay.
        try {
          heap.maps.set(map.get(), key, 0);
        } catch (e) {
          if (!(e instanceof HeapExhaustedError)) throw e;
          break;
        }
        fromListeners.push(key);
      }
      heap.maps.get(other.get(), 'probe');
    };
    for (const name of ['childDone', 'stream', 'mark', 'sweepStart', 'sweepEnd', 'cycle'] as const) heap.on(name, useMaps);
    for (let i = 0; i < 60_000; i++) heap.strings.alloc(`garbage ${i} ${'g'.repeat(60)}`);
    // The values are refs made before the cycle, so that set() is the only
    // thing that allocates while the heap fills up.
    const value = heap.root(heap.strings.alloc('the value'));
    const done = heap.collect();
    let n = 0;
    while (inside === 0 && n < 100_000) {
      inSet = true;
      heap.maps.set(map.get(), `key ${n}`, value.get());
      inSet = false;
      n++;
    }
    await done;
    expect(inside).toBeGreaterThan(0);  // the listeners did run inside a set()
    const m = map.get();
    for (let i = 0; i < n; i++) expect(heap.maps.get(m, `key ${i}`)).toBe(value.get());
    for (const key of fromListeners) expect(heap.maps.has(m, key)).toBe(true);
    expect(heap.maps.size(m)).toBe(n + fromListeners.length);
    const seen = new Set<string>();
    heap.maps.forEach(m, (key) => { seen.add(String(key)); });
    expect(seen.size).toBe(n + fromListeners.length);
  });
});

// Found in the session-15 review: the record of a map's last delete (which
// lets a visitor delete its own entry) outlived the map, and a new map in
// the freed one's slot took an insert at the same version for a self-delete.
describe('a freed map\'s last delete', () => {
  it.each(MODES)('%s: does not pass for a change to the new map in its slot: MapModifiedError as for any map', async (mode) => {
    const heap = makeHeap({ mode, auto: false });
    const maps = heap.maps;
    const a = maps.alloc();
    maps.set(a, 'a', 0);
    maps.set(a, 'b', 0);
    maps.delete(a, 'a');  // the record: a's granule, the slot of 'a', version 3
    const ga = granuleOf(heap, a);
    await heap.collect();  // a is garbage
    const b = maps.alloc();
    expect(granuleOf(heap, b), 'the new map is in the freed one\'s slot').toBe(ga);
    const root = heap.root(b);
    maps.set(b, 'a', 0);
    maps.set(b, 'b', 0);  // version 2; 'a' in the same slot (one seed per heap)
    const seen: unknown[] = [];
    expectError(() => maps.forEach(b, (k) => {
      seen.push(k);
      if (k === 'a' && !maps.has(b, 'c')) maps.set(b, 'c', 0);  // the insert is at version 3
    }), MapModifiedError, 'ERR_MAP_MODIFIED');
    expect(seen.filter((k) => k === 'a').length, 'no entry visited twice').toBeLessThanOrEqual(1);
    root.release();
  });
});
