/**
 * A shadow heap: every mutation goes to the real heap and to a model of it (ObjSpec
 * per live Ref), so at any point the model says what each object must contain and
 * which objects are reachable from the root handles.
 *
 * Cycles: beginCycle() snapshots, at the moment collect() is called (the fork),
 * every object and the reachable ones. When the cycle ends, exactly
 * (all at fork) \ (reachable at fork) must have been freed; objects allocated
 * since the fork and objects that became unreachable after it must not be.
 */
import type { Heap } from '../../src/index.js';
import { isFreed, type Ref, type RootHandle } from './common.js';
import {
  Rng,
  STRUCT_NAMES,
  defaultValue,
  randomBytes,
  randomScalar,
  randomString,
  type ObjSpec,
  type Scalar,
  type Schema,
  type StructName,
} from './graph.js';
import { heapDescribe, reachableInSpec, refLabel, specDescribe } from './oracle.js';

export interface CycleSnapshot {
  /** every object at the fork */
  all: Set<Ref>;
  /** reachable at the fork */
  live: Set<Ref>;
  /** all \ live: what this cycle must free */
  garbage: Set<Ref>;
  /** garbage slots the allocator handed out again before the cycle ended (freed, then reused) */
  reused: Set<Ref>;
}

export interface CycleReport {
  /** objects the cycle had to free */
  garbage: number;
  /** refs of garbage at fork that still read as live objects (and were not reused) */
  notFreed: Ref[];
  /** live objects whose contents differ from the model */
  mismatches: [Ref, string, string][];
  reused: number;
}

function normalize(kind: string, v: Scalar): Scalar {
  if ((kind === 'i32' || kind === 'u32') && Object.is(v, -0)) return 0;
  return v;
}

export class Shadow {
  readonly objs = new Map<Ref, ObjSpec>();
  readonly roots = new Map<RootHandle, Ref>();
  /** The cycle in progress (between beginCycle and endCycle). */
  cycle: CycleSnapshot | null = null;

  constructor(
    readonly heap: Heap,
    readonly schema: Schema,
  ) {}

  private add(ref: Ref, o: ObjSpec): Ref {
    if (typeof ref !== 'number' || !Number.isInteger(ref) || ref <= 0) {
      throw new Error(`allocation returned a non-Ref: ${String(ref)}`);
    }
    if (this.objs.has(ref)) {
      const c = this.cycle;
      if (c && c.garbage.has(ref) && !c.reused.has(ref)) {
        // the slot of an object that was garbage at the fork, freed by this cycle's sweep, reused
        c.reused.add(ref);
        this.objs.delete(ref);
      } else {
        throw new Error(`allocation returned ${ref}, which is still a live object in the model (double allocation)`);
      }
    }
    this.objs.set(ref, o);
    return ref;
  }

  // --- allocation --------------------------------------------------------

  /** `viaMake`: the same values given to make(), by position (declaration order). */
  allocStruct(type: StructName, init?: Record<string, Scalar | Ref>, viaMake = false): Ref {
    const info = this.schema.byName.get(type)!;
    const ref = viaMake ? info.type.make(...info.fields.map(([f]) => init?.[f] as number | boolean | undefined))
      : init === undefined ? info.type.alloc() : info.type.alloc(init);
    const values: Record<string, Scalar | null> = {};
    for (const [f, kind] of info.fields) {
      if (init && f in init) {
        const v = init[f];
        values[f] = kind === 'ref' ? (v === 0 ? null : (v as number)) : normalize(kind, v);
      } else values[f] = defaultValue(kind);
    }
    return this.add(ref, { kind: 'struct', type, values, init: Object.keys(init ?? {}) });
  }

  allocArray(length: number): Ref {
    return this.add(this.heap.arrays.alloc(length), { kind: 'array', elems: new Array<number | null>(length).fill(null) });
  }

  allocString(s: string): Ref {
    return this.add(this.heap.strings.alloc(s), { kind: 'string', value: s });
  }

  allocBytes(data: Uint8Array | number): Ref {
    const ref = this.heap.bytes.alloc(data);
    const value = typeof data === 'number' ? new Uint8Array(data) : Uint8Array.from(data);
    return this.add(ref, { kind: 'bytes', value, viaCopy: typeof data !== 'number' });
  }

  // --- mutation ----------------------------------------------------------

