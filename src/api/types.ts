// The public object types: Ref, field kinds, the StructType a struct
// definition returns, and the built-in reference arrays, byte arrays and
// strings. Struct definition and layout: src/api/type-registry.ts.
import { FieldValueError, IndexOutOfBoundsError, InvalidArgumentError, describe } from './errors.js';
import { HEADER_BYTES, TYPE_BYTES, TYPE_REF_ARRAY, TYPE_STRING } from '../memory/layout.js';
import { lengthAt } from '../memory/header.js';
import { badValue, type TypeContext } from './type-registry.js';

export type Ref = number;
export type FieldKind = 'ref' | 'weak' | 'i32' | 'u32' | 'f64' | 'bool';
export type FieldSpec = Record<string, FieldKind>;
export type FieldValue<K extends FieldKind> = K extends 'bool' ? boolean : number;
export type StructValues<F extends FieldSpec> = { [K in keyof F]: FieldValue<F[K]> };

export interface StructType<F extends FieldSpec> {
  readonly name: string;
  readonly id: number;
  /** Object size in bytes, header included. */
  readonly size: number;
  readonly fields: Readonly<F>;
  /** A new object; fields not in `init` are 0, false or null. */
  alloc(init?: Partial<StructValues<F>>): Ref;
  readonly get: { readonly [K in keyof F]: (ref: Ref) => FieldValue<F[K]> };
  readonly set: { readonly [K in keyof F]: (ref: Ref, value: FieldValue<F[K]>) => void };
  /** Whether `ref` names a live object of this type (never throws for a bad ref). */
  is(ref: unknown): boolean;
}

/** Arrays of references: `length` u32 slots after the header. */
export class RefArrays {
  readonly #ctx: TypeContext;

  /** Made by the heap (its `arrays` property); not constructible by applications. */
  constructor(internal: unknown) { this.#ctx = internal as TypeContext; }

  alloc(length: number): Ref {
    checkLength('arrays.alloc', length);
    return this.#ctx.refs.encode(this.#ctx.allocate(TYPE_REF_ARRAY, HEADER_BYTES + length * 4, length));
  }

  length(a: Ref): number {
    const { refs, views } = this.#ctx;
    return lengthAt(views, refs.typed(a, TYPE_REF_ARRAY));
  }

  get(a: Ref, i: number): Ref {
    const { refs, views } = this.#ctx;
    const g = refs.typed(a, TYPE_REF_ARRAY);
    const u32 = views.u32;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('arrays.get', i, length);
    return refs.encode(u32[g * 4 + 2 + i]);
  }

  set(a: Ref, i: number, ref: Ref): void {
    const { refs, views } = this.#ctx;
    const g = refs.typed(a, TYPE_REF_ARRAY);
    const u32 = views.u32;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('arrays.set', i, length);
    u32[g * 4 + 2 + i] = refs.field(ref);
  }
}

/** Byte arrays: `length` bytes after the header. */
export class ByteArrays {
  readonly #ctx: TypeContext;

  /** Made by the heap (its `bytes` property); not constructible by applications. */
  constructor(internal: unknown) { this.#ctx = internal as TypeContext; }

  /** A zeroed byte array of `length`, or a copy of `data`. */
  alloc(lengthOrData: number | Uint8Array): Ref {
    const data = lengthOrData instanceof Uint8Array ? lengthOrData : undefined;
    const length = data ? data.length : lengthOrData;
    checkLength('bytes.alloc', length);
    const g = this.#ctx.allocate(TYPE_BYTES, HEADER_BYTES + (length as number), length as number);
    if (data) this.#ctx.views.u8.set(data, g * 16 + HEADER_BYTES);
    return this.#ctx.refs.encode(g);
  }

  length(b: Ref): number {
    return lengthAt(this.#ctx.views, this.#ctx.refs.typed(b, TYPE_BYTES));
  }

  get(b: Ref, i: number): number {
    const g = this.#ctx.refs.typed(b, TYPE_BYTES);
    const views = this.#ctx.views;
    const u8 = views.u8;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('bytes.get', i, length);
    return u8[g * 16 + HEADER_BYTES + i];
  }

  set(b: Ref, i: number, value: number): void {
    const g = this.#ctx.refs.typed(b, TYPE_BYTES);
    const views = this.#ctx.views;
    const u8 = views.u8;
    const length = lengthAt(views, g);
    if (typeof i !== 'number' || (i >>> 0) !== i || i >= length) badIndex('bytes.set', i, length);
    if (typeof value !== 'number' || (value & 0xff) !== value) badValue('bytes.set', value, 'an integer in [0, 255]');
    u8[g * 16 + HEADER_BYTES + i] = value;
  }

  /** A live view of the bytes: valid until the next yield (the object may be freed after it). */
  view(b: Ref): Uint8Array {
    const g = this.#ctx.refs.typed(b, TYPE_BYTES);
    const start = g * 16 + HEADER_BYTES;
    return this.#ctx.views.u8.subarray(start, start + lengthAt(this.#ctx.views, g));
  }

  /** A copy of the bytes, owned by the caller. */
  copy(b: Ref): Uint8Array {
    return this.view(b).slice();
  }
}

/** UTF-8 strings: immutable, `length` bytes after the header. */
export class Strings {
  readonly #ctx: TypeContext;

  /** Made by the heap (its `strings` property); not constructible by applications. */
  constructor(internal: unknown) { this.#ctx = internal as TypeContext; }

  /**
   * A string must be well-formed UTF-16: a lone surrogate has no UTF-8
   * encoding, and writing U+FFFD in its place would store a different
   * string than the one given, silently. It is rejected (FieldValueError).
   */
  alloc(s: string): Ref {
    if (typeof s !== 'string') badValue('strings.alloc', s, 'a string');
    if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {  // ES2024, Node >= 20
      throw new FieldValueError('strings.alloc: the string has a lone surrogate (not well-formed UTF-16), which UTF-8 cannot store');
    }
    const length = Buffer.byteLength(s, 'utf8');
    checkLength('strings.alloc', length);
    const g = this.#ctx.allocate(TYPE_STRING, HEADER_BYTES + length, length);
    this.#ctx.views.text.write(s, g * 16 + HEADER_BYTES, length, 'utf8');
    return this.#ctx.refs.encode(g);
  }

  read(r: Ref): string {
    const g = this.#ctx.refs.typed(r, TYPE_STRING);
    const start = g * 16 + HEADER_BYTES;
    return this.#ctx.views.text.toString('utf8', start, start + lengthAt(this.#ctx.views, g));
  }

  byteLength(r: Ref): number {
    return lengthAt(this.#ctx.views, this.#ctx.refs.typed(r, TYPE_STRING));
  }
}

function checkLength(what: string, length: unknown): void {
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 || length > 2 ** 32 - 1) {
    throw new FieldValueError(`${what}: length must be an integer from 0 to 2^32-1, got ${String(length)}`);
  }
}

// typeof first on the fast path: a BigInt, a Symbol or an object with a
// throwing valueOf must not reach `>>>` (it would throw a raw TypeError or
// run the object's code).
function badIndex(what: string, i: unknown, length: number): never {
  if (typeof i !== 'number') throw new InvalidArgumentError(`${what}: index must be a number, got ${describe(i)}`);
  throw new IndexOutOfBoundsError(`${what}: index ${String(i)} is out of bounds (length ${length})`);
}
