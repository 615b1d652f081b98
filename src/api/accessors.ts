// Struct field accessors compiled per type and field (default mode).
//
// A field access is the hot path of every program on this heap, so each
// accessor is generated as its own small function with the type id, the
// field's offset and the Ref format as literals, and the reference check of
// src/api/refs.ts written out inline (V8 then compiles each to a handful of
// instructions: no call, no closure-variable loads):
//
//   typeof ref === 'number' && ref === (ref >>> 0)     a uint32 number
//   g = ref's low granuleBits
//   allocation bit of g set                              a live object start
//   (header & keyMask) === (typeId | generation << 16)   its type, and the
//                                                        Ref's generation
//
// There is no compare with the heap's top or with 0: an allocation bit is
// set only for an object the allocator handed out (below the top, never in
// span 0, which is reserved: a null Ref fails too); a granule past the
// bitmap reads undefined, which fails the test; and a closed heap's views
// are detached by close() before it first awaits, so they read as empty
// (src/api/core.ts). Without the two compares, reading every node of a
// 2^21-node tree took 49 ms of CPU against 60 (docs/performance-log.md, "Accessors without a
// bounds compare").
//
// Only when a check fails does the accessor call refs.diagnose(), which
// throws the precise error. Setters check the value first, so a bad value
// never half-writes. Nothing of the program's text reaches the generated
// source: field names are validated identifiers (and only used in function
// names), everything else is a number computed here.
//
// Checked mode and weak fields keep the closures of src/api/type-registry.ts
// (checked mode is the debugging mode; a weak read has a barrier to call).
//
// Unchecked accessors (StructType.unchecked, compiled only when a program
// asks for them) are the same functions without the reference checks: the
// object's granule is the Ref's low bits and a reference value is stored as
// its low bits, trusted. Values of number and boolean fields are still
// checked. They exist because the checks cost, and most of all in bytecode:
// a checked getter is 108-135 bytes and a reference setter 210, against
// 24-51 and 38 unchecked (125-152 and 244 checked before the failure calls
// took only what varies and the bit tests were written shorter), so a
// function that makes more than five or six checked accesses exceeds
// TurboFan's inlining budget (920 bytes) and calls the rest (README,
// "Unchecked accessors"). A wrong Ref reads or writes somewhere in the
// heap's object memory: never outside the arena's views
// (typed-array indexing), never the heap's metadata (the bitmaps, span table
// and roots are other buffers), but it may corrupt objects: a cycle that
// meets a reference that is no object aborts (HEAP_CORRUPT, nothing freed);
// damage that looks like a valid graph is followed as the program wrote it.
import type { FieldKind } from './types.js';
import type { RefFormat, RefOps } from './refs.js';
import type { HeapViews } from '../memory/views.js';

export type Getter = (ref: unknown) => number | boolean;
export type Setter = (ref: unknown, value: unknown) => void;

