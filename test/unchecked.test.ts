// StructType.unchecked (src/api/accessors.ts, src/api/type-registry.ts): the
// accessors without reference checks. They must read and write exactly what
// the checked ones do for valid Refs, keep checking the values of number and
// boolean fields, be the checked ones where the checks are the point
// (checked mode, weak fields), and confine a wrong Ref's damage to the heap's
// object memory. And they must be small enough for TurboFan to inline where
// the checked ones are not: the reason they exist.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CycleAbortedError, FieldValueError, InvalidArgumentError, StaleReferenceError } from '../src/index.js';
import { heapInternals } from '../src/internal.js';
import { closeHeapsAfterEach, expectError, isFreed, makeHeap, MODES, type Ref } from './helpers/common.js';
import { allocateUntilReused, granuleOf } from './helpers/slots.js';
import { traceFixture } from './helpers/v8-trace.js';

closeHeapsAfterEach();

const FIELDS = { a: 'ref', b: 'ref', i: 'i32', u: 'u32', f: 'f64', z: 'bool' } as const;

type Op =
  | { kind: 'alloc' }
  | { kind: 'ref'; obj: number; field: 'a' | 'b'; to: number }
  | { kind: 'i'; obj: number; value: number }
  | { kind: 'u'; obj: number; value: number }
  | { kind: 'f'; obj: number; value: number }
  | { kind: 'z'; obj: number; value: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ kind: 'alloc' }),
  fc.record({ kind: fc.constant('ref' as const), obj: fc.nat(), field: fc.constantFrom('a' as const, 'b' as const), to: fc.integer({ min: -1, max: 1000 }) }),
  fc.record({ kind: fc.constant('i' as const), obj: fc.nat(), value: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }),
  fc.record({ kind: fc.constant('u' as const), obj: fc.nat(), value: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }),
  fc.record({ kind: fc.constant('f' as const), obj: fc.nat(), value: fc.double() }),
  fc.record({ kind: fc.constant('z' as const), obj: fc.nat(), value: fc.boolean() }),
);

