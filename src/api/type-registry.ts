// Struct types: definition, layout and accessors (the built-in reference
// arrays, byte arrays and strings are in src/api/types.ts). Each struct
// type gets accessor closures with its field offsets baked in, so a field
// read is a checked typed-array load.
//
// Struct layout (offsets from the object's first byte):
//
// | offset        | field                                              |
// |---------------|----------------------------------------------------|
// | 0             | header (native/layout.h)                           |
// | 8             | reference fields, 4 bytes each, in declared order  |
// | then          | weak reference fields, 4 bytes each                |
// | then          | with f64 fields only: one i32/u32 field if that    |
// |               | brings the offset to a multiple of 8               |
// | 8-aligned     | f64 fields (no alignment when there are none)      |
// | 4-aligned     | the other i32 and u32 fields                       |
// | then          | bool fields, 1 byte each                           |
// | size          | rounded up to the 16-byte granule                  |
//
// So {next: ref, value: i32} is 16 bytes (8 + 4 + 4), and {a: ref, x: f64,
// n: i32} is 24 -> 32 with n filling the hole before x. `size` is this
// rounded size; the object occupies the size class above it
// (src/memory/layout.ts), which is what live bytes count.
//
// References come first because the descriptor tells the marker only how
// many there are: it scans u32s from offset 8. Weak ones follow, untraced
// (src/api/weak.ts).
import { FieldValueError, InvalidArgumentError, TypeDefinitionError, describe } from './errors.js';
import {
  DESCRIPTOR_WORDS, FIRST_STRUCT_TYPE, HEADER_BYTES, KIND_LEAF, KIND_REF_ARRAY, KIND_STRUCT, LARGE_CLASS, MAX_TYPES,
  SIZE_CLASSES, TYPE_BYTES, TYPE_REF_ARRAY, TYPE_STRING, roundToGranules, sizeClassOf,
} from '../memory/layout.js';
import { compileAccessor, compileAlloc, namedLikeInherited } from './accessors.js';
import { codeGenerationAllowed } from '../platform/code-generation.js';
import type { RefOps } from './refs.js';
import type { HeapViews } from '../memory/views.js';
import type { FieldKind, FieldSpec, FieldValue, StructType, StructValues, Ref } from './types.js';

/** What types need from the heap. */
export interface TypeContext {
  readonly views: HeapViews;
  readonly refs: RefOps;
  /** Allocates an object of `bytes` (header included), zeroed, and writes its header; returns the granule. */
  allocate(typeId: number, bytes: number, length: number): number;
  /** The same for a small object of size class `cls` (`slotBytes` its slot size) and length 0. */
  allocateSmall(typeId: number, cls: number, slotBytes: number): number;
  /** The allocation fast path's per-class state, which compiled alloc() pops slots from (src/memory/allocator.ts). */
  readonly allocator: {
    readonly cacheBits: Int32Array; readonly cacheWord: Int32Array;
    /** Objects a failed sweep left in place, unreachable (src/memory/allocator.ts). */
    readonly garbageLeft: Uint32Array | undefined;
  };
  /** A new object has weak fields: register it for clearing (src/api/weak.ts). */
  weakHolderAllocated(g: number): void;
  /** A weak field read returned target g (src/api/weak.ts, the read barrier). */
  weakRead(g: number): void;
  /** Throws HeapClosedError after close(): before an argument check, so a closed heap says so whatever it is given. */
  ensureOpen(): void;
}

const KINDS: ReadonlySet<string> = new Set(['ref', 'weak', 'i32', 'u32', 'f64', 'bool']);
const NAME = /^[A-Za-z_$][\w$]*$/;

export class TypeRegistry {
  private readonly names = new Map<string, number>();
  private readonly byId: string[] = [];
  private nextId = FIRST_STRUCT_TYPE;

