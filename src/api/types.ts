// The public object types: Ref, field kinds, the StructType a struct
// definition returns, and the built-in reference arrays, byte arrays and
// strings. Struct definition and layout: src/api/type-registry.ts.
import { FieldValueError, IndexOutOfBoundsError, InvalidArgumentError, describe } from './errors.js';
import { HEADER_BYTES, TYPE_BYTES, TYPE_REF_ARRAY, TYPE_STRING } from '../memory/layout.js';
import { lengthAt } from '../memory/header.js';
import { SHORT_ASCII_BYTES, readUtf8, utf16Length, utf8Equals } from '../memory/utf8.js';
import { native, type NativeAddon } from '../platform/native.js';
import { isHeapMade } from './private-access.js';
import { badValue, type TypeContext } from './type-registry.js';

declare const refBrand: unique symbol;

/**
 * A reference to a heap object of type `T` (a struct's name, 'RefArray',
 * 'Bytes' or 'String'): a number at run time (src/api/refs.ts), branded at
 * compile time so that `Point.get.x(aUser)` does not compile. `Ref` alone
 * (T = any) is a reference of a type not known statically, accepted
 * everywhere and checked at run time only: what reference fields and
 * reference arrays return.
 *
 * Opting out: every accessor also takes a plain `number` (say `ref as
 * number`, or Refs kept in a `number[]`), and a struct defined with a name
 * whose static type is `string` rather than a literal takes any Ref. The
 * run-time checks apply either way.
 */
export type Ref<T extends string = any> = number & { readonly [refBrand]: T };  // eslint-disable-line @typescript-eslint/no-explicit-any

/** The type name a Ref type carries (`any` for a plain number or an untyped Ref). */
export type RefType<R> = R extends { readonly [refBrand]: infer B } ? B : any;  // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * The parameter type of an accessor of type `T` for an argument of type R:
 * R itself when R is a plain number or a Ref whose type may be T, never
 * (a compile error) when it is a Ref of another type.
 */
export type RefTo<R, T extends string> = R & (R extends { readonly [refBrand]: infer B } ? ([B] extends [T] ? unknown : never) : unknown);

export type FieldKind = 'ref' | 'weak' | 'i32' | 'u32' | 'f64' | 'bool';
export type FieldSpec = Record<string, FieldKind>;
/** What a field reads as: a Ref (of any type) or 0 for references, a number or a boolean. */
export type FieldValue<K extends FieldKind> = K extends 'bool' ? boolean : K extends 'ref' | 'weak' ? Ref | 0 : number;
/** What a field may be set to: any reference (or 0) for reference fields. */
export type FieldInput<K extends FieldKind> = K extends 'bool' ? boolean : number;
export type StructValues<F extends FieldSpec> = { [K in keyof F]: FieldInput<F[K]> };

export interface StructType<F extends FieldSpec, N extends string = string> {
  readonly name: N;
  readonly id: number;
  /** Object size in bytes, header included (its slot is the size class above). */
  readonly size: number;
  readonly fields: Readonly<F>;
  /** A new object; fields not in `init` are 0, false or null. */
  alloc(init?: Partial<StructValues<F>>): Ref<N>;
  /**
   * A new object with its fields set from `values`, in the order the fields
   * were declared (the key order of `fields`): `Node.make(left, right)` for
   * `{ left: 'ref', right: 'ref' }`. A value left out or `undefined` leaves
   * its field 0, false or null. Checked as `alloc(init)` checks: every value
   * before anything is allocated, a reference value again if the
   * allocation moved a cycle on; more values than fields is a
   * FieldValueError.
   */
  make(...values: Array<number | boolean | undefined>): Ref<N>;
  readonly get: { readonly [K in keyof F]: <R extends number>(ref: RefTo<R, N>) => FieldValue<F[K]> };
  readonly set: { readonly [K in keyof F]: <R extends number>(ref: RefTo<R, N>, value: FieldInput<F[K]>) => void };
  /**
   * The same accessors without the reference checks, for hot code that has
   * been run with the checked ones: the Ref given (and a reference field's
   * value) is trusted to name a live object of this type, of its generation.
   * Values of number and boolean fields are still checked. A wrong Ref
   * reads or writes somewhere in the heap's object memory (never outside it,
   * never the collector's bitmaps or span table) and may corrupt objects:
   * the collector then aborts its cycles (CycleAbortedError, HEAP_CORRUPT)
   * or follows the damaged graph as written. In checked mode, for weak fields, and in a process that forbids code generation from strings,
   * these are the checked accessors. Compiled on first use.
   */
  readonly unchecked: {
    readonly get: { readonly [K in keyof F]: <R extends number>(ref: RefTo<R, N>) => FieldValue<F[K]> };
    readonly set: { readonly [K in keyof F]: <R extends number>(ref: RefTo<R, N>, value: FieldInput<F[K]>) => void };
  };
  /** Whether `ref` names a live object of this type (never throws for a bad ref). */
  is(ref: unknown): ref is Ref<N>;
}

