/**
 * The error contract (API.md, "Errors"): every failure of the public API is a
 * ForkGcError subclass with its documented string `.code`, and a failed call
 * leaves the heap as it was.
 */
import { describe, expect, it } from 'vitest';
import {
  CycleAbortedError,
  FieldValueError,
  ForkGcError,
  Heap,
  HeapClosedError,
  HeapExhaustedError,
  IndexOutOfBoundsError,
  InvalidArgumentError,
  InvalidOptionError,
  InvalidReferenceError,
  NativeLoadError,
  RootReleasedError,
  StaleReferenceError,
  TypeDefinitionError,
  UnsupportedPlatformError,
  WrongTypeError,
} from '../src/index.js';
import {
  closeHeap,
  closeHeapsAfterEach,
  describeError,
  expectCode,
  expectError,
  expectRejection,
  makeHeap,
  MiB,
  thrown,
  withTimeout,
  type HeapOptions,
} from './helpers/common.js';

closeHeapsAfterEach();

const GiB = 1024 * MiB;

function setup(opts: HeapOptions = {}) {
  const heap = makeHeap(opts);
  const Node = heap.defineStruct('Node', { left: 'ref', right: 'ref', value: 'i32', w: 'f64', ok: 'bool', id: 'u32', pad1: 'f64', pad2: 'f64' });
  const Leaf = heap.defineStruct('Leaf', { v: 'i32' });
  const n = Node.alloc({ value: 5, w: 2.5, ok: true, id: 9 });
  const leaf = Leaf.alloc({ v: 1 });
  const arr = heap.arrays.alloc(10);
  const bytes = heap.bytes.alloc(16);
  const str = heap.strings.alloc('héllo');
  return { heap, Node, Leaf, n, leaf, arr, bytes, str };
}

describe('errors: the class hierarchy', () => {
  it('every documented error class extends ForkGcError, which extends Error', () => {
    const classes = [
      InvalidOptionError,
      TypeDefinitionError,
      InvalidReferenceError,
      WrongTypeError,
      StaleReferenceError,
      IndexOutOfBoundsError,
      FieldValueError,
      InvalidArgumentError,
      HeapClosedError,
      HeapExhaustedError,
      RootReleasedError,
      CycleAbortedError,
      UnsupportedPlatformError,
      NativeLoadError,
    ];
    expect(ForkGcError.prototype).toBeInstanceOf(Error);
    for (const C of classes) {
      expect(C.prototype, C.name).toBeInstanceOf(ForkGcError);
      expect(C).not.toBe(ForkGcError);
    }
    expect(new Set(classes).size).toBe(classes.length);
  });
});