  setField(ref: Ref, field: string, v: Scalar | Ref): void {
    const o = this.objs.get(ref);
    if (!o || o.kind !== 'struct') throw new Error(`model: setField on ${ref}, not a live struct`);
    const info = this.schema.byName.get(o.type)!;
    const kind = info.fields.find(([f]) => f === field)![1];
    info.type.set[field](ref, v);
    o.values[field] = kind === 'ref' ? (v === 0 ? null : (v as number)) : normalize(kind, v);
  }

  arraySet(ref: Ref, i: number, v: Ref): void {
    const o = this.objs.get(ref);
    if (!o || o.kind !== 'array') throw new Error(`model: arraySet on ${ref}, not a live array`);
    this.heap.arrays.set(ref, i, v);
    o.elems[i] = v === 0 ? null : v;
  }

  bytesSet(ref: Ref, i: number, v: number): void {
    const o = this.objs.get(ref);
    if (!o || o.kind !== 'bytes') throw new Error(`model: bytesSet on ${ref}, not live bytes`);
    this.heap.bytes.set(ref, i, v);
    o.value[i] = v;
  }

  root(ref: Ref): RootHandle {
    const h = this.heap.root(ref);
    this.roots.set(h, ref);
    return h;
  }

  release(h: RootHandle): void {
    h.release();
    this.roots.delete(h);
  }

  rootSet(h: RootHandle, ref: Ref): void {
    h.set(ref);
    this.roots.set(h, ref);
  }

  // --- queries -----------------------------------------------------------

  reachable(): Set<Ref> {
    return reachableInSpec(this.objs, this.roots.values());
  }

  expected(ref: Ref): string {
    return specDescribe(this.objs.get(ref)!, refLabel);
  }

  actual(ref: Ref): string {
    return heapDescribe(this.heap, this.schema, ref, refLabel);
  }

  /** Objects whose heap contents differ from the model (or cannot be read): [ref, expected, actual]. */
  mismatches(refs: Iterable<Ref> = this.objs.keys(), limit = 5): [Ref, string, string][] {
    const out: [Ref, string, string][] = [];
    for (const r of refs) {
      let actual: string;
      try {
        actual = this.actual(r);
      } catch (e) {
        actual = `threw ${(e as Error)?.constructor?.name}(${(e as { code?: string }).code}): ${(e as Error).message}`;
      }
      const expected = this.expected(r);
      if (actual !== expected) {
        out.push([r, expected, actual]);
        if (out.length >= limit) break;
      }
    }
    return out;
  }

  // --- cycles ------------------------------------------------------------

  /** Call right when collect() is called: the fork sees this. */
  beginCycle(): CycleSnapshot {
    const all = new Set(this.objs.keys());
    const live = this.reachable();
    const garbage = new Set([...all].filter((r) => !live.has(r)));
    this.cycle = { all, live, garbage, reused: new Set() };
    return this.cycle;
  }

  /**
   * Call when the cycle's promise resolved: checks the garbage at fork is freed and
   * every other object intact, then drops the garbage from the model.
   */
  endCycle(): CycleReport {
    const c = this.cycle;
    if (!c) throw new Error('model: endCycle without beginCycle');
    this.cycle = null;
    const notFreed: Ref[] = [];
    for (const r of c.garbage) {
      if (c.reused.has(r)) continue;
      if (!isFreed(this.heap, r)) notFreed.push(r);
      this.objs.delete(r);
    }
    return { garbage: c.garbage.size, notFreed, mismatches: this.mismatches(), reused: c.reused.size };
  }

  /**
   * Call when the cycle's promise rejected (an abort): nothing may have been
   * freed. Returns the objects of the fork's snapshot that read as freed and
   * the live objects whose contents differ from the model; the garbage stays
   * in the model for the next cycle.
   */
  abortCycle(): { freed: Ref[]; mismatches: [Ref, string, string][] } {
    const c = this.cycle;
    if (!c) throw new Error('model: abortCycle without beginCycle');
    this.cycle = null;
    if (c.reused.size > 0) throw new Error(`model: ${c.reused.size} slots of an aborted cycle's garbage handed out again`);
    const freed = [...c.all].filter((r) => this.objs.has(r) && isFreed(this.heap, r));
    return { freed, mismatches: this.mismatches() };
  }

  forget(refs: Iterable<Ref>): void {
    for (const r of refs) this.objs.delete(r);
  }

  // --- random mutation ---------------------------------------------------