/** Arrays of references: `length` u32 slots after the header. */
export class RefArrays {
  readonly #ctx: TypeContext;

  /** Made by the heap (its `arrays` property); not constructible by applications. */
  constructor(internal: unknown) {
    if (!isHeapMade(internal)) throw new InvalidArgumentError('RefArrays: made by the heap (heap.arrays), not constructible');
    this.#ctx = internal as TypeContext;
  }

  alloc(length: number): Ref<'RefArray'> {
    checkLength('arrays.alloc', length);
    return this.#ctx.refs.encode(this.#ctx.allocate(TYPE_REF_ARRAY, HEADER_BYTES + length * 4, length)) as Ref<'RefArray'>;
  }

  length<R extends number>(a: RefTo<R, 'RefArray'>): number {
    const { refs, views } = this.#ctx;
    return lengthAt(views, refs.typed(a, TYPE_REF_ARRAY));
  }

  get<R extends number>(a: RefTo<R, 'RefArray'>, i: number): Ref | 0 {
    const { refs, views } = this.#ctx;
    const g = refs.typed(a, TYPE_REF_ARRAY);
    const u32 = views.u32;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('arrays.get', i, length);
    return refs.encode(u32[g * 4 + 2 + i]) as Ref | 0;
  }

  set<R extends number>(a: RefTo<R, 'RefArray'>, i: number, ref: number): void {
    const { refs, views } = this.#ctx;
    const g = refs.typed(a, TYPE_REF_ARRAY);
    const u32 = views.u32;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('arrays.set', i, length);
    u32[g * 4 + 2 + i] = refs.field(ref);
  }
}

// %TypedArray%.prototype's own getters: they read a typed array's internal
// slots, so no subclass, proxy or own property can make them lie.
const typedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const typedArrayTag = Object.getOwnPropertyDescriptor(typedArrayProto, Symbol.toStringTag)!.get!;
const typedArrayLengthGetter = Object.getOwnPropertyDescriptor(typedArrayProto, 'length')!.get!;
const typedArrayBuffer = Object.getOwnPropertyDescriptor(typedArrayProto, 'buffer')!.get!;
const typedArrayByteOffset = Object.getOwnPropertyDescriptor(typedArrayProto, 'byteOffset')!.get!;
/** A real Uint8Array (or Buffer), whatever its prototype chain says. */
function isUint8Array(x: unknown): x is Uint8Array { return typedArrayTag.call(x) === 'Uint8Array'; }
function typedArrayLength(a: Uint8Array): number { return typedArrayLengthGetter.call(a) as number; }
/** bytes.alloc(data) copies up to this many bytes with a loop rather than a view and set(). */
const SHORT_COPY_BYTES = 64;

/** The first `n` bytes of `a` as a plain view (subarray() would call a subclass's species constructor). */
function prefix(a: Uint8Array, n: number): Uint8Array {
  return new Uint8Array(typedArrayBuffer.call(a) as ArrayBufferLike, typedArrayByteOffset.call(a) as number, n);
}

/** Byte arrays: `length` bytes after the header. */
export class ByteArrays {
  readonly #ctx: TypeContext;