describe('errors: InvalidOptionError (ERR_INVALID_OPTION)', () => {
  const bad: [string, unknown][] = [
    ['negative maxHeap', { maxHeap: -1 }],
    ['zero maxHeap', { maxHeap: 0 }],
    ['NaN maxHeap', { maxHeap: NaN }],
    ['Infinity maxHeap', { maxHeap: Infinity }],
    ['absurd maxHeap', { maxHeap: 2 ** 60 }],
    ["maxHeap '12 parsecs'", { maxHeap: '12 parsecs' }],
    ["maxHeap ''", { maxHeap: '' }],
    ["maxHeap '-64MiB'", { maxHeap: '-64MiB' }],
    ['maxHeap > 4GiB (number)', { maxHeap: 4 * GiB + MiB }],
    ["maxHeap '5GiB'", { maxHeap: '5GiB' }],
    ['maxHeap of a wrong type', { maxHeap: true }],
    ["unknown mode 'gc'", { mode: 'gc' }],
    ['mode of a wrong type', { mode: 1 }],
    ['hugePages of a wrong type', { hugePages: 'yes' }],
    ['restoreHugePages of a wrong type', { restoreHugePages: 1 }],
    ['restoreWritable of a wrong type', { restoreWritable: 'yes' }],
    ['prefaultGrowth of a wrong type', { prefaultGrowth: 1 }],
    ["minTriggerBytes '12 parsecs'", { minTriggerBytes: '12 parsecs' }],
    ['gcPercent not a number', { gcPercent: 'lots' }],
    ['negative childTimeoutMs', { childTimeoutMs: -5 }],
    ['negative markStackEntries', { markStackEntries: -1 }],
    ['negative inProcessMarkUs', { inProcessMarkUs: -1 }],
    ['fractional inProcessMarkUs', { inProcessMarkUs: 1.5 }],
    ['inProcessMarkUs over a second', { inProcessMarkUs: 2_000_000 }],
    ['inProcessMarkUs of a wrong type', { inProcessMarkUs: '100' }],
    ['options that are not an object', 42],
  ];
  it.each(bad)('%s', async (_what, opts) => {
    let created: Heap | undefined;
    try {
      expectError(() => (created = new Heap(opts as HeapOptions)), InvalidOptionError, 'ERR_INVALID_OPTION');
    } finally {
      await created?.close();
    }
  });

  it.each([
    ['64MiB', 64 * MiB],
    ['512MiB', 512 * MiB],
    ['2GiB', 2 * GiB],
    ['4GiB', 4 * GiB],
    [32 * MiB, 32 * MiB],
  ] as [string | number, number][])('maxHeap %s is accepted and parsed to %i bytes', async (maxHeap, bytes) => {
    const heap = new Heap({ maxHeap, auto: false });
    try {
      expect(heap.stats().maxHeap).toBe(bytes);
      expect(heap.stats().mode).toBe('fork');
    } finally {
      await heap.close();
    }
  });
});

describe('errors: TypeDefinitionError (ERR_TYPE_DEFINITION)', () => {
  const cases: [string, unknown, unknown][] = [
    ['unknown field kind', 'A', { x: 'i64' }],
    ['field kind of the wrong case', 'A', { x: 'REF' }],
    ['field kind not a string', 'A', { x: 5 }],
    ['empty field name', 'A', { '': 'i32' }],
    ['empty struct name', '', { x: 'i32' }],
    ['struct name not a string', 5, { x: 'i32' }],
    ['fields not an object', 'A', 'ref'],
  ];
  it.each(cases)('%s', (_what, name, fields) => {
    const heap = makeHeap();
    expectError(() => heap.defineStruct(name as string, fields as Record<string, 'i32'>), TypeDefinitionError, 'ERR_TYPE_DEFINITION');
  });

  it('duplicate struct name', () => {
    const heap = makeHeap();
    heap.defineStruct('Dup', { a: 'i32' });
    expectError(() => heap.defineStruct('Dup', { b: 'f64' }), TypeDefinitionError, 'ERR_TYPE_DEFINITION');
    expectError(() => heap.defineStruct('Dup', { a: 'i32' }), TypeDefinitionError, 'ERR_TYPE_DEFINITION');
  });

  it.each(['RefArray', 'Bytes', 'String'])('struct name %s would make typeOf() ambiguous', (name) => {
    const heap = makeHeap();
    expectError(() => heap.defineStruct(name, { a: 'i32' }), TypeDefinitionError, 'ERR_TYPE_DEFINITION');
  });

  it('a valid definition reports its name, a distinct id and a size that includes the 8-byte header', () => {
    const heap = makeHeap();
    const A = heap.defineStruct('A', { x: 'f64', r: 'ref', b: 'bool' });
    const B = heap.defineStruct('B', {});
    expect(A.name).toBe('A');
    expect(B.name).toBe('B');
    expect(A.id).not.toBe(B.id);
    expect(A.size).toBeGreaterThanOrEqual(8 + 8 + 4 + 1);
    expect(B.size).toBeGreaterThanOrEqual(8);
    expect(heap.typeOf(B.alloc())).toBe('B');
  });
});