  constructor(private readonly ctx: TypeContext) {
    const d = ctx.views.descriptors;
    d[TYPE_REF_ARRAY * DESCRIPTOR_WORDS] = KIND_REF_ARRAY;
    d[TYPE_BYTES * DESCRIPTOR_WORDS] = KIND_LEAF;
    d[TYPE_STRING * DESCRIPTOR_WORDS] = KIND_LEAF;
    this.byId[TYPE_REF_ARRAY] = 'RefArray';
    this.byId[TYPE_BYTES] = 'Bytes';
    this.byId[TYPE_STRING] = 'String';
  }

  /** Names a built-in type defined in its own file (src/collections/heap-maps.ts); the name is then taken. */
  nameBuiltin(typeId: number, name: string): void {
    this.byId[typeId] = name;
    this.names.set(name, typeId);
  }

  nameOf(typeId: number): string {
    return this.byId[typeId] ?? (typeId === 0 ? 'free slot' : `unknown type ${typeId}`);
  }

  defineStruct<N extends string, F extends FieldSpec>(name: N, fields: F): StructType<F, N> {
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new TypeDefinitionError(`struct name must be an identifier, got ${describe(name)}`);
    }
    if (this.names.has(name) || name === 'RefArray' || name === 'Bytes' || name === 'String') {
      throw new TypeDefinitionError(`a type named '${name}' is already defined`);
    }
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) {
      throw new TypeDefinitionError(`struct '${name}': fields must be an object of { name: kind }`);
    }
    // The spec is read once, here: a getter or Proxy answering differently
    // on a later read would give the type a layout of one kind (what the
    // marker traces) and accessors of another (a reference stored where the
    // marker sees an integer: its object freed while reachable).
    const entries = Object.entries(fields);
    const spec = Object.freeze(Object.fromEntries(entries)) as F;
    // Reading them ran the caller's getters, which may have closed the heap
    // or defined this very name (two types of one name; found in review).
    // No caller code runs after this point.
    this.ctx.ensureOpen();
    if (this.names.has(name)) throw new TypeDefinitionError(`a type named '${name}' is already defined`);
    for (const [field, kind] of entries) {
      if (!NAME.test(field)) throw new TypeDefinitionError(`struct '${name}': field name ${describe(field)} is not an identifier`);
      // get.__proto__ = accessor would set the record's prototype, not make a field.
      if (field === '__proto__') throw new TypeDefinitionError(`struct '${name}': a field cannot be named '__proto__'`);
      if (!KINDS.has(kind as string)) {
        throw new TypeDefinitionError(`struct '${name}': field '${field}' has unknown kind ${describe(kind)} (use ${[...KINDS].join(', ')})`);
      }
    }
    if (this.nextId >= MAX_TYPES) throw new TypeDefinitionError(`too many types (at most ${MAX_TYPES - FIRST_STRUCT_TYPE})`);

    // Layout: refs, weak refs, (a 32-bit field into the hole before f64), f64, 32-bit, bool.
    const offsets = new Map<string, number>();
    let at = HEADER_BYTES;
    let strongRefs = 0;
    let weakRefs = 0;
    const place = (field: string, kind: FieldKind) => {
      offsets.set(field, at);
      at += kind === 'f64' ? 8 : kind === 'bool' ? 1 : 4;
      if (kind === 'ref') strongRefs++;
      if (kind === 'weak') weakRefs++;
    };
    const is32 = (kind: FieldKind) => kind === 'i32' || kind === 'u32';
    for (const group of ['ref', 'weak'] as const) {
      for (const [field, kind] of entries) if (kind === group) place(field, kind);
    }
    if (entries.some(([, kind]) => kind === 'f64')) {
      const filler = at % 8 !== 0 ? entries.find(([, kind]) => is32(kind)) : undefined;
      if (filler) place(filler[0], filler[1]);
      at = Math.ceil(at / 8) * 8;
      for (const [field, kind] of entries) if (kind === 'f64') place(field, kind);
    }
    for (const [field, kind] of entries) if (is32(kind) && !offsets.has(field)) place(field, kind);
    for (const [field, kind] of entries) if (kind === 'bool') place(field, kind);
    const size = roundToGranules(Math.max(at, HEADER_BYTES + 1));
    const id = this.nextId++;
    const d = this.ctx.views.descriptors;
    d[id * DESCRIPTOR_WORDS + 1] = strongRefs;
    d[id * DESCRIPTOR_WORDS + 2] = weakRefs;
    d[id * DESCRIPTOR_WORDS + 3] = size;
    d[id * DESCRIPTOR_WORDS] = KIND_STRUCT;
    this.names.set(name, id);
    this.byId[id] = name;
    return this.makeStruct(name, id, size, spec, offsets, weakRefs > 0) as StructType<F, N>;
  }

  private makeStruct<F extends FieldSpec>(
    name: string, id: number, size: number, fields: F, offsets: Map<string, number>, hasWeak: boolean,
  ): StructType<F> {
    const { views: v, refs } = this.ctx;
    const { u8, u32, i32, f64 } = v;
    const get: Record<string, (ref: Ref) => number | boolean> = {};
    const set: Record<string, (ref: Ref, value: never) => void> = {};
    // Default mode: a field's accessors compiled for this type and field,
    // checked or not (src/api/accessors.ts); weak fields keep their closures.
    const env = { refs, views: v, badValue };
    const compileInto = (g: typeof get, s: typeof set, unchecked: boolean) => {
      const format = refs.format!;
      for (const [field, kind] of Object.entries(fields)) {
        if (kind === 'weak') continue;
        const off = offsets.get(field)!;
        const what = `${name}.${field}`;
        const k = kind as Exclude<FieldKind, 'weak'>;
        g[field] = compileAccessor('get', k, field, what, id, off, format, env, unchecked) as (ref: Ref) => number | boolean;
        s[field] = compileAccessor('set', k, field, what, id, off, format, env, unchecked) as (ref: Ref, value: never) => void;
      }
    };
    const writers: Array<[string, (g: number, value: unknown) => void]> = [];
    for (const [field, kind] of Object.entries(fields)) {
      const off = offsets.get(field)!;
      const what = `${name}.${field}`;
      let write: (g: number, value: unknown) => void;
      switch (kind) {
        case 'ref': {
          const w = off >>> 2;
          get[field] = (ref) => refs.encode(u32[refs.typed(ref, id) * 4 + w]);
          write = (g, value) => { u32[g * 4 + w] = refs.field(value); };
          break;
        }
        case 'weak': {
          const w = off >>> 2;
          const ctx = this.ctx;
          get[field] = (ref) => {
            const t = u32[refs.typed(ref, id) * 4 + w];
            if (t !== 0) ctx.weakRead(t);
            return refs.encode(t);
          };
          write = (g, value) => { u32[g * 4 + w] = refs.field(value); };
          break;
        }
        case 'i32': {
          const w = off >>> 2;
          get[field] = (ref) => i32[refs.typed(ref, id) * 4 + w];
          write = (g, value) => {
            if (typeof value !== 'number' || (value | 0) !== value) badValue(what, value, 'an integer in [-2^31, 2^31)');
            i32[g * 4 + w] = value as number;
          };
          break;
        }
        case 'u32': {
          const w = off >>> 2;
          get[field] = (ref) => u32[refs.typed(ref, id) * 4 + w];
          write = (g, value) => {
            if (typeof value !== 'number' || (value >>> 0) !== value) badValue(what, value, 'an integer in [0, 2^32)');
            u32[g * 4 + w] = value as number;
          };
          break;
        }
        case 'f64': {
          const w = off >>> 3;
          get[field] = (ref) => f64[refs.typed(ref, id) * 2 + w];
          write = (g, value) => {
            if (typeof value !== 'number') badValue(what, value, 'a number');
            f64[g * 2 + w] = value as number;
          };
          break;
        }
        default: {
          get[field] = (ref) => u8[refs.typed(ref, id) * 16 + off] !== 0;
          write = (g, value) => {
            if (typeof value !== 'boolean') badValue(what, value, 'true or false');
            u8[g * 16 + off] = value ? 1 : 0;
          };
        }
      }
      // A write checks the value before the object: a bad value never half-writes.
      set[field] = (ref, value) => write(refs.typed(ref, id), value);
      writers.push([field, write]);
    }
    const compiled = refs.format !== undefined && codeGenerationAllowed();
    if (compiled) compileInto(get, set, false);
    const ctx = this.ctx;
    // Per field, in declaration order: its name, kind, the name errors use
    // and its writer, computed once here rather than on every alloc(init).
    const fieldNames = writers.map(([field]) => field);
    const fieldKinds = fieldNames.map((field) => fields[field] as FieldKind);
    const fieldWhats = fieldNames.map((field) => `${name}.${field}`);
    const fieldInherited = fieldNames.map(namedLikeInherited);
    const fieldWrites = writers.map(([, write]) => write);
    const fieldCount = fieldNames.length;
    const cls = sizeClassOf(size);
    const slotBytes = SIZE_CLASSES[cls];
    const alloc = (init?: Partial<StructValues<F>>): Ref => {
      if (init !== undefined && (typeof init !== 'object' || init === null)) {
        throw new FieldValueError(`${name}.alloc: init must be an object of field values`);
      }
      let values: unknown[] | undefined;
      if (init !== undefined) {
        for (const key of Object.keys(init)) {
          if (!offsets.has(key)) throw new FieldValueError(`${name}.alloc: no field '${key}'`);
        }
        // Read each value exactly once (a getter may answer differently on
        // a second read) and validate them all before allocating: a bad
        // value allocates nothing and writes nothing.
        values = new Array<unknown>(fieldCount);
        for (let k = 0; k < fieldCount; k++) {
          const value = fieldInherited[k] && !Object.hasOwn(init, fieldNames[k])
            ? undefined : (init as Record<string, unknown>)[fieldNames[k]];
          if (value !== undefined) validate(fieldWhats[k], fieldKinds[k], value, refs);
          values[k] = value;
        }
      }
      const g = cls < LARGE_CLASS ? ctx.allocateSmall(id, cls, slotBytes) : ctx.allocate(id, size, 0);
      if (hasWeak) ctx.weakHolderAllocated(g);
      if (values !== undefined) {
        for (let k = 0; k < fieldCount; k++) {
          if (values[k] !== undefined) fieldWrites[k](g, values[k]);
        }
      }
      return refs.encode(g) as Ref;
    };
    // make(v0, v1, ...): alloc() with the values in declaration order (the
    // generic one builds the init object; same checks, same errors).
    const tooMany = (count: number): never => {
      throw new FieldValueError(`${name}.make: ${count} values for ${fieldCount} field${fieldCount === 1 ? '' : 's'}`);
    };
    const make = (...values: unknown[]): Ref => {
      if (values.length > fieldCount) tooMany(values.length);
      const init: Record<string, unknown> = {};
      for (let k = 0; k < values.length; k++) {
        if (values[k] !== undefined) init[fieldNames[k]] = values[k];
      }
      return alloc(init as Partial<StructValues<F>>);
    };
    // Default mode: alloc(init) and make() compiled for this type
    // (src/api/accessors.ts); checked mode keeps the generic ones above.
    const compiledAlloc = compiled && compileAlloc(
      fieldNames.map((field, k) => ({ field, kind: fieldKinds[k], offset: offsets.get(field)!, what: fieldWhats[k] })),
      id, cls, slotBytes, size, cls < LARGE_CLASS, hasWeak, refs.format!,
      {
        ctx, refs, views: v, badValue,
        notAnObject: () => { throw new FieldValueError(`${name}.alloc: init must be an object of field values`); },
        noField: (key) => { throw new FieldValueError(`${name}.alloc: no field '${key}'`); },
        tooMany,
      });
    const is = (ref: unknown): boolean => {
      try {
        refs.typed(ref, id);
        return true;
      } catch {
        return false;
      }
    };
    const frozenGet = Object.freeze(get);
    const frozenSet = Object.freeze(set);
    // Unchecked accessors (src/api/accessors.ts) are compiled the first time
    // a program asks for them. Checked mode hands out the checked ones (it
    // is the mode for finding the bugs they would hide), as do weak fields
    // (their read barrier is not a check to skip).
    let unchecked: { get: typeof frozenGet; set: typeof frozenSet } | undefined;
    const makeUnchecked = () => {
      if (!compiled) return { get: frozenGet, set: frozenSet };
      const uget: typeof get = { ...get };
      const uset: typeof set = { ...set };
      compileInto(uget, uset, true);
      return Object.freeze({ get: Object.freeze(uget), set: Object.freeze(uset) });
    };
    const type = {
      name, id, size, fields: Object.freeze({ ...fields }), alloc: compiledAlloc ? compiledAlloc.alloc : alloc,
      make: compiledAlloc ? compiledAlloc.make : make, is,
      get: frozenGet, set: frozenSet,
    };
    Object.defineProperty(type, UNCHECKED_TABLES, { value: () => (unchecked ??= makeUnchecked()) });
    Object.defineProperty(type, 'unchecked', UNCHECKED_PROPERTY);
    return Object.freeze(type) as unknown as StructType<F>;
  }
}