describe('unchecked accessors, valid Refs', () => {
  it('read and write what the checked ones do, and hand out the same Refs (random programs, a model as oracle)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 120 }), fc.boolean(), async (ops, readUnchecked) => {
      const heap = makeHeap({ mode: 'stw', auto: false, sweepThreads: 0 });
      try {
        const T = heap.defineStruct('Rec', FIELDS);
        const U = T.unchecked;
        expect(T.unchecked).toBe(U);  // compiled once
        // Slots freed by a cycle in spans kept in use (every 8th object
        // lives): the program's objects reuse them, so their Refs carry a
        // generation above 0 in the bits the accessors must strip and add.
        const kept = [];
        for (let k = 0; k < 800; k++) {
          const r = T.alloc();
          if (k % 8 === 0) kept.push(heap.root(r));
        }
        await heap.collect();
        const objs: Ref[] = [T.alloc()];
        const model: Array<{ a: number; b: number; i: number; u: number; f: number; z: boolean }> =
          [{ a: -1, b: -1, i: 0, u: 0, f: 0, z: false }];
        for (const op of ops) {
          if (op.kind === 'alloc') {
            objs.push(T.alloc());
            model.push({ a: -1, b: -1, i: 0, u: 0, f: 0, z: false });
            continue;
          }
          const k = op.obj % objs.length;
          switch (op.kind) {
            case 'ref': {
              const to = op.to < 0 ? -1 : op.to % objs.length;
              U.set[op.field](objs[k], to < 0 ? 0 : objs[to]);
              model[k][op.field] = to;
              break;
            }
            case 'i': U.set.i(objs[k], op.value); model[k].i = op.value; break;
            case 'u': U.set.u(objs[k], op.value); model[k].u = op.value; break;
            case 'f': U.set.f(objs[k], op.value); model[k].f = op.value; break;
            case 'z': U.set.z(objs[k], op.value); model[k].z = op.value; break;
          }
        }
        // A cycle with every object rooted: the stored references must be
        // the granules the marker follows (a tagged one is corruption to it),
        // and nothing may change.
        const held = objs.map((r) => heap.root(r));
        await heap.collect();
        held.forEach((h) => h.release());
        const G = readUnchecked ? U.get : T.get;
        objs.forEach((r, k) => {
          const m = model[k];
          for (const field of ['a', 'b'] as const) {
            const want = m[field] < 0 ? 0 : objs[m[field]];
            expect(G[field](r)).toBe(want);
            // The unchecked getter tags a Ref with its generation as the checked one does.
            expect(U.get[field](r)).toBe(T.get[field](r));
          }
          expect([G.i(r), G.u(r), G.z(r)]).toEqual([m.i, m.u, m.z]);
          expect(Object.is(G.f(r), m.f)).toBe(true);
        });
        expect(objs.some((r) => r !== granuleOf(heap, r)), 'some Ref carries a generation').toBe(true);
        kept.forEach((h) => h.release());
      } finally {
        void heap.close();
      }
    }), { numRuns: 60 });
  });

  it.each(MODES)('%s: a collection after unchecked writes frees exactly what they left unreachable', async (mode) => {
    const heap = makeHeap({ mode, auto: false, sweepThreads: 0 });
    const T = heap.defineStruct('Rec', FIELDS);
    const U = T.unchecked;
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    // Earlier objects, every 8th kept: the program's objects reuse freed
    // slots, so their Refs carry generations.
    const kept = [];
    for (let k = 0; k < 4000; k++) {
      const r = T.alloc();
      if (k % 8 === 0) kept.push(heap.root(r));
    }
    await heap.collect();
    const objs: Ref[] = [];
    const edges: number[][] = [];
    for (let k = 0; k < 3000; k++) {
      objs.push(T.alloc({ i: k }));
      edges.push([]);
    }
    for (let e = 0; e < 2400; e++) {
      const from = rnd(objs.length);
      const field = rnd(2) === 0 ? 'a' : 'b';
      const to = rnd(objs.length);
      U.set[field](objs[from], objs[to]);
      edges[from][field === 'a' ? 0 : 1] = to;
    }
    const roots = [0, 1, 2, 3, 4].map((k) => heap.root(objs[k]));
    const reachable = new Set<number>();
    const stack = [0, 1, 2, 3, 4];
    while (stack.length) {
      const k = stack.pop()!;
      if (reachable.has(k)) continue;
      reachable.add(k);
      for (const to of edges[k]) if (to !== undefined) stack.push(to);
    }
    expect(reachable.size).toBeGreaterThan(5);
    expect(reachable.size).toBeLessThan(objs.length);
    await heap.collect();
    objs.forEach((r, k) => {
      expect(isFreed(heap, r), `object ${k}`).toBe(!reachable.has(k));
      if (reachable.has(k)) expect(U.get.i(r)).toBe(k);
    });
    expect(objs.some((r) => r !== granuleOf(heap, r) && !isFreed(heap, r)), 'a live Ref carries a generation').toBe(true);
    roots.forEach((h) => h.release());
    kept.forEach((h) => h.release());
  }, 60_000);
});