describe('errors: InvalidReferenceError (ERR_INVALID_REF)', () => {
  it('out-of-range, negative, fractional and non-number refs', () => {
    const { heap, Node, arr, bytes, str } = setup();
    const maxGranule = (64 * MiB) / 16;
    const bad: unknown[] = [-1, -16, 1.5, NaN, Infinity, maxGranule, maxGranule + 1, 2 ** 32, 2 ** 40, '3', null, undefined, {}, 10n];
    for (const r of bad) {
      const ref = r as number;
      const w = `ref ${typeof r === 'bigint' ? `${r}n` : typeof r === 'object' ? JSON.stringify(r) : String(r)}`;
      expectError(() => heap.typeOf(ref), InvalidReferenceError, 'ERR_INVALID_REF', `typeOf(${w})`);
      expectError(() => Node.get.value(ref), InvalidReferenceError, 'ERR_INVALID_REF', `get(${w})`);
      expectError(() => Node.set.value(ref, 1), InvalidReferenceError, 'ERR_INVALID_REF', `set(${w})`);
      expectError(() => heap.arrays.get(ref, 0), InvalidReferenceError, 'ERR_INVALID_REF', `arrays.get(${w})`);
      expectError(() => heap.bytes.length(ref), InvalidReferenceError, 'ERR_INVALID_REF', `bytes.length(${w})`);
      expectError(() => heap.strings.read(ref), InvalidReferenceError, 'ERR_INVALID_REF', `strings.read(${w})`);
    }
    void arr;
    void bytes;
    void str;
  });

  it('null where an object is needed', () => {
    const { heap, Node } = setup();
    expectError(() => heap.typeOf(0), InvalidReferenceError, 'ERR_INVALID_REF', 'typeOf(0)');
    expectError(() => Node.get.value(0), InvalidReferenceError, 'ERR_INVALID_REF', 'get(0)');
    expectError(() => Node.set.left(0, 0), InvalidReferenceError, 'ERR_INVALID_REF', 'set(0)');
    expectError(() => heap.arrays.length(0), InvalidReferenceError, 'ERR_INVALID_REF', 'arrays.length(0)');
    expectError(() => heap.bytes.copy(0), InvalidReferenceError, 'ERR_INVALID_REF', 'bytes.copy(0)');
    expectError(() => heap.strings.byteLength(0), InvalidReferenceError, 'ERR_INVALID_REF', 'strings.byteLength(0)');
    expect(Node.is(0)).toBe(false);
  });

  it('a ref that is not at an object start (ref + 1 inside an object, a never-allocated granule)', () => {
    const { heap, Node, n, arr } = setup();
    // Node here is 8 + 2*4 + 4 + 8 + 1 + 4 + 8 + 8 > 32 bytes: n + 1 and n + 2 are inside it.
    // Default mode cannot tell such a number from a freed object's Ref whose
    // memory now holds objects of another size: StaleReferenceError
    // (test/generations.test.ts); checked mode's tags can (below).
    expect(Node.size).toBeGreaterThan(32);
    for (const r of [n + 1, n + 2]) {
      expectError(() => heap.typeOf(r), StaleReferenceError, 'ERR_STALE_REF', `typeOf(n+${r - n})`);
      expectError(() => Node.get.value(r), StaleReferenceError, 'ERR_STALE_REF', `get(n+${r - n})`);
      expectError(() => Node.set.value(r, 1), StaleReferenceError, 'ERR_STALE_REF', `set(n+${r - n})`);
      expect(Node.is(r)).toBe(false);
    }
    // storing such a ref anywhere is refused too, and leaves the slot as it was
    expectError(() => Node.set.left(n, n + 1), StaleReferenceError, 'ERR_STALE_REF', 'store n+1 in a ref field');
    expectError(() => heap.arrays.set(arr, 0, n + 1), StaleReferenceError, 'ERR_STALE_REF', 'store n+1 in an array');
    expectError(() => Node.alloc({ left: n + 1 }), StaleReferenceError, 'ERR_STALE_REF', 'alloc with left: n+1');
    expect(Node.get.left(n)).toBe(0);
    expect(heap.arrays.get(arr, 0)).toBe(0);
    // a granule well inside the reserved but never allocated part of the arena (must not crash)
    expectCode(() => heap.typeOf((48 * MiB) / 16), ['ERR_INVALID_REF'], 'never-allocated granule');
  });

  it('checked mode: a number naming no object start is InvalidReferenceError (its tag says it was handed out this cycle)', () => {
    const heap = makeHeap({ checked: true });
    const T = heap.defineStruct('T', { a: 'f64', b: 'f64', c: 'f64' });
    const n = T.alloc();
    expectError(() => T.get.a(n + 1), InvalidReferenceError, 'ERR_INVALID_REF', 'get(n+1)');
  });

  it('a non-ref stored in a ref field', () => {
    const { heap, Node, n, arr } = setup();
    for (const v of ['x', 1.5, -1, true, {}]) {
      expectCode(() => Node.set.left(n, v as number), ['ERR_INVALID_REF', 'ERR_FIELD_VALUE'], `set.left(${String(v)})`);
      expectCode(() => heap.arrays.set(arr, 1, v as number), ['ERR_INVALID_REF', 'ERR_FIELD_VALUE'], `arrays.set(${String(v)})`);
    }
    expect(Node.get.left(n)).toBe(0);
  });
});