/** What the generated code reads, passed in once per type. */
interface Env {
  readonly refs: RefOps;
  readonly ab: Uint32Array;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly badValue: (what: string, value: unknown, expected: string) => never;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

type ValueKind = Exclude<FieldKind, 'ref' | 'weak'>;
/** What a field of each value kind takes, as FieldValueError says it. */
const EXPECTED: Record<ValueKind, string> = {
  i32: 'an integer in [-2^31, 2^31)', u32: 'an integer in [0, 2^32)', f64: 'a number', bool: 'true or false',
};
/** The condition, in generated source, under which `v` is no value for a field of each kind (EXPECTED says what is). */
const NOT_A: Record<ValueKind, (v: string) => string> = {
  i32: (v) => `typeof ${v} !== 'number' || ${v} !== (${v} | 0)`,
  u32: (v) => `typeof ${v} !== 'number' || ${v} !== (${v} >>> 0)`,
  f64: (v) => `typeof ${v} !== 'number'`,
  bool: (v) => `typeof ${v} !== 'boolean'`,
};

/**
 * refs.any() written out, in generated source, for a reference value `v`
 * other than 0 (a Ref of any type, live, of its generation): its granule
 * goes into `t` (a variable the caller declared, 0), and `fail` runs when
 * it names no such object. `gs` and `gb` are the format's shifts (numbers).
 */
function liveRefTest(v: string, t: string, gs: string, gb: string, fail: string): string {
  return `if (typeof ${v} === 'number' && ${v} === (${v} >>> 0)) ${t} = (${v} << ${gs}) >>> ${gs};
      if (!((ab[${t} >>> 5] >>> ${t}) & 1 &&
          (i32[${t} << 2] & GEN_KEY_MASK) === ((${v} >>> ${gb}) << 16))) ${fail};`;
}

/** A number as it is written into generated source: an integer, or an internal error. */
function int(n: number): string {
  if (!Number.isInteger(n)) throw new Error(`internal: ${n} is not an integer`);
  return String(n);
}

/**
 * The store, in generated source, of `v` (checked already) into a value
 * field of kind `kind` at byte `offset` of the object at granule `g`.
 */
function storeValue(kind: ValueKind, v: string, offset: number): string {
  switch (kind) {
    case 'i32': return `i32[(g << 2) + ${int(offset >>> 2)}] = ${v}`;
    case 'u32': return `u32[(g << 2) + ${int(offset >>> 2)}] = ${v}`;
    case 'f64': return `f64[(g << 1) + ${int(offset >>> 3)}] = ${v}`;
    case 'bool': return `u8[g * 16 + ${int(offset)}] = ${v} ? 1 : 0`;
  }
}

export function compileAccessor(
  which: 'get' | 'set', kind: Exclude<FieldKind, 'weak'>, field: string, what: string, typeId: number, offset: number,
  format: RefFormat, env: { refs: RefOps; views: HeapViews;
    badValue: (what: string, value: unknown, expected: string) => never },
  unchecked = false,
): Getter | Setter {
  if (!IDENT.test(field)) throw new Error(`internal: field name ${JSON.stringify(field)} is not an identifier`);
  const gb = int(format.granuleBits);
  const gs = int(32 - format.granuleBits);
  const generationMask = int(2 ** format.generationBits - 1);
  const id = int(typeId);
  const w = int(offset >>> 2);
  const name = (prefix: string) => `${prefix}_${field}${unchecked ? '_unchecked' : ''}`;
  const fast = (body: string) => unchecked ? `const g = (ref << ${gs}) >>> ${gs}; ${body}` :
    `if (typeof ref === 'number' && ref === (ref >>> 0)) {
      const g = (ref << ${gs}) >>> ${gs};
      if ((ab[g >>> 5] >>> g) & 1 &&
          (i32[g << 2] & KEY_MASK) === (${id} | ((ref >>> ${gb}) << 16))) { ${body} }
    }
    return diagnose(ref, ${id});`;
  // g < 2^28, so the word, half-word and f64 indices (g << 2, << 3, << 1)
  // fit in int32; the byte index does not (2 GiB and up in a 4 GiB heap):
  // it is g * 16, never g << 4 (found in review).
  let src: string;
  if (which === 'get') {
    switch (kind) {
      case 'ref':
        src = `function ${name('get')}(ref) { ${fast(`const t = u32[(g << 2) + ${w}];
          return t | ((u16[(t << 3) + 1] & ${generationMask}) << ${gb});`)} }`;
        break;
      case 'i32': src = `function ${name('get')}(ref) { ${fast(`return i32[(g << 2) + ${w}];`)} }`; break;
      case 'u32': src = `function ${name('get')}(ref) { ${fast(`return u32[(g << 2) + ${w}];`)} }`; break;
      case 'f64': src = `function ${name('get')}(ref) { ${fast(`return f64[(g << 1) + ${int(offset >>> 3)}];`)} }`; break;
      case 'bool': src = `function ${name('get')}(ref) { ${fast(`return u8[g * 16 + ${int(offset)}] !== 0;`)} }`; break;
    }
  } else {
    let check = '';
    let store: string;
    switch (kind) {
      case 'ref':
        // The value's check is refs.any() written out (a Ref of any type,
        // live, of its generation); only a failure calls out, to throw.
        check = unchecked ? `const t = (value << ${gs}) >>> ${gs};` : `let t = 0;
          if (value !== 0) { ${liveRefTest('value', 't', gs, gb, 'diagnose(value, -1)')} }`;
        store = `u32[(g << 2) + ${w}] = t; return;`;
        break;
      default: store = `${storeValue(kind, 'value', offset)}; return;`;
    }
    if (kind !== 'ref') check = `if (${NOT_A[kind]('value')}) bad(value);`;
    src = `function ${name('set')}(ref, value) { ${check} ${fast(store)} }`;
  }
  const v = env.views;
  const e: Env = {
    refs: env.refs, ab: v.allocBits, u8: v.u8, u16: v.u16, u32: v.u32, i32: v.i32, f64: v.f64,
    badValue: env.badValue,
  };
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const make = new Function('diagnose', 'ab', 'u8', 'u16', 'u32', 'i32', 'f64', 'bad', 'KEY_MASK', 'GEN_KEY_MASK',
    `'use strict'; return ${src};`);
  // The calls that throw take one or two arguments: the rest (the field's
  // name, what it expects) is in the closure, not the bytecode (every byte
  // counts against V8's inlining budget, above).
  const refs = e.refs;
  const badValue = e.badValue;
  return make((ref: unknown, typeId: number) => refs.diagnose(ref, typeId), e.ab, e.u8, e.u16, e.u32, e.i32, e.f64,
    (value: unknown) => badValue(what, value, EXPECTED[kind as ValueKind]), keyMask(format), genKeyMask(format)) as
    Getter | Setter;
}

// The header bits a Ref names: typeId and generation (keyMask), or the
// generation alone (genKeyMask, a reference field's value may be of any
// type). Passed to the generated code as values rather than written in as
// literals: a constant over 2^15 takes a 10-byte instruction, and every byte
// counts against V8's inlining budget (compileAlloc says more).
const keyMask = (f: RefFormat) => 0xffff | ((2 ** f.generationBits - 1) << 16);
const genKeyMask = (f: RefFormat) => (2 ** f.generationBits - 1) << 16;

/** What compileAlloc makes for a type: alloc(init?) and make(...values). */
export interface CompiledAlloc {
  readonly alloc: (init?: unknown) => number;
  readonly make: (...values: unknown[]) => number;
}

/** One field as compileAlloc needs it. */
export interface AllocField {
  readonly field: string;
  readonly kind: FieldKind;
  readonly offset: number;
  /** `Type.field`, for errors. */
  readonly what: string;
}

/**
 * A field named like a member of Object.prototype ('constructor',
 * 'toString'...): alloc(init) reads it only as init's own property, or a
 * plain [[Get]] would take the inherited function as the field's value.
 * (Compiled alloc here and the generic one in type-registry.ts.)
 */
export function namedLikeInherited(field: string): boolean {
  return field in Object.prototype;
}

/**
 * A struct type's alloc(init), compiled per type (default mode): each init
 * value is read once with its field name as a literal (a named property
 * load, not a keyed one in a loop), checked inline for its kind, and
 * stored straight into the new object. The semantics are those of the
 * generic alloc in src/api/type-registry.ts:
 *   - init must be an object whose own keys are all fields (else
 *     FieldValueError, nothing allocated);
 *   - every value is read exactly once and checked before anything is
 *     allocated: a bad value allocates nothing and writes nothing;
 *   - a reference value is checked again when it is stored, after the
 *     allocation (which may move a cycle in flight on), like a setter.
 * Only the field names (validated identifiers, quoted with JSON.stringify)
 * and numbers computed here reach the generated source.
 */
export function compileAlloc(
  fields: readonly AllocField[], typeId: number, cls: number, slotBytes: number, size: number, small: boolean,
  hasWeak: boolean, format: RefFormat,
  env: {
    ctx: {
      allocateSmall(typeId: number, cls: number, slotBytes: number): number;
      allocate(typeId: number, bytes: number, length: number): number;
      weakHolderAllocated(g: number): void;
      readonly allocator: { readonly cacheBits: Int32Array; readonly cacheWord: Int32Array };
    };
    refs: RefOps; views: HeapViews;
    badValue: (what: string, value: unknown, expected: string) => never;
    notAnObject: () => never;
    noField: (key: string) => never;
    tooMany: (count: number) => never;
  },
): CompiledAlloc {
  for (const f of fields) {
    if (!IDENT.test(f.field)) throw new Error(`internal: field name ${JSON.stringify(f.field)} is not an identifier`);
  }
  const gb = int(format.granuleBits);
  const gs = int(32 - format.granuleBits);
  const generationMask = int(2 ** format.generationBits - 1);
  const checks: string[] = [];
  const stores: string[] = [];
  fields.forEach((f, k) => {
    const v = `v${k}`;
    const w = int(f.offset >>> 2);
    const isRef = f.kind === 'ref' || f.kind === 'weak';
    const check = isRef ? `if (${v} !== 0) { let t = 0; ${liveRefTest(v, 't', gs, gb, `stale(${v})`)} }`
      : `if (${NOT_A[f.kind as ValueKind](v)}) badField(${k}, ${v});`;
    let store: string;
    switch (f.kind) {
      case 'ref': case 'weak':
        // Checked again: the allocation may have moved a cycle on (refs.field semantics).
        store = `u32[(g << 2) + ${w}] = ${v} === 0 ? 0 : refs.any(${v});`;
        break;
      default: store = `${storeValue(f.kind, v, f.offset)};`;
    }
    const key = JSON.stringify(f.field);
    const read = namedLikeInherited(f.field) ? `(Object.hasOwn(init, ${key}) ? init[${key}] : undefined)` : `init[${key}]`;
    checks.push(`${v} = ${read}; if (${v} !== undefined) { ${check} }`);
    stores.push(`if (${v} !== undefined) ${store}`);
  });
  const vars = fields.length > 0 ? `let ${fields.map((_, k) => `v${k}`).join(', ')};` : '';
  const cases = fields.length > 0 ? `${fields.map((f) => `case ${JSON.stringify(f.field)}:`).join(' ')} break;` : '';
  const allocate = small
    ? `ctx.allocateSmall(${int(typeId)}, ${int(cls)}, ${int(slotBytes)})`
    : `ctx.allocate(${int(typeId)}, ${int(size)}, 0)`;
  const weak = hasWeak ? 'ctx.weakHolderAllocated(g);' : '';
  const tagged = `g | ((u16[(g << 3) + 1] & ${generationMask}) << ${gb})`;
  // alloc() without init is the hot one (binary-trees-like code), so it is
  // kept small enough for V8 to inline it into its callers. TurboFan inlines
  // only functions of at most 460 bytes of bytecode, and at most 920 bytes
  // in all per optimized function, counting what each callee has inlined
  // itself and reserving 1.2x a candidate's size before it takes it: a tree
  // builder with two alloc() and two reference setters inlines all four
  // only if 2 x alloc + 2.2 x setter <= 920 (about 142 and 244 bytes
  // today; test/alloc-inlining.test.ts holds it). So alloc() hands an init
  // to allocInit, and for a small type pops a slot from the allocator's
  // cached word itself, as Allocator.allocSmall and HeapCore.allocateSmall
  // do, with the class and type as literals: the slot is zeroed, its header
  // holds its generation, its mark bit is set if the cycle allocates black
  // (all done when the word was cached), so what is left is the allocation
  // bit and the typeId's half-word. (clz32(low) ^ 31 is 31 - clz32(low) for
  // a single bit, in fewer bytes.) An empty word takes the heap's path.
  // Nothing is left to check after the object is made: the heap's
  // `attention` is raised only where the cached words are dropped or
  // refilled (src/api/core.ts, counted()), so with a word cached it is clear.
  // The pop itself, shared with make() below: `slowCall` when the word is
  // empty, `stores` once the object is made.
  const pop = (slowCall: string, stores: string) => `const bits = cacheBits[${int(cls)}];
    if (!bits) return ${slowCall};
    cacheBits[${int(cls)}] = bits & (bits - 1);
    const low = bits & -bits;
    const w = cacheWord[${int(cls)}];
    ab[w] |= low;
    const g = (w << 5) | (clz32(low) ^ 31);
    u16[g << 3] = ${int(typeId)};
    ${weak}
    ${stores}
    return ${tagged};`;
  const fast = small ? pop('allocSlow()', '') : `return allocSlow();`;
  // make(v0, v1, ...): the fields' values in declaration order, each
  // checked inline before anything is allocated (undefined: left zero).
  // A reference value's check leaves its granule in t<k>, which the fast
  // path stores as it is: nothing runs between the check and the store (no
  // call, so no cycle can move on). makeSlow() allocates through the heap,
  // which may move a cycle in flight on, so there each reference value is
  // checked again as it is stored, as allocInit does.
  const makeChecks: string[] = [];
  const makeStores: string[] = [];
  const makeSlowStores: string[] = [];
  const params = fields.map((_, k) => `v${k}`).join(', ');
  fields.forEach((f, k) => {
    const v = `v${k}`;
    const w = int(f.offset >>> 2);
    let store: string;
    switch (f.kind) {
      case 'ref': case 'weak':
        makeChecks.push(`let t${k} = 0;
    if (${v} !== undefined && ${v} !== 0) { ${liveRefTest(v, `t${k}`, gs, gb, `stale(${v})`)} }`);
        makeStores.push(`u32[(g << 2) + ${w}] = t${k};`);
        makeSlowStores.push(`if (t${k} !== 0) u32[(g << 2) + ${w}] = refs.any(${v});`);
        return;
      case 'bool': store = `if (${v} === true) u8[g * 16 + ${int(f.offset)}] = 1;`; break;
      default: store = `if (${v} !== undefined) ${storeValue(f.kind, v, f.offset)};`;
    }
    makeChecks.push(`if (${v} !== undefined && (${NOT_A[f.kind](v)})) badField(${k}, ${v});`);
    makeStores.push(store);
    makeSlowStores.push(store);
  });
  const makeFast = small ? pop(`makeSlow(${params})`, makeStores.join('\n    ')) : `return makeSlow(${params});`;
  const src = `function makeSlow(${params}) {
    ${fields.map((f, k) => f.kind === 'ref' || f.kind === 'weak' ? `const t${k} = v${k} === undefined ? 0 : v${k};` : '').join(' ')}
    const g = ${allocate};
    ${weak}
    ${makeSlowStores.join('\n    ')}
    return ${tagged};
  }
  function make(${params}) {
    if (arguments.length > ${int(fields.length)}) tooMany(arguments);
    ${makeChecks.join('\n    ')}
    ${makeFast}
  }
  function allocSlow() {
    const g = ${allocate};
    ${weak}
    return ${tagged};
  }
  function allocInit(init) {
    ${vars}
    if (typeof init !== 'object' || init === null) notAnObject();
    const keys = Object.keys(init);
    for (let i = 0; i < keys.length; i++) {
      switch (keys[i]) { ${cases} default: noField(keys[i]); }
    }
    ${checks.join('\n    ')}
    const g = ${allocate};
    ${weak}
    ${stores.join('\n    ')}
    return ${tagged};
  }
  return { make, alloc: function alloc(init) {
    if (init !== undefined) return allocInit(init);
    ${fast}
  } };`;
  const v = env.views;
  const whats = fields.map((f) => f.what);
  const { cacheBits, cacheWord } = env.ctx.allocator;
  // (As in compileAccessor, the calls that throw take only what varies.)
  const stale = (value: unknown) => env.refs.diagnose(value, -1);
  const badField = (k: number, value: unknown) => env.badValue(whats[k], value, EXPECTED[fields[k].kind as ValueKind]);
  const tooMany = (args: ArrayLike<unknown>) => env.tooMany(args.length);
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const build = new Function('ctx', 'refs', 'ab', 'u8', 'u16', 'u32', 'i32', 'f64', 'badField', 'notAnObject', 'noField',
    'tooMany', 'stale', 'cacheBits', 'cacheWord', 'clz32', 'GEN_KEY_MASK', `'use strict'; ${src}`);
  return build(env.ctx, env.refs, v.allocBits, v.u8, v.u16, v.u32, v.i32, v.f64, badField, env.notAnObject, env.noField,
    tooMany, stale, cacheBits, cacheWord, Math.clz32, genKeyMask(format)) as CompiledAlloc;
}