  /** Made by the heap (its `bytes` property); not constructible by applications. */
  constructor(internal: unknown) {
    if (!isHeapMade(internal)) throw new InvalidArgumentError('ByteArrays: made by the heap (heap.bytes), not constructible');
    this.#ctx = internal as TypeContext;
  }

  /** A zeroed byte array of `length`, or a copy of `data`. */
  alloc(lengthOrData: number | Uint8Array): Ref<'Bytes'> {
    // The copy's length is the typed array's own (its internal slot, read
    // through the intrinsic getter), never a `length` property a subclass or
    // defineProperty may shadow: the object is sized from it and set()
    // copies that many bytes, past the object if the two disagreed.
    const data = typeof lengthOrData !== 'number' && isUint8Array(lengthOrData) ? lengthOrData : undefined;
    const length = data ? typedArrayLength(data) : lengthOrData;
    checkLength('bytes.alloc', length);
    const g = this.#ctx.allocate(TYPE_BYTES, HEADER_BYTES + (length as number), length as number);
    // The allocation may run cycle listeners, and one may have resized or
    // detached the data's buffer: copy what it holds now, at most the
    // object's length (0 when detached or out of bounds; the rest stays
    // zero). set() would copy its whole current length, past the object;
    // a fixed-length view also holds against a growable SharedArrayBuffer
    // that another thread grows meanwhile.
    if (data && length !== 0) {
      const n = Math.min(typedArrayLength(data), length as number);
      const u8 = this.#ctx.views.u8;
      const at = g * 16 + HEADER_BYTES;
      // A short copy byte by byte: a view and set() cost more than the
      // bytes (a 10-byte array: 67-78 ns an alloc() through them, 42-44
      // by the loop). Indexed reads of a Uint8Array reach its own elements
      // (a typed array's numeric keys never reach a getter), within its
      // current length (n).
      if (n <= SHORT_COPY_BYTES) for (let i = 0; i < n; i++) u8[at + i] = data[i];
      else if (n !== 0) u8.set(prefix(data, n), at);
    }
    return this.#ctx.refs.encode(g) as Ref<'Bytes'>;
  }

  length<R extends number>(b: RefTo<R, 'Bytes'>): number {
    return lengthAt(this.#ctx.views, this.#ctx.refs.typed(b, TYPE_BYTES));
  }

  get<R extends number>(b: RefTo<R, 'Bytes'>, i: number): number {
    const g = this.#ctx.refs.typed(b, TYPE_BYTES);
    const views = this.#ctx.views;
    const u8 = views.u8;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('bytes.get', i, length);
    return u8[g * 16 + HEADER_BYTES + i];
  }

  set<R extends number>(b: RefTo<R, 'Bytes'>, i: number, value: number): void {
    const g = this.#ctx.refs.typed(b, TYPE_BYTES);
    const views = this.#ctx.views;
    const u8 = views.u8;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('bytes.set', i, length);
    if (typeof value !== 'number' || (value & 0xff) !== value) badValue('bytes.set', value, 'an integer in [0, 255]');
    u8[g * 16 + HEADER_BYTES + i] = value;
  }

  /** A live view of the bytes: valid until the next yield (the object may be freed after it). */
  view<R extends number>(b: RefTo<R, 'Bytes'>): Uint8Array {
    const g = this.#ctx.refs.typed(b, TYPE_BYTES);
    const start = g * 16 + HEADER_BYTES;
    return this.#ctx.views.u8.subarray(start, start + lengthAt(this.#ctx.views, g));
  }

  /** A copy of the bytes, owned by the caller. */
  copy<R extends number>(b: RefTo<R, 'Bytes'>): Uint8Array {
    return this.view(b as number).slice();
  }
}

/** UTF-8 strings: immutable, `length` bytes after the header. */
export class Strings {
  readonly #ctx: TypeContext;
  readonly #addon = native();
  /** The thread's scratch for the addon's encoder, as words (utf8Scratch below). */
  readonly #scratch = utf8Scratch(this.#addon);