describe('errors: WrongTypeError (ERR_WRONG_TYPE)', () => {
  it('a typed accessor on an object of another type', () => {
    const s = setup();
    const { heap, Node, Leaf } = s;
    // Plain numbers: with their brands (Ref<'Leaf'>...) these calls would not compile.
    const [n, leaf, arr, bytes, str] = [s.n, s.leaf, s.arr, s.bytes, s.str] as number[];
    const cases: [string, () => unknown][] = [
      ['Node.get on a Leaf', () => Node.get.value(leaf)],
      ['Node.set on a Leaf', () => Node.set.value(leaf, 1)],
      ['Node.get on a RefArray', () => Node.get.left(arr)],
      ['Node.get on Bytes', () => Node.get.w(bytes)],
      ['Node.get on a String', () => Node.get.ok(str)],
      ['Leaf.get on a Node', () => Leaf.get.v(n)],
      ['arrays.get on a Node', () => heap.arrays.get(n, 0)],
      ['arrays.length on Bytes', () => heap.arrays.length(bytes)],
      ['arrays.set on a String', () => heap.arrays.set(str, 0, 0)],
      ['bytes.get on a RefArray', () => heap.bytes.get(arr, 0)],
      ['bytes.set on a Node', () => heap.bytes.set(n, 0, 1)],
      ['bytes.view on a String', () => heap.bytes.view(str)],
      ['bytes.copy on a Leaf', () => heap.bytes.copy(leaf)],
      ['bytes.length on a String', () => heap.bytes.length(str)],
      ['strings.read on Bytes', () => heap.strings.read(bytes)],
      ['strings.byteLength on a RefArray', () => heap.strings.byteLength(arr)],
    ];
    for (const [what, fn] of cases) expectError(fn, WrongTypeError, 'ERR_WRONG_TYPE', what);
    expect(Node.is(leaf)).toBe(false);
    expect(Leaf.is(leaf)).toBe(true);
    expect(Node.is(arr)).toBe(false);
    expect(Leaf.get.v(leaf)).toBe(1);
  });
});

describe('errors: IndexOutOfBoundsError (ERR_INDEX_OUT_OF_BOUNDS)', () => {
  it('array and bytes indices out of bounds', () => {
    const { heap, n, arr, bytes } = setup();
    const empty = heap.arrays.alloc(0);
    const noBytes = heap.bytes.alloc(0);
    for (const i of [10, 11, 1000, -1, 2 ** 32]) {
      expectError(() => heap.arrays.get(arr, i), IndexOutOfBoundsError, 'ERR_INDEX_OUT_OF_BOUNDS', `arrays.get(${i})`);
      expectError(() => heap.arrays.set(arr, i, n), IndexOutOfBoundsError, 'ERR_INDEX_OUT_OF_BOUNDS', `arrays.set(${i})`);
    }
    for (const i of [16, 17, -1, 2 ** 31]) {
      expectError(() => heap.bytes.get(bytes, i), IndexOutOfBoundsError, 'ERR_INDEX_OUT_OF_BOUNDS', `bytes.get(${i})`);
      expectError(() => heap.bytes.set(bytes, i, 1), IndexOutOfBoundsError, 'ERR_INDEX_OUT_OF_BOUNDS', `bytes.set(${i})`);
    }
    expectError(() => heap.arrays.get(empty, 0), IndexOutOfBoundsError, 'ERR_INDEX_OUT_OF_BOUNDS', 'empty array');
    expectError(() => heap.bytes.get(noBytes, 0), IndexOutOfBoundsError, 'ERR_INDEX_OUT_OF_BOUNDS', 'empty bytes');
    // the neighbours were not touched: the last valid index still reads its old value
    heap.arrays.set(arr, 9, n);
    expect(heap.arrays.get(arr, 9)).toBe(n);
    expect(heap.bytes.get(bytes, 15)).toBe(0);
    expect(heap.arrays.length(arr)).toBe(10);
    expect(heap.bytes.length(bytes)).toBe(16);
  });
});