describe('the unchecked property', () => {
  // One getter serves every struct type (so that V8 keeps the types' fast
  // properties, test/handle-shapes.test.ts): each type gets its own tables,
  // the property stays an own enumerable one, and the getter lifted off a
  // type and called on anything else says so with a coded error.
  it('is each type\'s own, compiled once, enumerable; a foreign receiver gets ERR_INVALID_ARGUMENT', () => {
    const heap = makeHeap({ mode: 'stw', auto: false, sweepThreads: 0 });
    const A = heap.defineStruct('A', { x: 'i32' });
    const B = heap.defineStruct('B', { y: 'i32' });
    expect(A.unchecked).toBe(A.unchecked);
    expect(A.unchecked).not.toBe(B.unchecked);
    expect(Object.keys(A.unchecked.get)).toEqual(['x']);
    expect(Object.keys(B.unchecked.get)).toEqual(['y']);
    expect(Object.keys(A)).toContain('unchecked');
    expect(Object.isFrozen(A)).toBe(true);
    const b = B.alloc();
    B.unchecked.set.y(b, 7);
    expect(B.get.y(b)).toBe(7);
    const getter = Object.getOwnPropertyDescriptor(A, 'unchecked')!.get!;
    for (const receiver of [{}, null, undefined, 1]) {
      expectError(() => getter.call(receiver), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
    }
    expect(getter.call(Object.create(A))).toBe(A.unchecked);
  });
});

describe('unchecked writes while a child marks', () => {
  it('are plain stores to the collector: the cycle frees exactly what was unreachable at the fork, keeps what it reached then and what came after', async () => {
    const heap = makeHeap({ mode: 'fork', auto: false, sweepThreads: 0 });
    const T = heap.defineStruct('Rec', FIELDS);
    const U = T.unchecked;
    // A root with two chains of 200 (a and b) and 200 unreachable objects.
    const root = heap.root(T.alloc());
    const chain = (field: 'a' | 'b') => {
      const nodes: Ref[] = [];
      let prev = root.get();
      for (let k = 0; k < 200; k++) {
        const n = T.alloc({ i: k });
        U.set[field](prev, n);
        nodes.push(n);
        prev = n;
      }
      return nodes;
    };
    const viaA = chain('a');
    const viaB = chain('b');
    const dead: Ref[] = [];
    for (let k = 0; k < 200; k++) dead.push(T.alloc({ i: -k }));
    const done = heap.collect();  // the fork: the snapshot is taken here
    // After the fork: cut chain b off the root, and hang new objects there.
    U.set.b(root.get(), 0);
    const late: Ref[] = [];
    let prev = root.get();
    for (let k = 0; k < 100; k++) {
      const n = T.alloc({ i: 1000 + k });
      U.set.b(prev, n);
      late.push(n);
      prev = n;
    }
    await done;
    expect(viaA.filter((r) => isFreed(heap, r))).toEqual([]);
    expect(viaB.filter((r) => isFreed(heap, r)), 'reachable at the fork: kept this cycle').toEqual([]);
    expect(late.filter((r) => isFreed(heap, r)), 'allocated after the fork').toEqual([]);
    expect(dead.filter((r) => !isFreed(heap, r))).toEqual([]);
    expect(late.map((r) => U.get.i(r))).toEqual(late.map((_, k) => 1000 + k));
    // The next cycle sees chain b gone.
    await heap.collect();
    expect(viaB.filter((r) => !isFreed(heap, r))).toEqual([]);
    expect(late.filter((r) => isFreed(heap, r))).toEqual([]);
    root.release();
  }, 60_000);
});

describe('unchecked accessors still check values', () => {
  it('a number or boolean field refuses a value of the wrong kind, and writes nothing', () => {
    const heap = makeHeap({ auto: false, sweepThreads: 0 });
    const T = heap.defineStruct('Rec', FIELDS);
    const U = T.unchecked;
    const r = T.alloc({ i: 5, u: 6, f: 7.5, z: true });
    expectError(() => U.set.i(r, 1.5), FieldValueError, 'ERR_FIELD_VALUE', 'i32 1.5');
    expectError(() => U.set.u(r, -1), FieldValueError, 'ERR_FIELD_VALUE', 'u32 -1');
    expectError(() => U.set.f(r, '1' as unknown as number), FieldValueError, 'ERR_FIELD_VALUE', 'f64 string');
    expectError(() => U.set.z(r, 1 as unknown as boolean), FieldValueError, 'ERR_FIELD_VALUE', 'bool 1');
    expect([T.get.i(r), T.get.u(r), T.get.f(r), T.get.z(r)]).toEqual([5, 6, 7.5, true]);
  });
});

describe('where the checks are the point, unchecked is checked', () => {
  it('checked mode hands out the checked accessors: a stale or made-up Ref still throws', async () => {
    const heap = makeHeap({ checked: true, mode: 'stw', sweepThreads: 0 });
    const T = heap.defineStruct('Rec', FIELDS);
    expect(T.unchecked.get).toBe(T.get);
    expect(T.unchecked.set).toBe(T.set);
    const old = T.alloc();
    await heap.collect();
    expect(() => T.unchecked.get.i(old)).toThrow(StaleReferenceError);
    expect(() => T.unchecked.set.i(12345, 1)).toThrow();
  });

  it('a weak field keeps its checked accessors (the read barrier is not a check to skip)', () => {
    const heap = makeHeap({ auto: false, sweepThreads: 0 });
    const T = heap.defineStruct('Holder', { w: 'weak', s: 'ref' });
    expect(T.unchecked.get.w).toBe(T.get.w);
    expect(T.unchecked.set.w).toBe(T.set.w);
    expect(T.unchecked.get.s).not.toBe(T.get.s);
  });

  it('in the default mode the unchecked accessors do not see a stale Ref (the trade they make, documented)', async () => {
    const heap = makeHeap({ mode: 'stw', sweepThreads: 0 });
    const T = heap.defineStruct('Rec', FIELDS);
    heap.root(T.alloc());
    const old = T.alloc({ i: 1 });
    const g = granuleOf(heap, old);
    await heap.collect();
    const fresh = allocateUntilReused(heap, () => T.alloc({ i: 2 }), g);
    expect(() => T.get.i(old)).toThrow(StaleReferenceError);
    expect(T.unchecked.get.i(old)).toBe(2);  // reads the new object in the reused slot
    expect(T.get.i(fresh)).toBe(2);
  });
});

describe('a wrong Ref stays inside the heap\'s object memory', () => {
  it.each(MODES)('%s: forged Refs write nowhere but the arena, never the bitmaps, span table, roots or type table; the next cycle completes or reports corruption', async (mode) => {
    const heap = makeHeap({ mode, auto: false, sweepThreads: 0, maxHeap: '64MiB' });
    const T = heap.defineStruct('Rec', FIELDS);
    const U = T.unchecked;
    const live: Ref[] = [];
    for (let k = 0; k < 2000; k++) live.push(T.alloc({ i: k }));
    const root = heap.root(live[0]);
    const v = heapInternals(heap).views;
    const metadata = () => [v.allocBits, v.markBits, v.spans, v.roots, v.descriptors].map((a) => Uint8Array.from(
      new Uint8Array(a.buffer, a.byteOffset, a.byteLength)));
    const before = metadata();
    const forged = [0, 1, 2 ** 32 - 1, 2 ** 31, 0x7fffffff, 12345.5, -1, 2 ** 40, NaN, Infinity, -0];
    let seed = 3;
    for (let k = 0; k < 400; k++) forged.push((seed = (seed * 1103515245 + 12345) >>> 0));
    for (const ref of forged) {
      U.set.a(ref as Ref, live[1]);
      U.set.i(ref as Ref, -7);
      U.set.f(ref as Ref, 1.25);
      U.set.z(ref as Ref, true);
      U.get.a(ref as Ref);
      U.get.f(ref as Ref);
    }
    const after = metadata();
    after.forEach((bytes, k) => expect(Buffer.compare(bytes, before[k]), `metadata buffer ${k}`).toBe(0));
    const outcome = await heap.collect().then(() => 'completed', (e: unknown) => e);
    if (outcome !== 'completed') expect((outcome as CycleAbortedError).reason).toBe('HEAP_CORRUPT');
    root.release();
  }, 60_000);

  it.each(MODES)('%s: a reference field written with a number that is no object aborts the cycle (HEAP_CORRUPT), nothing freed; mended, the next cycle frees', async (mode) => {
    const heap = makeHeap({ mode, auto: false, sweepThreads: 0 });
    const T = heap.defineStruct('Rec', FIELDS);
    const holder = heap.root(T.alloc());
    const garbage = T.alloc({ i: 9 });
    T.unchecked.set.a(holder.get(), 5 as Ref);  // granule 5 is in span 0, reserved: never an object
    const e = await heap.collect().then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(CycleAbortedError);
    expect((e as CycleAbortedError).reason).toBe('HEAP_CORRUPT');
    expect(isFreed(heap, garbage)).toBe(false);
    expect(T.get.i(garbage)).toBe(9);
    T.unchecked.set.a(holder.get(), 0);
    await heap.collect();
    expect(isFreed(heap, garbage)).toBe(true);
  }, 60_000);
});

describe('unchecked accessors of a closed heap', () => {
  it('read undefined and write nothing (no HeapClosedError: they check nothing; the views are detached by close())', async () => {
    const heap = makeHeap({ auto: false, sweepThreads: 0 });
    const T = heap.defineStruct('Rec', FIELDS);
    const r = T.alloc({ i: 3 });
    const U = T.unchecked;
    expect(U.get.i(r)).toBe(3);
    await heap.close();
    expect(U.get.i(r)).toBeUndefined();
    expect(U.get.f(r)).toBeUndefined();
    expect(U.get.a(r)).toBe(0);  // a reference field: the Ref's tagging makes a number of it, null
    expect(() => U.set.i(r, 4)).not.toThrow();
    expect(() => U.set.a(r, r)).not.toThrow();
    expect(T.unchecked).toBe(U);
  });
});

describe('unchecked accessors are small enough to inline', () => {
  it('TurboFan inlines all 22 of a splay()\'s unchecked field accesses; fewer of the checked ones', () => {
    const into = (lines: string[]) =>
      lines.filter((l) => l.startsWith('Inlining ') && /<SharedFunctionInfo [gs]et_\w+>\} into .*<SharedFunctionInfo splay>\}$/.test(l)).length;
    const unchecked = into(traceFixture('unchecked-inlining.mjs', '--trace-turbo-inlining', 60_000, ['unchecked']));
    const checked = into(traceFixture('unchecked-inlining.mjs', '--trace-turbo-inlining', 60_000, ['checked']));
    expect(unchecked).toBeGreaterThanOrEqual(22);
    expect(checked).toBeLessThan(unchecked);
  }, 120_000);
});