  /** Made by the heap (its `strings` property); not constructible by applications. */
  constructor(internal: unknown) {
    if (!isHeapMade(internal)) throw new InvalidArgumentError('Strings: made by the heap (heap.strings), not constructible');
    this.#ctx = internal as TypeContext;
  }

  /**
   * A string must be well-formed UTF-16: a lone surrogate has no UTF-8
   * encoding, and writing U+FFFD in its place would store a different
   * string than the one given, silently. It is rejected (FieldValueError).
   */
  alloc(s: string): Ref<'String'> {
    // A closed heap says so before a bad argument is reported; the check is
    // on the failure paths only (the allocation checks it for the rest).
    if (typeof s !== 'string') {
      this.#ctx.ensureOpen();
      badValue('strings.alloc', s, 'a string');
    }
    // A short ASCII string is copied by JS: V8 makes no rope (ConsString)
    // shorter than 13 units, so charCodeAt reads a flat string, and the
    // addon call costs more than the copy (allocating a 9-char key: 165-186
    // ns against 220-242; on a rope, charCodeAt is slower than the addon's
    // flatten-and-encode).
    // ASCII has no surrogates, so the well-formedness check is implied.
    const n = s.length;
    if (n <= SHORT_STRING_UNITS) {
      // One pass: the (at most three) words are built in locals while the
      // ASCII test runs, and stored after the allocation (charCodeAt is the
      // cost here: one call per unit instead of two, 30 ns less for a
      // 10-char key). Locals, not a scratch array: the allocation may run
      // listeners that allocate strings themselves.
      let any = 0;
      let w0 = 0;
      let w1 = 0;
      let w2 = 0;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        any |= c;
        if (i < 4) w0 |= c << (i << 3);
        else if (i < 8) w1 |= c << ((i - 4) << 3);
        else w2 |= c << ((i - 8) << 3);
      }
      if (any < 0x80) {
        const g = this.#ctx.allocate(TYPE_STRING, HEADER_BYTES + n, n);
        // The data starts 8 bytes into the slot (word aligned). The slot
        // holds at least two data words (16 bytes, 8 of header), three
        // when n > 8 (32 bytes); a word past the string's last byte is zero,
        // as the slot's unused bytes must be.
        const u32 = this.#ctx.views.u32;
        const at = g * 4 + HEADER_BYTES / 4;
        u32[at] = w0;
        u32[at + 1] = w1;
        if (n > 8) u32[at + 2] = w2;
        return this.#ctx.refs.encode(g) as Ref<'String'>;
      }
    }
    if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {  // ES2024, Node >= 20
      this.#ctx.ensureOpen();
      throw new FieldValueError('strings.alloc: the string has a lone surrogate (not well-formed UTF-16), which UTF-8 cannot store');
    }
    // A string that surely fits the scratch (3 UTF-8 bytes per UTF-16 unit
    // at most) is encoded there in one addon call, then copied in a word at
    // a time; the object's data starts 8 bytes into its slot, so the words
    // are aligned, and the copied tail (up to 3 zero bytes) stays inside the
    // slot, which is rounded up to 16 bytes.
    if (n <= UTF8_SCRATCH_UNITS) {
      const length = this.#addon.encodeUtf8(s);
      if (length >= 0) {
        const use = ++utf8ScratchUses;
        const g = this.#ctx.allocate(TYPE_STRING, HEADER_BYTES + length, length);
        // An allocation may move a cycle on and run its event listeners
        // (finalization callbacks run from the event loop only), whose own
        // strings go through the same scratch: if one did, encode this one
        // again (nothing runs between that and the copy).
        if (utf8ScratchUses !== use) this.#addon.encodeUtf8(s);
        const u32 = this.#ctx.views.u32;
        const words = this.#scratch;
        const at = g * 4 + HEADER_BYTES / 4;
        for (let k = 0, n = (length + 3) >>> 2; k < n; k++) u32[at + k] = words[k];
        return this.#ctx.refs.encode(g) as Ref<'String'>;
      }
    }
    const length = Buffer.byteLength(s, 'utf8');
    checkLength('strings.alloc', length);
    const g = this.#ctx.allocate(TYPE_STRING, HEADER_BYTES + length, length);
    // utf8Write is what write(s, offset, length, 'utf8') calls after checking
    // its arguments, which are known good here.
    (this.#ctx.views.text as Utf8Buffer).utf8Write(s, g * 16 + HEADER_BYTES, length);
    return this.#ctx.refs.encode(g) as Ref<'String'>;
  }

