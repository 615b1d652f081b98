// Compile-time types of the public API (src/api/types.ts): Refs are branded
// per struct, so a Ref of one type passed where another is expected does not
// compile; plain numbers are accepted (the run-time checks apply). The
// `@ts-expect-error` lines are checked by `npm run typecheck` (a line that
// compiled would make it fail); expectTypeOf checks the declared types.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { WrongTypeError, type Ref, type RootHandle } from '../src/index.js';
import { closeHeapsAfterEach, makeHeap, thrown } from './helpers/common.js';

closeHeapsAfterEach();

describe('branded references (compile time)', () => {
  it('alloc returns Ref<Name>; accessors take their own type, plain numbers and untyped Refs, not other types', () => {
    const heap = makeHeap();
    const User = heap.defineStruct('User', { id: 'i32', friend: 'ref', score: 'f64', ok: 'bool' });
    const Point = heap.defineStruct('Point', { x: 'f64', y: 'f64' });
    const u = User.alloc({ id: 1 });
    const p = Point.alloc({ x: 2 });
    expectTypeOf(u).toEqualTypeOf<Ref<'User'>>();
    expectTypeOf(p).toEqualTypeOf<Ref<'Point'>>();
    expectTypeOf(User.name).toEqualTypeOf<'User'>();
    expectTypeOf(User.get.id(u)).toEqualTypeOf<number>();
    expectTypeOf(User.get.ok(u)).toEqualTypeOf<boolean>();
    // A reference field holds an object of any type: Ref (untyped) or 0.
    expectTypeOf(User.get.friend(u)).toEqualTypeOf<Ref | 0>();
    expect(Point.get.x(p)).toBe(2);

    // @ts-expect-error a User is not a Point
    const e = thrown(() => Point.get.x(u));
    expect(e).toBeInstanceOf(WrongTypeError);  // and at run time neither
    // @ts-expect-error not a Point either
    expect(thrown(() => Point.set.y(u, 1))).toBeInstanceOf(WrongTypeError);
    // @ts-expect-error a string is no reference at all
    expect(thrown(() => Point.get.x('1'))).toBeDefined();
    // @ts-expect-error a field's value type is checked too
    expect(thrown(() => User.set.ok(u, 1))).toBeDefined();

    // Opting out: a plain number compiles (the run-time check still applies).
    const raw: number = u;
    expect(User.get.id(raw)).toBe(1);
    expect(thrown(() => Point.get.x(raw))).toBeInstanceOf(WrongTypeError);
    // An untyped Ref (from a reference field or array) is accepted anywhere.
    User.set.friend(u, p);
    const f = User.get.friend(u);
    if (f !== 0) expect(Point.get.x(f)).toBe(2);
    // A struct whose name is typed `string` takes any Ref.
    const name: string = 'Loose';
    const Loose = heap.defineStruct(name, { v: 'i32' });
    expect(thrown(() => Loose.get.v(u))).toBeInstanceOf(WrongTypeError);
  });

  it('RefArray, Bytes and String Refs are branded too; roots keep the brand', () => {
    const heap = makeHeap();
    const Point = heap.defineStruct('Point', { x: 'f64' });
    const a = heap.arrays.alloc(2);
    const b = heap.bytes.alloc(3);
    const s = heap.strings.alloc('hi');
    expectTypeOf(a).toEqualTypeOf<Ref<'RefArray'>>();
    expectTypeOf(b).toEqualTypeOf<Ref<'Bytes'>>();
    expectTypeOf(s).toEqualTypeOf<Ref<'String'>>();
    expectTypeOf(heap.arrays.get(a, 0)).toEqualTypeOf<Ref | 0>();
    heap.arrays.set(a, 0, s);
    expect(heap.strings.read(s)).toBe('hi');
    // @ts-expect-error Bytes are not a String
    expect(thrown(() => heap.strings.read(b))).toBeInstanceOf(WrongTypeError);
    // @ts-expect-error a String is not Bytes
    expect(thrown(() => heap.bytes.get(s, 0))).toBeInstanceOf(WrongTypeError);
    // @ts-expect-error a RefArray is not a Point
    expect(thrown(() => Point.get.x(a))).toBeInstanceOf(WrongTypeError);
    const h = heap.root(Point.alloc({ x: 4 }));
    expectTypeOf(h).toEqualTypeOf<RootHandle<'Point'>>();
    expectTypeOf(h.get()).toEqualTypeOf<Ref<'Point'>>();
    expect(Point.get.x(h.get())).toBe(4);
    // @ts-expect-error a handle of Points roots Points
    expect(thrown(() => h.set(b))).toBeUndefined();
  });
});

// Found in the session-16 review: the name was checked before the fields'
// getters ran, so a getter that defined the same name made two types of one
// name; one that closed the heap got a type of the closed heap back.
describe('defineStruct re-entered from a getter of its own fields', () => {
  it('a getter that defines the same name: the outer definition is refused (ERR_TYPE_DEFINITION)', () => {
    const heap = makeHeap({ maxHeap: '16MiB', sweepThreads: 0 });
    let inner: unknown;
    const fields = { get a() { inner ??= heap.defineStruct('Dup', { x: 'f64' }); return 'i32' as const; } };
    expect(thrown(() => heap.defineStruct('Dup', fields))).toMatchObject({ code: 'ERR_TYPE_DEFINITION' });
    expect(inner).toBeDefined();
    expect(thrown(() => heap.defineStruct('Dup', { y: 'i32' }))).toMatchObject({ code: 'ERR_TYPE_DEFINITION' });
  });

  it('a getter that closes the heap: HeapClosedError', () => {
    const heap = makeHeap({ maxHeap: '16MiB', sweepThreads: 0 });
    const fields = { get a() { void heap.close(); return 'i32' as const; } };
    expect(thrown(() => heap.defineStruct('C', fields))).toMatchObject({ code: 'ERR_HEAP_CLOSED' });
  });
});