describe('errors: FieldValueError (ERR_FIELD_VALUE)', () => {
  it('non-numbers and out-of-range numbers for i32/u32/f64, non-booleans for bool — set and alloc', () => {
    const { heap, Node, n } = setup();
    const bad: [string, unknown[]][] = [
      ['value', ['5', null, true, {}, 5n, 2 ** 31, -(2 ** 31) - 1, 2 ** 40, Infinity, -Infinity, NaN]],
      ['id', ['5', null, false, -1, 2 ** 32, 2 ** 33, -Infinity, NaN]],
      ['w', ['1.5', null, true, {}, 1n]],
      ['ok', [1, 0, 'true', null, {}]],
    ];
    for (const [field, values] of bad) {
      for (const v of values) {
        const w = `${field} = ${typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v)}`;
        expectError(() => (Node.set as Record<string, (r: number, v: unknown) => void>)[field](n, v), FieldValueError, 'ERR_FIELD_VALUE', `set ${w}`);
        expectError(() => Node.alloc({ [field]: v } as never), FieldValueError, 'ERR_FIELD_VALUE', `alloc ${w}`);
      }
    }
    // a failed set leaves the field as it was
    expect(Node.get.value(n)).toBe(5);
    expect(Node.get.id(n)).toBe(9);
    expect(Node.get.w(n)).toBe(2.5);
    expect(Node.get.ok(n)).toBe(true);
    // the extremes are accepted
    Node.set.value(n, -(2 ** 31));
    expect(Node.get.value(n)).toBe(-(2 ** 31));
    Node.set.value(n, 2 ** 31 - 1);
    expect(Node.get.value(n)).toBe(2 ** 31 - 1);
    Node.set.id(n, 2 ** 32 - 1);
    expect(Node.get.id(n)).toBe(2 ** 32 - 1);
    Node.set.w(n, NaN);
    expect(Node.get.w(n)).toBeNaN();
    Node.set.w(n, -0);
    expect(Object.is(Node.get.w(n), -0)).toBe(true);
    // @ts-expect-error a bool field takes a boolean (type-level half of the same contract)
    expectError(() => Node.set.ok(n, 1), FieldValueError, 'ERR_FIELD_VALUE', 'set ok = 1');
    // @ts-expect-error a numeric field takes a number
    expectError(() => Node.set.value(n, 'x'), FieldValueError, 'ERR_FIELD_VALUE', "set value = 'x'");
    void heap;
  });

  it('byte values outside 0..255 or not numbers', () => {
    const { heap, bytes } = setup();
    for (const v of [256, -1, 1000, '1', null, NaN]) {
      expectError(() => heap.bytes.set(bytes, 3, v as number), FieldValueError, 'ERR_FIELD_VALUE', `bytes.set ${String(v)}`);
    }
    expect(heap.bytes.get(bytes, 3)).toBe(0);
    heap.bytes.set(bytes, 3, 255);
    expect(heap.bytes.get(bytes, 3)).toBe(255);
  });

  it('invalid sizes and contents for arrays, bytes and strings are typed errors', () => {
    const { heap } = setup();
    const cases: [string, () => unknown][] = [
      ['arrays.alloc(-1)', () => heap.arrays.alloc(-1)],
      ['arrays.alloc(1.5)', () => heap.arrays.alloc(1.5)],
      ["arrays.alloc('3')", () => heap.arrays.alloc('3' as unknown as number)],
      ['arrays.alloc(2**40)', () => heap.arrays.alloc(2 ** 40)],
      ['bytes.alloc(-1)', () => heap.bytes.alloc(-1)],
      ['bytes.alloc(NaN)', () => heap.bytes.alloc(NaN)],
      ['bytes.alloc({})', () => heap.bytes.alloc({} as unknown as number)],
      ['bytes.alloc(2**32)', () => heap.bytes.alloc(2 ** 32)],
      ['bytes.alloc(Infinity)', () => heap.bytes.alloc(Infinity)],
      ['bytes.alloc(10n)', () => heap.bytes.alloc(10n as unknown as number)],
      ['strings.alloc(5)', () => heap.strings.alloc(5 as unknown as string)],
      ['strings.alloc(null)', () => heap.strings.alloc(null as unknown as string)],
    ];
    for (const [what, fn] of cases) {
      const e = thrown(fn);
      expect(e, `${what}: ${describeError(e)}`).toBeInstanceOf(ForkGcError);
    }
  });
});