  /**
   * steps random, valid mutations, synchronously. Targets are only objects that
   * are reachable now or were allocated in this batch (what a mutator can legally
   * hold in locals). Keeps the model around maxObjects objects.
   */
  mutate(rng: Rng, steps: number, maxObjects = 600): void {
    const pool = [...this.reachable()];
    const structsIn = (): Ref[] => pool.filter((r) => this.objs.get(r)?.kind === 'struct');
    const pickOrNull = (): Ref => (pool.length === 0 || rng.chance(0.25) ? 0 : rng.pick(pool));
    /**
     * Store `target` into a reference slot of a pool object, preferring an empty
     * slot (growth) unless `overwrite` (rewiring: moves and cuts); false if none.
     */
    const link = (target: Ref, overwrite = false): boolean => {
      let fallback: (() => void) | null = null;
      for (let attempt = 0; attempt < 12 && pool.length > 0; attempt++) {
        const holder = rng.pick(pool);
        const o = this.objs.get(holder)!;
        let slot: number;
        let store: () => void;
        if (o.kind === 'struct') {
          const rf = this.schema.byName.get(o.type)!.refFields;
          if (rf.length === 0) continue;
          const f = rng.pick(rf);
          slot = (o.values[f] as number | null) ?? 0;
          store = () => this.setField(holder, f, target);
        } else if (o.kind === 'array' && o.elems.length > 0) {
          const i = rng.int(o.elems.length);
          slot = o.elems[i] ?? 0;
          store = () => this.arraySet(holder, i, target);
        } else continue;
        if (overwrite || slot === 0) {
          store();
          return true;
        }
        fallback ??= store;
      }
      if (fallback) {
        fallback();
        return true;
      }
      return false;
    };

    for (let s = 0; s < steps; s++) {
      const crowded = this.objs.size > maxObjects;
      const r = rng.next();
      if (r < 0.35 && !crowded) {
        // allocate a struct, with refs to legal targets
        const type = rng.pick(STRUCT_NAMES);
        const info = this.schema.byName.get(type)!;
        const init: Record<string, Scalar | Ref> = {};
        for (const [f, kind] of info.fields) {
          if (!rng.chance(0.6)) continue;
          init[f] = kind === 'ref' ? pickOrNull() : randomScalar(rng, kind);
        }
        // 30% with no init: the compiled alloc()'s own fast path (src/api/accessors.ts), every field zero.
        const ref = this.allocStruct(type, rng.chance(0.3) ? undefined : init);
        if (rng.chance(0.85)) link(ref);
        pool.push(ref);
      } else if (r < 0.47 && !crowded) {
        const k = rng.int(3);
        const ref =
          k === 0 ? this.allocArray(rng.int(9)) : k === 1 ? this.allocString(randomString(rng, 24)) : this.allocBytes(rng.chance(0.5) ? randomBytes(rng, 48) : rng.int(48));
        if (rng.chance(0.85)) link(ref);
        pool.push(ref);
      } else if (r < (crowded ? 0.65 : 0.57)) {
        // rewire a reference: moves, cuts (creates garbage), cycles
        if (pool.length > 0) link(crowded ? (rng.chance(0.6) ? 0 : rng.pick(pool)) : rng.chance(0.1) ? 0 : rng.pick(pool), true);
      } else if (r < 0.8) {
        const ss = structsIn();
        if (ss.length > 0) {
          const ref = rng.pick(ss);
          const o = this.objs.get(ref)! as Extract<ObjSpec, { kind: 'struct' }>;
          const scalars = this.schema.byName.get(o.type)!.fields.filter(([, k]) => k !== 'ref');
          const [f, kind] = rng.pick(scalars);
          this.setField(ref, f, randomScalar(rng, kind as Exclude<typeof kind, 'ref'>));
        }
      } else if (r < 0.87) {
        const bs = pool.filter((x) => {
          const o = this.objs.get(x)!;
          return o.kind === 'bytes' && o.value.length > 0;
        });
        if (bs.length > 0) {
          const b = rng.pick(bs);
          const o = this.objs.get(b)! as Extract<ObjSpec, { kind: 'bytes' }>;
          this.bytesSet(b, rng.int(o.value.length), rng.int(256));
        }
      } else if (r < 0.93) {
        if (pool.length > 0 && this.roots.size < 8) this.root(rng.pick(pool));
      } else if (r < 0.97) {
        if (this.roots.size > 1 || (this.roots.size === 1 && crowded)) this.release(rng.pick([...this.roots.keys()]));
      } else {
        if (this.roots.size > 0 && pool.length > 0) this.rootSet(rng.pick([...this.roots.keys()]), rng.pick(pool));
      }
      if (this.roots.size === 0 && pool.length > 0) this.root(rng.pick(pool));
    }
  }
}
