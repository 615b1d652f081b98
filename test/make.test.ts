// StructType.make(v0, v1, ...): a new object with its fields set from the
// values in declaration order. Compiled per type in the default mode
// (src/api/accessors.ts, compileAlloc), built on alloc(init) in checked mode
// (src/api/type-registry.ts). The model is the one compiled-alloc.test.ts
// uses for alloc(init): alloc() and then each value through its field's
// setter, in declaration order, the first error winning; a bad value
// allocates nothing.
import { describe, expect, it } from 'vitest';
import { FieldValueError, StaleReferenceError, type Heap } from '../src/index.js';
import { closeHeapsAfterEach, makeHeap, outcome, withTimeout } from './helpers/common.js';
import { Rng } from './helpers/graph.js';

closeHeapsAfterEach();

const FIELDS = { a: 'ref', w: 'weak', i: 'i32', u: 'u32', x: 'f64', b: 'bool' } as const;
type Name = keyof typeof FIELDS;
const NAMES = Object.keys(FIELDS) as Name[];

/** A deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

async function setup(heap: Heap) {
  const T = heap.defineStruct('T', FIELDS);
  const target = T.alloc({ i: 7 });
  heap.root(target);
  // A Ref whose object a cycle freed: stale.
  const freed = T.alloc();
  await heap.collect();
  return { T, target, freed };
}

describe('make(...values) stores what alloc() and the setters would, and fails as they would', () => {
  it.each([false, true])('checked %s: 3000 random value lists (too many, stale, wrong kinds, holes)', async (checked) => {
    const heap = makeHeap({ mode: 'stw', checked });
    const { T, target, freed } = await setup(heap);
    const probe = T.alloc();
    heap.root(probe);
    const next = rng(checked ? 22 : 21);
    const valuesFor = (name: Name): unknown[] => {
      switch (FIELDS[name]) {
        case 'ref': case 'weak': return [0, target, freed, target + 1, -1, 'x', 1.5, 2 ** 31 + target, undefined];
        case 'i32': return [0, -5, 2 ** 31, 1.5, '3', undefined];
        case 'u32': return [0, 2 ** 32 - 1, -1, 2 ** 32, undefined];
        case 'f64': return [0, -0.5, NaN, '1', undefined];
        default: return [true, false, 0, undefined];
      }
    };
    const get = T.get as Record<string, (r: number) => unknown>;
    const set = T.set as Record<string, (r: number, v: unknown) => void>;
    const read = (r: number) => NAMES.map((n) => {
      const v = get[n](r);
      return FIELDS[n] === 'ref' || FIELDS[n] === 'weak' ? (v === 0 ? 0 : v === target ? 'target' : 'other') : v;
    });
    let made = 0;
    for (let round = 0; round < 3000; round++) {
      const count = Math.floor(next() * (NAMES.length + 2));  // up to one too many
      const values = Array.from({ length: count }, (_, k) => {
        const vs = valuesFor(NAMES[Math.min(k, NAMES.length - 1)]);
        return vs[Math.floor(next() * vs.length)];
      });
      let expected: unknown;
      if (count > NAMES.length) {
        expected = { error: 'FieldValueError', code: 'ERR_FIELD_VALUE', message: `T.make: ${count} values for 6 fields` };
      } else {
        for (const n of NAMES) set[n](probe, FIELDS[n] === 'bool' ? false : 0);
        expected = { ok: true };
        for (let k = 0; k < count; k++) {
          if (values[k] === undefined) continue;
          const e = outcome(() => set[NAMES[k]](probe, values[k]));
          if (!('ok' in (e as object))) { expected = e; break; }
        }
      }
      const before = heap.stats().objects;
      const got = outcome(() => T.make(...(values as number[])));
      const strip = (x: unknown) => ('ok' in (x as object) ? { ok: true } : x);
      expect(strip(got), JSON.stringify(values)).toEqual(strip(expected));
      if ('ok' in (got as object)) {
        made++;
        const r = (got as { ok: number }).ok;
        expect(T.is(r)).toBe(true);
        expect(heap.stats().objects - before).toBe(1);
        expect(read(r), JSON.stringify(values)).toEqual(read(probe));
      } else {
        expect(heap.stats().objects - before, 'a bad value allocates nothing').toBe(0);
      }
    }
    // Enough objects made that the compiled make() emptied its cached word
    // many times: both its inline path and its slow call ran.
    expect(made).toBeGreaterThan(300);
  });

  it('make() with no values is alloc(); a type without fields takes none', () => {
    const heap = makeHeap({ mode: 'stw' });
    const P = heap.defineStruct('P', { x: 'f64', y: 'f64', next: 'ref' });
    const Empty = heap.defineStruct('Empty', {});
    const p = P.make();
    expect([P.get.x(p), P.get.y(p), P.get.next(p)]).toEqual([0, 0, 0]);
    const q = P.make(1.5, -2, p);
    expect([P.get.x(q), P.get.y(q), P.get.next(q)]).toEqual([1.5, -2, p]);
    expect(P.is(Empty.make())).toBe(false);
    expect(() => Empty.make(1)).toThrow(FieldValueError);
    expect(() => Empty.make(1)).toThrow('Empty.make: 1 values for 0 fields');
    expect(() => P.make(1, 2, 0, 4)).toThrow('P.make: 4 values for 3 fields');
  });

  it('a type of any size class, the largest included: every field set, in declaration order', () => {
    const heap = makeHeap({ mode: 'stw', maxHeap: '256MiB' });
    // 9000 i32 fields: 36 KiB, over the largest size class (a run of spans).
    for (const n of [1, 3, 20, 300, 9000]) {
      const spec: Record<string, 'i32'> = {};
      for (let k = 0; k < n; k++) spec[`f${k}`] = 'i32';
      const T = heap.defineStruct(`S${n}`, spec);
      const values = Array.from({ length: n }, (_, k) => k * 7 - 3);
      for (let round = 0; round < 40; round++) {
        const r = T.make(...values);
        const get = T.get as Record<string, (r: number) => number>;
        for (const k of [0, n >> 1, n - 1]) expect(get[`f${k}`](r)).toBe(values[k]);
      }
    }
  });
});

describe('make(ref) whose allocation moves a cycle on', () => {
  // The compiled make() checks a reference value before it allocates; an
  // allocation that takes a new span moves a cycle in flight on (sweeping,
  // and listeners run inside it), which may free an object the caller holds
  // an unrooted Ref to (a breach of the rooting contract). The value is then
  // checked again before it is stored: make() throws StaleReferenceError
  // rather than store a Ref to a freed slot. The invariant watched here:
  // whenever make(v) returns, v is still allocated.
  for (const mode of ['stw', 'fork'] as const) {
    it(`never returns an object that holds a freed object (${mode})`, async () => {
      const heap = makeHeap({ maxHeap: '64MiB', sweepThreads: 0, inlineSweepUs: 0, mode });
      const T = heap.defineStruct('T', { next: 'ref', n: 'i32' });
      // Unrooted and unreachable: the cycle below frees it.
      const v = T.make(0, 1);
      for (let i = 0; i < 200_000; i++) T.make(0, i);
      const cycle = heap.collect().catch((e: unknown) => e);
      if (mode === 'fork') for (const t = Date.now(); Date.now() - t < 300;);
      let returned = 0;
      let error: unknown;
      for (let k = 0; k < 2_000_000 && error === undefined; k++) {
        try {
          T.make(v, k);
          returned++;
          expect(T.is(v), `make(v) returned after v was freed (call ${k})`).toBe(true);
        } catch (e) {
          error = e;
        }
      }
      expect(error).toBeInstanceOf(StaleReferenceError);
      await withTimeout(cycle, 30_000, 'collect');
    }, 60_000);
  }
});