// A struct type's `unchecked` getter is one function shared by every type,
// defined on the object after it is made: V8 keeps an object's properties
// fast only if its accessor is the one its map already records (a frozen
// literal with a getter, or a getter closure per type, made every type
// after the first dictionary-mode). In dictionary mode every `Type.alloc()`
// in optimized code was a generic lookup (a LoadIC call, 4-5 ns) before
// the inlined allocation, about a tenth of gcbench's main thread. The
// getter reaches the type's own tables through a non-enumerable symbol
// property (a constant load for TurboFan, where a WeakMap would be a hash
// lookup). test/handle-shapes.test.ts holds every handle object to fast
// properties.
const UNCHECKED_TABLES = Symbol('forkgc.uncheckedTables');
const UNCHECKED_PROPERTY: PropertyDescriptor = {
  get(this: { [UNCHECKED_TABLES]?: () => unknown } | null | undefined) {
    // Called on something else than a struct type only through the
    // property descriptor (`Object.getOwnPropertyDescriptor(T, 'unchecked').get`).
    const tables = this == null ? undefined : this[UNCHECKED_TABLES];
    if (typeof tables !== 'function') throw new InvalidArgumentError('unchecked: read it from a struct type (Type.unchecked)');
    return tables();
  },
  enumerable: true,
  configurable: true,
};

function validate(what: string, kind: FieldKind, value: unknown, refs: RefOps): void {
  switch (kind) {
    case 'ref': case 'weak': refs.field(value); return;
    case 'i32': if (typeof value !== 'number' || (value | 0) !== value) badValue(what, value, 'an integer in [-2^31, 2^31)'); return;
    case 'u32': if (typeof value !== 'number' || (value >>> 0) !== value) badValue(what, value, 'an integer in [0, 2^32)'); return;
    case 'f64': if (typeof value !== 'number') badValue(what, value, 'a number'); return;
    default: if (typeof value !== 'boolean') badValue(what, value, 'true or false');
  }
}

export function badValue(what: string, value: unknown, expected: string): never {
  const shown = typeof value === 'number' || typeof value === 'boolean' ? String(value) : typeof value;
  throw new FieldValueError(`${what}: expected ${expected}, got ${shown}`);
}

