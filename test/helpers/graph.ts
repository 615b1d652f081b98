/**
 * Random object graphs, seeded and reproducible.
 *
 * A graph is first generated as plain data (a GraphSpec: one ObjSpec per object,
 * references as object indices), then built into a heap. The same spec built into
 * two heaps gives two graphs that correspond object for object (index i), whatever
 * references the two heaps hand out, so their freed sets can be compared.
 *
 * Shape of a generated graph:
 *
 *   - objects of three struct types (refs first, refs interleaved with scalars,
 *     no refs at all), RefArrays, UTF-8 strings (non-ASCII, astral, NUL), byte
 *     arrays; a few large ones (strings/bytes/arrays that need spans of their own);
 *   - objects fall into clusters, interleaved in allocation order (so spans mix
 *     live and dead slots); edges mostly stay inside a cluster (cycles, self-loops),
 *     each cluster sends 0-2 edges to other clusters (shared subgraphs);
 *   - "island" clusters are never rooted and never pointed to, so there is always
 *     garbage, including cyclic garbage and garbage that points into live clusters;
 *   - optionally a long chain of Nodes (deep marking, mark-stack overflow);
 *   - a random subset of clusters is rooted, some objects through several handles.
 */
import fc from 'fast-check';
import type { Heap } from '../../src/index.js';
import type { Ref, RootHandle } from './common.js';

export type FieldKind = 'ref' | 'i32' | 'u32' | 'f64' | 'bool';

/** The struct declarations every generated graph uses. */
export const STRUCT_DEFS = {
  // reference fields first
  Node: { left: 'ref', right: 'ref', value: 'i32', w: 'f64', ok: 'bool', id: 'u32' },
  // reference fields interleaved with scalars
  Mixed: { x: 'f64', r1: 'ref', flag: 'bool', r2: 'ref', n: 'i32', r3: 'ref', u: 'u32' },
  // no reference field at all
  Leaf: { v: 'i32', u: 'u32', f: 'f64', flag: 'bool' },
} as const;

export type StructName = keyof typeof STRUCT_DEFS;
export const STRUCT_NAMES = Object.keys(STRUCT_DEFS) as StructName[];

/** An untyped view of a struct type, for code that walks any struct generically. */
export interface AnyStruct {
  readonly name: string;
  readonly id: number;
  readonly size: number;
  alloc(init?: Record<string, unknown>): Ref;
  make(...values: Array<number | boolean | undefined>): Ref;
  readonly get: Record<string, (ref: Ref) => unknown>;
  readonly set: Record<string, (ref: Ref, v: unknown) => void>;
  is(ref: Ref): boolean;
}

export interface StructInfo {
  name: StructName;
  type: AnyStruct;
  fields: [string, FieldKind][];
  refFields: string[];
}

export interface Schema {
  structs: Record<StructName, AnyStruct>;
  byName: Map<string, StructInfo>;
}

export function fieldsOf(name: StructName): [string, FieldKind][] {
  return Object.entries(STRUCT_DEFS[name]) as [string, FieldKind][];
}

export function refFieldsOf(name: StructName): string[] {
  return fieldsOf(name)
    .filter(([, k]) => k === 'ref')
    .map(([f]) => f);
}

/** Declares the three struct types in heap. */
export function defineSchema(heap: Heap): Schema {
  const structs = {} as Record<StructName, AnyStruct>;
  const byName = new Map<string, StructInfo>();
  for (const name of STRUCT_NAMES) {
    const type = heap.defineStruct(name, STRUCT_DEFS[name]) as unknown as AnyStruct;
    structs[name] = type;
    byName.set(name, { name, type, fields: fieldsOf(name), refFields: refFieldsOf(name) });
  }
  return { structs, byName };
}

// ---------------------------------------------------------------------------
// Object specs. A reference slot holds a key (an object index in a GraphSpec, a
// Ref in a shadow model) or null.

export type Scalar = number | boolean;