  read<R extends number>(r: RefTo<R, 'String'>): string {
    const g = this.#ctx.refs.typed(r, TYPE_STRING);
    return readUtf8(this.#ctx.views, g * 16 + HEADER_BYTES, lengthAt(this.#ctx.views, g));
  }

  byteLength<R extends number>(r: RefTo<R, 'String'>): number {
    return lengthAt(this.#ctx.views, this.#ctx.refs.typed(r, TYPE_STRING));
  }

  /** `read(r).length` (UTF-16 units), counted in the heap: no JS string is made. */
  length<R extends number>(r: RefTo<R, 'String'>): number {
    const g = this.#ctx.refs.typed(r, TYPE_STRING);
    const v = this.#ctx.views;
    return utf16Length(v.u8, v.u32, g * 16 + HEADER_BYTES, lengthAt(v, g));
  }

  /** `read(r) === s`, compared in the heap: no JS string is made. */
  equals<R extends number>(r: RefTo<R, 'String'>, s: string): boolean {
    const g = this.#ctx.refs.typed(r, TYPE_STRING);
    if (typeof s !== 'string') badValue('strings.equals', s, 'a string');
    const v = this.#ctx.views;
    return utf8Equals(s, v.u8, g * 16 + HEADER_BYTES, lengthAt(v, g));
  }
}

/**
 * The scratch Strings.alloc has the addon encode into: the addon's, one per
 * thread (native/string_encode.cc, utf8Scratch), 16 KiB. Strings of up to
 * UTF8_SCRATCH_UNITS UTF-16 units (3 UTF-8 bytes each at most, with room for
 * the 4 zero bytes and the addon's margin) take the one-call path; longer
 * ones are encoded straight into the heap, where the second call's cost is
 * small beside the copy.
 */
export const UTF8_SCRATCH_UNITS = Math.floor((16384 - 16) / 3);

/**
 * Strings of at most this many UTF-16 units (never ropes in V8), if ASCII, are
 * copied by Strings.alloc itself: the three data words that readUtf8 decodes
 * itself (an ASCII unit is one byte).
 */
export const SHORT_STRING_UNITS = SHORT_ASCII_BYTES;

/** Strings encoded into this thread's scratch so far: Strings.alloc sees by it whether another took the scratch meanwhile. */
let utf8ScratchUses = 0;

function utf8Scratch(addon: NativeAddon): Uint32Array {
  const bytes = addon.utf8Scratch();
  if (bytes.length < UTF8_SCRATCH_UNITS * 3 + 16) throw new Error(`internal: the addon's UTF-8 scratch is ${bytes.length} bytes`);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
}

/** Buffer's own UTF-8 encoder (on Buffer.prototype since Node 0.x, not in its types). */
type Utf8Buffer = Buffer & { utf8Write(s: string, offset: number, length: number): number };

function checkLength(what: string, length: unknown): void {
  // (x >>> 0) === x: an integer from 0 to 2^32-1 (typeof first: a BigInt or
  // an object must not reach `>>>`).
  if (typeof length !== 'number' || (length >>> 0) !== length) {
    // (describe: an object's own toString may throw, or lie.)
    throw new FieldValueError(`${what}: length must be an integer from 0 to 2^32-1, got ${describe(length)}`);
  }
}

// typeof first on the fast path: a BigInt, a Symbol or an object with a
// throwing valueOf must not reach `>>>` (it would throw a raw TypeError or
// run the object's code).
function badIndex(what: string, i: unknown, length: number): never {
  if (typeof i !== 'number') throw new InvalidArgumentError(`${what}: index must be a number, got ${describe(i)}`);
  throw new IndexOutOfBoundsError(`${what}: index ${String(i)} is out of bounds (length ${length})`);
}
