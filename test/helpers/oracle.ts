/**
 * The shadow model's two oracles:
 *
 *   - reachability: the set of objects reachable from a set of roots, computed in
 *     TypeScript by walking struct reference fields and RefArray elements through
 *     the public API (or through a spec/model, without the heap);
 *   - content: a canonical description of an object (every scalar field, string
 *     contents, byte contents, and the shape: type, lengths, which reference slot
 *     points to which object *label*, never to a raw Ref) and its 53-bit checksum.
 *
 * Labels make descriptions identity-independent: a graph built from one spec into
 * two heaps describes identically when labels are spec indices. The heap-side and
 * the spec-side descriptions are built by the same formatter, so "intact" means
 * heapDescribe(ref) === specDescribe(expected).
 */
import type { Heap } from '../../src/index.js';
import type { Ref } from './common.js';
import { fieldsOf, specChildren, type FieldKind, type ObjSpec, type Schema } from './graph.js';

// ---------------------------------------------------------------------------
// Reachability.

/** Out-edges of ref, read from the heap. */
export function heapChildren(heap: Heap, schema: Schema, ref: Ref): Ref[] {
  const t = heap.typeOf(ref);
  if (t === 'RefArray') {
    const out: Ref[] = [];
    const n = heap.arrays.length(ref);
    for (let i = 0; i < n; i++) {
      const e = heap.arrays.get(ref, i);
      if (e !== 0) out.push(e);
    }
    return out;
  }
  if (t === 'String' || t === 'Bytes') return [];
  const info = schema.byName.get(t);
  if (!info) throw new Error(`oracle: unknown type ${t} at ${ref}`);
  const out: Ref[] = [];
  for (const f of info.refFields) {
    const e = info.type.get[f](ref) as Ref;
    if (e !== 0) out.push(e);
  }
  return out;
}

/** Objects reachable from roots (0 entries ignored), walking the heap. Iterative: chains may be long. */
export function reachableInHeap(heap: Heap, schema: Schema, roots: Iterable<Ref>): Set<Ref> {
  const seen = new Set<Ref>();
  const stack: Ref[] = [];
  for (const r of roots) if (r !== 0) stack.push(r);
  while (stack.length > 0) {
    const r = stack.pop()!;
    if (seen.has(r)) continue;
    seen.add(r);
    for (const c of heapChildren(heap, schema, r)) if (!seen.has(c)) stack.push(c);
  }
  return seen;
}

/** Keys reachable from roots in a key -> ObjSpec map (a GraphSpec's objects, or a shadow model). */
export function reachableInSpec(objects: { get(k: number): ObjSpec | undefined }, roots: Iterable<number>): Set<number> {
  const seen = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const k = stack.pop()!;
    if (seen.has(k)) continue;
    const o = objects.get(k);
    if (!o) throw new Error(`oracle: dangling key ${k} in the model`);
    seen.add(k);
    for (const c of specChildren(o)) if (!seen.has(c)) stack.push(c);
  }
  return seen;
}

/** Adapts an array of specs to reachableInSpec. */
export function indexMap(objects: ObjSpec[]): { get(k: number): ObjSpec | undefined } {
  return { get: (k) => objects[k] };
}

// ---------------------------------------------------------------------------
// Content.

function fmtScalar(kind: Exclude<FieldKind, 'ref'>, v: unknown): string {
  if (kind === 'bool') return typeof v === 'boolean' ? (v ? 'T' : 'F') : `bad(${typeof v}:${String(v)})`;
  if (typeof v !== 'number') return `bad(${typeof v}:${String(v)})`;
  if (kind === 'f64') return Object.is(v, -0) ? '-0' : String(v);
  return String(Object.is(v, -0) ? 0 : v);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Canonical description of an expected object; label(key) names a reference target. */
export function specDescribe(o: ObjSpec, label: (key: number) => string): string {
  switch (o.kind) {
    case 'struct': {
      const parts = fieldsOf(o.type).map(([f, kind]) => {
        const v = o.values[f];
        if (kind === 'ref') return `${f}=${v === null || v === undefined ? 'null' : label(v as number)}`;
        return `${f}=${fmtScalar(kind, v ?? (kind === 'bool' ? false : 0))}`;
      });
      return `${o.type}{${parts.join(';')}}`;
    }
    case 'array':
      return `RefArray[${o.elems.length}](${o.elems.map((e) => (e === null ? 'null' : label(e))).join(',')})`;
    case 'string':
      return `String[${utf8Length(o.value)}]${JSON.stringify(o.value)}`;
    case 'bytes':
      return `Bytes[${o.value.length}]${hex(o.value)}`;
  }
}

/** Canonical description of the object at ref, read through the public API; label(ref) names a target. */
export function heapDescribe(heap: Heap, schema: Schema, ref: Ref, label: (ref: Ref) => string): string {
  const t = heap.typeOf(ref);
  switch (t) {
    case 'RefArray': {
      const n = heap.arrays.length(ref);
      const parts: string[] = [];
      for (let i = 0; i < n; i++) {
        const e = heap.arrays.get(ref, i);
        parts.push(e === 0 ? 'null' : label(e));
      }
      return `RefArray[${n}](${parts.join(',')})`;
    }
    case 'String':
      return `String[${heap.strings.byteLength(ref)}]${JSON.stringify(heap.strings.read(ref))}`;
    case 'Bytes': {
      const n = heap.bytes.length(ref);
      const c = heap.bytes.copy(ref);
      return `Bytes[${n}]${c.length === n ? hex(c) : `bad-copy-length(${c.length})`}`;
    }
    default: {
      const info = schema.byName.get(t);
      if (!info) return `unknown-type(${t})`;
      if (!info.type.is(ref)) return `${t}:is()=false`;
      const parts = info.fields.map(([f, kind]) => {
        const v = info.type.get[f](ref);
        if (kind === 'ref') return `${f}=${typeof v !== 'number' ? `bad(${typeof v})` : v === 0 ? 'null' : label(v)}`;
        return `${f}=${fmtScalar(kind, v)}`;
      });
      return `${t}{${parts.join(';')}}`;
    }
  }
}

/** cyrb53: a 53-bit string hash. */
export function hash53(s: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

export function specChecksum(o: ObjSpec, label: (key: number) => string): number {
  return hash53(specDescribe(o, label));
}

export function heapChecksum(heap: Heap, schema: Schema, ref: Ref, label: (ref: Ref) => string): number {
  return hash53(heapDescribe(heap, schema, ref, label));
}

/** Label functions for a graph built from a spec: targets are named by spec index. */
export const indexLabel = (i: number): string => `#${i}`;
export function refToIndexLabel(indexOf: Map<Ref, number>): (ref: Ref) => string {
  return (r) => {
    const i = indexOf.get(r);
    return i === undefined ? `?ref${r}` : `#${i}`;
  };
}
/** Label functions for a shadow model keyed by Ref (same heap on both sides). */
export const refLabel = (r: number): string => `@${r}`;