describe('errors: StaleReferenceError (ERR_STALE_REF)', () => {
  it.each(['fork', 'stw'] as const)('%s: every accessor of a freed object, and storing it', async (mode) => {
    const { heap, Node, n, arr } = setup({ mode });
    heap.root(n);
    heap.root(arr);
    // each dead object shares its span with a live one of the same size, so the span stays
    const deadNode = Node.alloc({ value: 1 });
    heap.root(heap.arrays.alloc(4));
    const deadArr = heap.arrays.alloc(4);
    heap.root(heap.bytes.alloc(Uint8Array.of(4, 5, 6)));
    const deadBytes = heap.bytes.alloc(Uint8Array.of(1, 2, 3));
    heap.root(heap.strings.alloc('kept'));
    const deadStr = heap.strings.alloc('gone');
    const c = await heap.collect();
    expect(c.objectsFreed).toBeGreaterThanOrEqual(4);
    const cases: [string, () => unknown][] = [
      ['typeOf', () => heap.typeOf(deadNode)],
      ['get', () => Node.get.value(deadNode)],
      ['set', () => Node.set.value(deadNode, 2)],
      ['arrays.length', () => heap.arrays.length(deadArr)],
      ['arrays.get', () => heap.arrays.get(deadArr, 0)],
      ['arrays.set', () => heap.arrays.set(deadArr, 0, 0)],
      ['bytes.get', () => heap.bytes.get(deadBytes, 0)],
      ['bytes.copy', () => heap.bytes.copy(deadBytes)],
      ['bytes.view', () => heap.bytes.view(deadBytes)],
      ['strings.read', () => heap.strings.read(deadStr)],
      ['strings.length', () => heap.strings.length(deadStr)],
      ['strings.equals', () => heap.strings.equals(deadStr, 'gone')],
      ['store into a ref field', () => Node.set.left(n, deadNode)],
      ['store into an array', () => heap.arrays.set(arr, 0, deadStr)],
      ['root', () => heap.root(deadNode)],
      // last: an implementation that allocates before validating could reuse a dead slot
      ['alloc init', () => Node.alloc({ right: deadArr })],
    ];
    for (const [what, fn] of cases) expectError(fn, StaleReferenceError, 'ERR_STALE_REF', what);
    expect(Node.get.left(n)).toBe(0);
    expect(heap.arrays.get(arr, 0)).toBe(0);
  }, 30_000);
});