export type ObjSpec =
  | {
      kind: 'struct';
      type: StructName;
      /** Final field values; ref fields hold a key or null. */
      values: Record<string, Scalar | null>;
      /** Fields passed to alloc() (the others start at their default and may be set after). */
      init: string[];
    }
  | { kind: 'array'; elems: (number | null)[] }
  | { kind: 'string'; value: string }
  | { kind: 'bytes'; value: Uint8Array; viaCopy: boolean };

/** The value a field has when alloc() was not told otherwise. */
export function defaultValue(kind: FieldKind): Scalar | null {
  return kind === 'ref' ? null : kind === 'bool' ? false : 0;
}

/** The out-edges (keys) of an object spec. */
export function specChildren(o: ObjSpec): number[] {
  const out: number[] = [];
  if (o.kind === 'struct') {
    for (const f of refFieldsOf(o.type)) {
      const v = o.values[f];
      if (v !== null && v !== undefined) out.push(v as number);
    }
  } else if (o.kind === 'array') {
    for (const e of o.elems) if (e !== null) out.push(e);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Deterministic PRNG (mulberry32).

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
}

const I32_EDGES = [0, 1, -1, 2147483647, -2147483648];
const U32_EDGES = [0, 1, 4294967295, 2147483648];
const F64_EDGES = [0, -0, NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE, -1.5, 2 ** 53 + 2];

export function randomScalar(rng: Rng, kind: Exclude<FieldKind, 'ref'>): Scalar {
  switch (kind) {
    case 'i32':
      return rng.chance(0.15) ? rng.pick(I32_EDGES) : rng.int(2 ** 32) | 0;
    case 'u32':
      return rng.chance(0.15) ? rng.pick(U32_EDGES) : rng.int(2 ** 32);
    case 'f64':
      return rng.chance(0.15) ? rng.pick(F64_EDGES) : (rng.next() - 0.5) * 10 ** rng.range(-10, 20);
    case 'bool':
      return rng.chance(0.5);
  }
}

/** Characters of several UTF-8 lengths: ASCII, NUL, Latin-1, Greek/Cyrillic, CJK, astral (surrogate pairs). */
const CHAR_POOL = [
  ...'abcdefXYZ0189 _-.,;:!?',
  '\u0000',
  '\n',
  '\t',
  ...'éüñçøßàÅ',
  ...'Ωλжщ',
  '漢',
  '字',
  '日',
  '本',
  '語',
  '😀',
  '🚀',
  '👍🏽',
  '𝄞',
];

export function randomString(rng: Rng, maxLen = 40): string {
  const len = rng.chance(0.01) ? rng.range(1500, 5000) : rng.int(maxLen + 1);
  let s = '';
  for (let i = 0; i < len; i++) s += rng.pick(CHAR_POOL);
  return s;
}

export function randomBytes(rng: Rng, maxLen = 64): Uint8Array {
  const len = rng.chance(0.01) ? rng.range(4000, 20000) : rng.int(maxLen + 1);
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = rng.int(256);
  return b;
}

// ---------------------------------------------------------------------------
// Graph specs.

export interface GraphParams {
  seed: number;
  /** Number of objects besides the chain. */
  objects: number;
  /** Length of an extra chain of Nodes (0: none). */
  chain: number;
  /** Probability that a non-island cluster is rooted. */
  rootFraction: number;
  /** Mean cluster size. */
  clusterSize: number;
}

export interface GraphSpec {
  params: GraphParams;
  objects: ObjSpec[];
  /** Object indices to root, one handle each (an index may appear more than once). */
  roots: number[];
}

/** fast-check arbitrary of graph parameters (small numbers, so shrinking is cheap). */
export function graphParamsArb(opts: { minObjects?: number; maxObjects?: number } = {}): fc.Arbitrary<GraphParams> {
  return fc.record({
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
    objects: fc.integer({ min: opts.minObjects ?? 200, max: opts.maxObjects ?? 3000 }),
    chain: fc.oneof(fc.constant(0), fc.integer({ min: 50, max: 3000 })),
    rootFraction: fc.double({ min: 0.2, max: 0.9, noNaN: true }),
    clusterSize: fc.integer({ min: 5, max: 300 }),
  });
}

export function defaultParams(seed: number, objects = 2000): GraphParams {
  return { seed, objects, chain: seed % 2 === 0 ? 1500 : 0, rootFraction: 0.6, clusterSize: 60 };
}

export function genGraphSpec(p: GraphParams): GraphSpec {
  const rng = new Rng(p.seed);
  const n = p.objects;
  const nClusters = Math.max(3, Math.round(n / Math.max(1, p.clusterSize)));
  const nIslands = Math.max(1, Math.floor(nClusters / 4));
  // clusters [0, nIslands) are islands
  const members: number[][] = Array.from({ length: nClusters }, () => []);
  const objects: ObjSpec[] = [];
  const clusterOf: number[] = [];

  const kindRoll = (): 'Node' | 'Mixed' | 'Leaf' | 'array' | 'string' | 'bytes' => {
    const r = rng.next();
    return r < 0.33 ? 'Node' : r < 0.5 ? 'Mixed' : r < 0.63 ? 'Leaf' : r < 0.77 ? 'array' : r < 0.9 ? 'string' : 'bytes';
  };

  for (let i = 0; i < n; i++) {
    const c = i < nClusters ? i : rng.int(nClusters); // every cluster gets a member
    clusterOf.push(c);
    members[c].push(i);
    const k = kindRoll();
    if (k === 'array') {
      const len = rng.chance(0.02) ? rng.range(200, 2000) : rng.int(13);
      objects.push({ kind: 'array', elems: new Array<number | null>(len).fill(null) });
    } else if (k === 'string') {
      objects.push({ kind: 'string', value: randomString(rng) });
    } else if (k === 'bytes') {
      const value = randomBytes(rng);
      objects.push({ kind: 'bytes', value, viaCopy: value.length > 32 || rng.chance(0.5) });
    } else {
      const values: Record<string, Scalar | null> = {};
      const init: string[] = [];
      for (const [f, kind] of fieldsOf(k)) {
        values[f] = kind === 'ref' ? null : rng.chance(0.1) ? defaultValue(kind) : randomScalar(rng, kind);
        if (rng.chance(0.7)) init.push(f);
      }
      objects.push({ kind: 'struct', type: k, values, init });
    }
  }

  const randomSlotTarget = (c: number, self: number): number | null => {
    if (rng.chance(0.15)) return null;
    if (rng.chance(0.03)) return self; // self-loop
    return rng.pick(members[c]);
  };
  const slotsOf = (i: number): { set(v: number | null): void }[] => {
    const o = objects[i];
    if (o.kind === 'struct') return refFieldsOf(o.type).map((f) => ({ set: (v) => (o.values[f] = v) }));
    if (o.kind === 'array') return o.elems.map((_, j) => ({ set: (v) => (o.elems[j] = v) }));
    return [];
  };

  // intra-cluster edges
  for (let i = 0; i < n; i++) for (const s of slotsOf(i)) s.set(randomSlotTarget(clusterOf[i], i));

  // cross-cluster edges: 0-2 per cluster, never into an island
  for (let c = 0; c < nClusters; c++) {
    const k = rng.int(3);
    for (let e = 0; e < k; e++) {
      const from = rng.pick(members[c]);
      const slots = slotsOf(from);
      if (slots.length === 0) continue;
      const to = nIslands + rng.int(nClusters - nIslands);
      if (to === c) continue;
      rng.pick(slots).set(rng.pick(members[to]));
    }
  }

  // the optional chain: Node(i).left = Node(i+1); its tail points back into a cluster
  let chainHead = -1;
  if (p.chain > 0) {
    chainHead = objects.length;
    for (let j = 0; j < p.chain; j++) {
      const idx = objects.length;
      const values: Record<string, Scalar | null> = {};
      for (const [f, kind] of fieldsOf('Node')) values[f] = kind === 'ref' ? null : randomScalar(rng, kind);
      values.left = j + 1 < p.chain ? idx + 1 : null;
      values.right = rng.chance(0.05) ? rng.range(chainHead, idx) : null; // back edges
      objects.push({ kind: 'struct', type: 'Node', values, init: rng.chance(0.5) ? ['id', 'value'] : [] });
    }
    const tail = objects[objects.length - 1];
    if (tail.kind === 'struct') tail.values.left = rng.pick(members[nIslands + rng.int(nClusters - nIslands)]);
  }

  // roots
  const roots: number[] = [];
  let rootedClusters = 0;
  for (let c = nIslands; c < nClusters; c++) {
    if (rng.chance(p.rootFraction) || (c === nClusters - 1 && rootedClusters === 0)) {
      rootedClusters++;
      const k = 1 + rng.int(5);
      for (let j = 0; j < k; j++) roots.push(rng.pick(members[c]));
    }
  }
  if (roots.length > 0 && rng.chance(0.5)) roots.push(roots[0]); // two handles on one object
  if (chainHead >= 0 && rng.chance(0.7)) roots.push(chainHead);

  return { params: p, objects, roots };
}

// ---------------------------------------------------------------------------
// Building a spec into a heap.

export interface BuiltGraph {
  spec: GraphSpec;
  /** refs[i] is object i of the spec. */
  refs: Ref[];
  /** Ref -> object index. */
  indexOf: Map<Ref, number>;
  handles: RootHandle[];
}

/**
 * Allocates every object of spec in heap (index order), wires the references
 * (through alloc() init when the target already exists, else through setters),
 * roots spec.roots. Runs synchronously, without a safepoint.
 */
export function buildGraph(heap: Heap, schema: Schema, spec: GraphSpec): BuiltGraph {
  const refs: Ref[] = new Array(spec.objects.length);
  const later: (() => void)[] = [];
  spec.objects.forEach((o, i) => {
    switch (o.kind) {
      case 'struct': {
        const info = schema.byName.get(o.type)!;
        const init: Record<string, unknown> = {};
        const inInit = new Set<string>();
        for (const f of o.init) {
          const kind = STRUCT_DEFS[o.type][f as keyof (typeof STRUCT_DEFS)[typeof o.type]] as FieldKind;
          const v = o.values[f];
          if (kind === 'ref') {
            if (v === null) init[f] = 0;
            else if ((v as number) < i) init[f] = refs[v as number];
            else continue;
          } else init[f] = v;
          inInit.add(f);
        }
        refs[i] = o.init.length === 0 && i % 2 === 0 ? info.type.alloc() : info.type.alloc(init);
        for (const [f, kind] of info.fields) {
          if (inInit.has(f)) continue;
          const v = o.values[f];
          if (v === defaultValue(kind) && !Object.is(v, -0)) continue;
          if (kind === 'ref') later.push(() => info.type.set[f](refs[i], refs[v as number]));
          else info.type.set[f](refs[i], v);
        }
        break;
      }
      case 'array':
        refs[i] = heap.arrays.alloc(o.elems.length);
        o.elems.forEach((e, j) => {
          if (e !== null) later.push(() => heap.arrays.set(refs[i], j, refs[e]));
        });
        break;
      case 'string':
        refs[i] = heap.strings.alloc(o.value);
        break;
      case 'bytes':
        if (o.viaCopy) refs[i] = heap.bytes.alloc(o.value);
        else {
          refs[i] = heap.bytes.alloc(o.value.length);
          for (let j = 0; j < o.value.length; j++) heap.bytes.set(refs[i], j, o.value[j]);
        }
        break;
    }
  });
  for (const f of later) f();
  const indexOf = new Map<Ref, number>();
  refs.forEach((r, i) => indexOf.set(r, i));
  const handles = spec.roots.map((i) => heap.root(refs[i]));
  return { spec, refs, indexOf, handles };
}
