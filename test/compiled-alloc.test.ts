// alloc(init) is compiled per struct type in the default mode
// (src/api/accessors.ts, compileAlloc); checked mode keeps the generic one
// (src/api/type-registry.ts). Both must behave the same: same values
// stored, same error (class, code, message) for the same bad init, and a
// bad init allocates nothing. Random inits, both heaps side by side.
import { describe, expect, it } from 'vitest';
import type { Heap } from '../src/index.js';
import { closeHeapsAfterEach, makeHeap, outcome } from './helpers/common.js';
import { Rng } from './helpers/graph.js';

closeHeapsAfterEach();

const FIELDS = { a: 'ref', w: 'weak', i: 'i32', u: 'u32', x: 'f64', b: 'bool' } as const;
type Name = keyof typeof FIELDS;

function setup(heap: Heap) {
  const T = heap.defineStruct('T', FIELDS);
  const Empty = heap.defineStruct('Empty', {});
  const target = T.alloc({ i: 7 });
  heap.root(target);
  return { T, Empty, target };
}

/** A deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

describe('compiled alloc(init) behaves as its setters do', () => {
  it.each([false, true])('checked %s: same stored values and errors as alloc() + one set per field; a bad init allocates nothing (3000 random inits)', (checked) => {
    const heap = makeHeap({ mode: 'stw', checked });
    const { T, Empty, target } = setup(heap);
    const probe = T.alloc();
    heap.root(probe);
    const next = rng(checked ? 12 : 11);
    const names = Object.keys(FIELDS) as Name[];
    const valuesFor = (name: Name): unknown[] => {
      switch (FIELDS[name]) {
        case 'ref': case 'weak': return [0, target, target + 1, -1, 'x', 1.5, 2 ** 31 + target, undefined];
        case 'i32': return [0, -5, 2 ** 31, 1.5, '3', undefined];
        case 'u32': return [0, 2 ** 32 - 1, -1, 2 ** 32, undefined];
        case 'f64': return [0, -0.5, NaN, '1', undefined];
        default: return [true, false, 0, undefined];
      }
    };
    const read = (r: number) => names.map((n) => {
      const v = (T.get as Record<string, (r: number) => unknown>)[n](r);
      return FIELDS[n] === 'ref' || FIELDS[n] === 'weak' ? (v === 0 ? 0 : v === target ? 'target' : 'other') : v;
    });
    for (let round = 0; round < 3000; round++) {
      let init: unknown;
      let expected: unknown;
      if (next() < 0.03) {
        init = [null, 5, 'init'][Math.floor(next() * 3)];
        expected = { error: 'FieldValueError', code: 'ERR_FIELD_VALUE', message: 'T.alloc: init must be an object of field values' };
      } else {
        const o: Record<string, unknown> = {};
        for (const n of names) {
          if (next() < 0.5) continue;
          const vs = valuesFor(n);
          o[n] = vs[Math.floor(next() * vs.length)];
        }
        if (next() < 0.05) o.nope = 1;
        init = o;
        if ('nope' in o) {
          expected = { error: 'FieldValueError', code: 'ERR_FIELD_VALUE', message: "T.alloc: no field 'nope'" };
        } else {
          // The model: each value checked by its setter, in declaration order; the first error wins.
          for (const n of names) {
            (T.set as Record<string, (r: number, v: unknown) => void>)[n](probe, FIELDS[n] === 'bool' ? false : 0);
          }
          expected = { ok: true };
          for (const n of names) {
            if (o[n] === undefined) continue;
            const e = outcome(() => (T.set as Record<string, (r: number, v: unknown) => void>)[n](probe, o[n]));
            if (!('ok' in (e as object))) { expected = e; break; }
          }
        }
      }
      const before = heap.stats().objects;
      const got = outcome(() => T.alloc(init as never));
      const strip = (x: unknown) => ('ok' in (x as object) ? { ok: true } : x);
      expect(strip(got), JSON.stringify(init)).toEqual(strip(expected));
      if ('ok' in (got as object)) {
        expect(heap.stats().objects - before).toBe(1);
        // The stored values: what the setters stored into the probe.
        expect(read((got as { ok: number }).ok), JSON.stringify(init)).toEqual(read(probe));
      } else {
        expect(heap.stats().objects - before, 'a bad init allocates nothing').toBe(0);
      }
      if (next() < 0.05) {
        const e = outcome(() => Empty.alloc({ x: 1 } as never));
        expect(e).toEqual({ error: 'FieldValueError', code: 'ERR_FIELD_VALUE', message: "Empty.alloc: no field 'x'" });
        expect(typeof Empty.alloc()).toBe('number');
      }
    }
  });
});