describe('errors: a freed object whose whole span was given back', () => {
  it.each(['fork', 'stw'] as const)('%s: access throws StaleReferenceError or InvalidReferenceError, never reads the unmapped span', async (mode) => {
    const { heap, Node } = setup({ mode });
    const lonely = heap.arrays.alloc(3000); // a large object: a span of its own
    const bytes = heap.bytes.alloc(new Uint8Array(100_000).fill(3));
    const nodes: number[] = [];
    for (let i = 0; i < 2000; i++) nodes.push(Node.alloc({ value: i }));
    await heap.collect();
    for (const r of [lonely, bytes, ...nodes.filter((_, i) => i % 97 === 0)]) {
      expectCode(() => heap.typeOf(r), ['ERR_STALE_REF', 'ERR_INVALID_REF'], `typeOf ${r}`);
    }
    expectCode(() => heap.arrays.get(lonely, 2999), ['ERR_STALE_REF', 'ERR_INVALID_REF'], 'arrays.get');
    expectCode(() => heap.bytes.copy(bytes), ['ERR_STALE_REF', 'ERR_INVALID_REF'], 'bytes.copy');
    expectCode(() => Node.set.value(nodes[1999], 5), ['ERR_STALE_REF', 'ERR_INVALID_REF'], 'set');
  }, 30_000);
});

describe('errors: HeapExhaustedError (ERR_HEAP_EXHAUSTED)', () => {
  it('allocating past maxHeap with everything rooted; the heap works again once memory is freed', async () => {
    const heap = makeHeap({ maxHeap: '32MiB' });
    const Leaf = heap.defineStruct('Leaf', { v: 'i32' });
    expectError(() => heap.bytes.alloc(64 * MiB), HeapExhaustedError, 'ERR_HEAP_EXHAUSTED', 'one object larger than maxHeap');
    const chunk = new Uint8Array(MiB).fill(7);
    const handles = [];
    let err: unknown;
    for (let i = 0; i < 64; i++) {
      try {
        handles.push(heap.root(heap.bytes.alloc(chunk)));
      } catch (e) {
        err = e;
        break;
      }
    }
    expect(err, describeError(err)).toBeInstanceOf(HeapExhaustedError);
    expect((err as ForkGcError & { code: string }).code).toBe('ERR_HEAP_EXHAUSTED');
    expect(handles.length).toBeGreaterThan(16); // most of the 32 MiB was usable
    expect(handles.length).toBeLessThan(32);
    // small objects fail too once full, or fit in what is left; either way no crash
    const e2 = thrown(() => {
      for (let i = 0; i < 200_000; i++) Leaf.alloc({ v: i });
    });
    if (e2 !== undefined) expect(e2, describeError(e2)).toBeInstanceOf(HeapExhaustedError);
    // everything that was allocated is intact
    expect(heap.bytes.copy(handles[handles.length - 1].get())).toEqual(chunk);
    for (const h of handles) h.release();
    await heap.collect();
    const r = heap.bytes.alloc(chunk);
    expect(heap.bytes.get(r, MiB - 1)).toBe(7);
  }, 60_000);
});

describe('errors: HeapClosedError (ERR_HEAP_CLOSED)', () => {
  // Both once close() has resolved and while it is still waiting for the
  // sweeper threads: the accessors' fast checks do not look at `closed`,
  // so the heap's views must be gone (detached) from the moment close() is
  // called (src/api/core.ts).
  for (const when of ['after close() resolved', 'while close() is pending'] as const) it(`every entry point of a closed heap throws HeapClosedError, and collect() rejects with it (${when})`, async () => {
    // A sweeper thread of its own: close() then awaits it.
    const { heap, Node, n, arr, bytes, str } = setup({ sweepThreads: 1 });
    const h = heap.root(n);
    const closing = when === 'after close() resolved' ? undefined : heap.close();
    if (!closing) await closeHeap(heap);
    const cases: [string, () => unknown][] = [
      ['defineStruct', () => heap.defineStruct('Late', { a: 'i32' })],
      ['alloc', () => Node.alloc({ value: 1 })],
      ['get', () => Node.get.value(n)],
      ['set', () => Node.set.value(n, 1)],
      ['arrays.alloc', () => heap.arrays.alloc(1)],
      ['arrays.length', () => heap.arrays.length(arr)],
      ['arrays.get', () => heap.arrays.get(arr, 0)],
      ['arrays.set', () => heap.arrays.set(arr, 0, 0)],
      ['bytes.alloc', () => heap.bytes.alloc(4)],
      ['bytes.alloc(data)', () => heap.bytes.alloc(Uint8Array.of(1))],
      ['bytes.length', () => heap.bytes.length(bytes)],
      ['bytes.get', () => heap.bytes.get(bytes, 0)],
      ['bytes.set', () => heap.bytes.set(bytes, 0, 1)],
      ['bytes.view', () => heap.bytes.view(bytes)],
      ['bytes.copy', () => heap.bytes.copy(bytes)],
      ['strings.alloc', () => heap.strings.alloc('x')],
      ['strings.read', () => heap.strings.read(str)],
      ['strings.byteLength', () => heap.strings.byteLength(str)],
      ['typeOf', () => heap.typeOf(n)],
      ['root', () => heap.root(n)],
      ['handle.get', () => h.get()],
      ['handle.set', () => h.set(n)],
      ['handle.release', () => h.release()],
      ['safepoint', () => heap.safepoint()],
      ['stats', () => heap.stats()],
    ];
    const wrong: string[] = [];
    for (const [what, fn] of cases) {
      const e = thrown(fn);
      if (!(e instanceof HeapClosedError) || (e as { code?: string }).code !== 'ERR_HEAP_CLOSED') wrong.push(`${what}: ${describeError(e)}`);
    }
    expect(wrong, 'entry points that did not throw HeapClosedError').toEqual([]);
    // the predicate either refuses or says no; it must not read unmapped memory
    const isErr = thrown(() => expect(Node.is(n)).toBe(false));
    if (isErr !== undefined) expect(isErr, describeError(isErr)).toBeInstanceOf(HeapClosedError);
    await expectRejection(heap.collect(), HeapClosedError, 'ERR_HEAP_CLOSED', 'collect');
    if (closing) await withTimeout(closing, 20_000, 'close');
  }, 30_000);
});

describe('errors: typed API surface', () => {
  it('accessors have the documented TypeScript types and values', () => {
    const { heap, Node, n, str } = setup();
    const v: number = Node.get.value(n);
    const ok: boolean = Node.get.ok(n);
    const left: number = Node.get.left(n);
    expect([v, ok, left]).toEqual([5, true, 0]);
    expect(typeof Node.get.ok(n)).toBe('boolean');
    expect(heap.typeOf(n)).toBe('Node');
    expect(heap.typeOf(str)).toBe('String');
    expect(heap.typeOf(heap.arrays.alloc(1))).toBe('RefArray');
    expect(heap.typeOf(heap.bytes.alloc(1))).toBe('Bytes');
    expect(heap.strings.read(str)).toBe('héllo');
    expect(heap.strings.byteLength(str)).toBe(6);
    const b = heap.bytes.alloc(Uint8Array.of(1, 2, 3));
    const view = heap.bytes.view(b);
    expect(view).toBeInstanceOf(Uint8Array);
    expect([...view]).toEqual([1, 2, 3]);
    view[1] = 42; // the view is live
    expect(heap.bytes.get(b, 1)).toBe(42);
    const copy = heap.bytes.copy(b);
    copy[0] = 99; // the copy is not
    expect(heap.bytes.get(b, 0)).toBe(1);
  });
});

describe('errors: a freed object whose memory went back to the OS', () => {
  it('is ERR_STALE_REF, not out of range, even above the spans now in use', async () => {
    // minTriggerBytes 1 MiB: a sweep keeps ~1.1 x the pacer's goal of free
    // spans resident (Policy.retainFreeBytes), so of the 4 MiB run most goes back.
    const heap = new Heap({ maxHeap: '64MiB', auto: false, sweepThreads: 0, minTriggerBytes: '1MiB' });
    try {
      const keep = heap.root(heap.strings.alloc('kept'));
      const big = heap.bytes.alloc(4 * 2 ** 20);  // a run of spans at the top
      const c = await heap.collect();
      expect(c.bytesReturned).toBeGreaterThan(0);
      expectError(() => heap.bytes.length(big), StaleReferenceError, 'ERR_STALE_REF', 'freed large object');
      expect(heap.strings.read(keep.get())).toBe('kept');
    } finally {
      await heap.close();
    }
  });
});
