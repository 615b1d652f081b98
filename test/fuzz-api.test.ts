/**
 * API fuzzing against a shadow model (property-based).
 *
 * Random sequences of valid and invalid calls — allocation, field and element
 * writes and reads, linking, root/release/set, collect(), forged refs, refs to
 * freed objects, refs into the middle of objects, null and non-numbers, indices
 * out of range, values out of range, strings compared and measured in the heap
 * (strings.equals, strings.length) — are run against a heap and a model of it.
 * For every call the model decides: it must succeed (and then the heap agrees
 * with the model), or it must fail with a ForkGcError whose code is one of those
 * that apply (several may apply at once: any of them is accepted). Nothing else
 * may be thrown, the process must not crash, no call may hang, and a failed call
 * changes nothing (stats().objects and every object's contents still agree).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CycleAbortedError, ForkGcError, type Heap } from '../src/index.js';
import { CHILD_FAULTS, closeHeap, describeError, isFreed, makeHeap, MiB, type Mode, type RootHandle } from './helpers/common.js';
import { STRUCT_NAMES, defineSchema, fieldsOf, type FieldKind, type StructName } from './helpers/graph.js';
import { Shadow } from './helpers/model.js';
import { heapInternals } from '../src/internal.js';
import { SPAN_BITMAP_WORDS, SPAN_GRANULES, SPAN_IN_USE, SPAN_WORDS, SW_STATE } from '../src/memory/layout.js';

const MAX_HEAP = 64 * MiB;
const GRANULES = MAX_HEAP / 16;

// A longer soak, by hand (not in CI): FORKGC_FUZZ_RUNS programs for each of
// the two properties below that take it, for at most FORKGC_FUZZ_SECONDS
// each, e.g. FORKGC_FUZZ_RUNS=5000 FORKGC_FUZZ_SECONDS=600 npx vitest run
// test/fuzz-api.test.ts. fast-check prints the seed and path of a failure.
const SOAK_RUNS = Number(process.env.FORKGC_FUZZ_RUNS ?? 0);
const SOAK_MS = Number(process.env.FORKGC_FUZZ_SECONDS ?? 0) * 1000;
const runs = (ci: number) => (SOAK_RUNS > 0 ? SOAK_RUNS : ci);
const timeLimitMs = SOAK_MS > 0 ? SOAK_MS : 25_000;
const testTimeoutMs = timeLimitMs + 65_000;
/** In a soak, how many programs a property ran (fast-check says nothing of it when all pass). */
const soakReport = (what: string, programs: number) => {
  if (SOAK_RUNS > 0 || SOAK_MS > 0) process.stdout.write(`soak: ${what}: ${programs} programs passed\n`);
};

// --- the generated program -------------------------------------------------

type PickFrom = 'live' | 'dead' | 'forged' | 'offby1' | 'zero' | 'nonnum';
interface Pick {
  from: PickFrom;
  n: number;
}
interface Val {
  valid: boolean;
  n: number;
  pick: Pick;
}
type Op =
  | { t: 'allocStruct'; type: number; fields: { include: boolean; val: Val }[]; noInit: boolean; viaMake: boolean }
  | { t: 'allocArray'; len: number }
  | { t: 'allocBytes'; data: Uint8Array | number }
  | { t: 'allocString'; s: string | number }
  | { t: 'setField'; obj: Pick; field: number; val: Val }
  | { t: 'getField'; obj: Pick; field: number }
  | { t: 'arraySet'; obj: Pick; index: number; val: Pick }
  | { t: 'arrayGet'; obj: Pick; index: number }
  | { t: 'bytesSet'; obj: Pick; index: number; v: unknown }
  | { t: 'bytesGet'; obj: Pick; index: number }
  | { t: 'read'; obj: Pick }
  | { t: 'strCompare'; obj: Pick; s: unknown; how: number }
  | { t: 'root'; obj: Pick }
  | { t: 'release'; h: number }
  | { t: 'rootSet'; h: number; obj: Pick }
  | { t: 'rootGet'; h: number }
  | { t: 'collect' };

const pickArb: fc.Arbitrary<Pick> = fc.record({
  from: fc.oneof(
    { arbitrary: fc.constant<PickFrom>('live'), weight: 16 },
    { arbitrary: fc.constant<PickFrom>('dead'), weight: 2 },
    { arbitrary: fc.constant<PickFrom>('forged'), weight: 1 },
    { arbitrary: fc.constant<PickFrom>('offby1'), weight: 1 },
    { arbitrary: fc.constant<PickFrom>('zero'), weight: 1 },
    { arbitrary: fc.constant<PickFrom>('nonnum'), weight: 1 },
  ),
  n: fc.nat(),
});
const valArb: fc.Arbitrary<Val> = fc.record({
  valid: fc.oneof({ arbitrary: fc.constant(true), weight: 5 }, { arbitrary: fc.constant(false), weight: 1 }),
  n: fc.nat(),
  pick: pickArb,
});
const indexArb = fc.oneof({ arbitrary: fc.integer({ min: 0, max: 14 }), weight: 6 }, { arbitrary: fc.constantFrom(-1, 1000, 2 ** 32), weight: 1 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('allocStruct' as const), type: fc.nat(), fields: fc.array(fc.record({ include: fc.boolean(), val: valArb }), { minLength: 7, maxLength: 7 }), noInit: fc.boolean(), viaMake: fc.boolean() }), weight: 8 },
  { arbitrary: fc.record({ t: fc.constant('allocArray' as const), len: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constantFrom(-1, 1.5, NaN)) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('allocBytes' as const), data: fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 40 }), fc.constant(-1)) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('allocString' as const), s: fc.oneof({ arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }), weight: 9 }, { arbitrary: fc.constant(5), weight: 1 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('setField' as const), obj: pickArb, field: fc.nat(), val: valArb }), weight: 10 },
  { arbitrary: fc.record({ t: fc.constant('getField' as const), obj: pickArb, field: fc.nat() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('arraySet' as const), obj: pickArb, index: indexArb, val: pickArb }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('arrayGet' as const), obj: pickArb, index: indexArb }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('bytesSet' as const), obj: pickArb, index: indexArb, v: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 255 }), weight: 5 }, { arbitrary: fc.constantFrom(256, -1, 'x', null), weight: 1 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('bytesGet' as const), obj: pickArb, index: indexArb }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('read' as const), obj: pickArb }), weight: 3 },
  // strings.equals and strings.length; the string compared with is the object's own (how 0), it with a
  // unit more (1) or less (2), or a random one (3).
  { arbitrary: fc.record({ t: fc.constant('strCompare' as const), obj: pickArb, s: fc.oneof({ arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }), weight: 4 }, { arbitrary: fc.constantFrom(5, null, undefined), weight: 1 }), how: fc.integer({ min: 0, max: 3 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('root' as const), obj: pickArb }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('release' as const), h: fc.nat() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('rootSet' as const), h: fc.nat(), obj: pickArb }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('rootGet' as const), h: fc.nat() }), weight: 1 },
  { arbitrary: fc.constant({ t: 'collect' as const }), weight: 2 },
);

// --- the interpreter -------------------------------------------------------

const ALL_FIELDS: [StructName, string, FieldKind][] = STRUCT_NAMES.flatMap((s) => fieldsOf(s).map(([f, k]) => [s, f, k] as [StructName, string, FieldKind]));
const NON_NUMBERS: unknown[] = ['x', -1, 1.5, NaN, 2 ** 40, null, undefined, {}];
const INVALID_SCALAR: Record<Exclude<FieldKind, 'ref'>, unknown[]> = {
  i32: [2 ** 31, -(2 ** 31) - 1, '7', null, true, {}],
  u32: [-1, 2 ** 32, '7', null, false],
  f64: ['1.5', null, true, {}],
  bool: [1, 0, 'true', null],
};
const ANY = '*'; // any ForkGcError code is acceptable

type Resolved = { cls: 'live'; ref: number } | { cls: 'notobj' | 'null' | 'nonnum'; ref: unknown };

class Run {
  readonly sh: Shadow;
  readonly dead: number[] = [];
  /** Cycles aborted by the injected fault (a run without one must have none). */
  aborts = 0;
  readonly handles: { h: RootHandle; released: boolean }[] = [];
  log: string[] = [];

  constructor(readonly heap: Heap, readonly faulty = false) {
    this.sh = new Shadow(heap, defineSchema(heap));
  }

  liveRefs(): number[] {
    return [...this.sh.objs.keys()];
  }

  resolve(p: Pick, allowZero = true): Resolved {
    const live = this.liveRefs();
    const classify = (r: number): Resolved => (this.sh.objs.has(r) ? { cls: 'live', ref: r } : { cls: 'notobj', ref: r });
    switch (p.from) {
      case 'live':
        return live.length > 0 ? { cls: 'live', ref: live[p.n % live.length] } : classify(1 + (p.n % GRANULES));
      case 'dead':
        return this.dead.length > 0 ? classify(this.dead[p.n % this.dead.length]) : classify(1 + (p.n % GRANULES));
      case 'forged':
        return classify(1 + (p.n % (GRANULES - 1)));
      case 'offby1':
        return live.length > 0 ? classify(live[p.n % live.length] + 1) : classify(1 + (p.n % GRANULES));
      case 'zero':
        return allowZero ? { cls: 'null', ref: 0 } : live.length > 0 ? { cls: 'live', ref: live[p.n % live.length] } : classify(1);
      case 'nonnum':
        return { cls: 'nonnum', ref: NON_NUMBERS[p.n % NON_NUMBERS.length] };
    }
  }

  /** Errors that apply to an object operated upon. */
  targetErrors(t: Resolved): string[] {
    if (t.cls === 'live') return [];
    if (t.cls === 'notobj') return ['ERR_INVALID_REF', 'ERR_STALE_REF'];
    return ['ERR_INVALID_REF'];
  }

  /** Errors that apply to a ref stored somewhere (0 is fine there). */
  refValueErrors(v: Resolved): string[] {
    if (v.cls === 'live' || v.cls === 'null') return [];
    if (v.cls === 'notobj') return ['ERR_INVALID_REF', 'ERR_STALE_REF'];
    return ['ERR_INVALID_REF', 'ERR_FIELD_VALUE'];
  }

  kindOf(ref: number): string {
    const o = this.sh.objs.get(ref)!;
    return o.kind === 'struct' ? o.type : o.kind === 'array' ? 'RefArray' : o.kind === 'string' ? 'String' : 'Bytes';
  }

  scalarValue(kind: Exclude<FieldKind, 'ref'>, v: Val): unknown {
    if (!v.valid) return INVALID_SCALAR[kind][v.n % INVALID_SCALAR[kind].length];
    switch (kind) {
      case 'i32':
        return (v.n * 2654435761) | 0;
      case 'u32':
        return (v.n * 2654435761) >>> 0;
      case 'f64':
        return [0, -0, NaN, Infinity, 1e300, -2.5, v.n / 7][v.n % 7];
      case 'bool':
        return v.n % 2 === 0;
    }
  }

  /**
   * Runs fn, which must throw a ForkGcError with one of `errs` if errs is non-empty
   * (ANY: any code), else must not throw (then `then` runs).
   */
  expectOutcome(what: string, errs: string[], fn: () => unknown, then?: (result: unknown) => void): void {
    const objectsBefore = this.heap.stats().objects;
    let result: unknown;
    let err: unknown;
    let threw = false;
    try {
      result = fn();
    } catch (e) {
      err = e;
      threw = true;
    }
    if (threw && !(err instanceof ForkGcError)) throw new Error(`${what}: threw a non-ForkGcError: ${describeError(err)}\n${(err as Error)?.stack ?? ''}`);
    if (errs.length > 0) {
      if (!threw) throw new Error(`${what}: expected ${errs.join('|')}, but the call succeeded (returned ${String(result)})`);
      const code = (err as { code?: unknown }).code;
      if (!errs.includes(ANY) && !errs.includes(code as string)) throw new Error(`${what}: expected ${errs.join('|')}, got ${describeError(err)}`);
      const after = this.heap.stats().objects;
      if (after !== objectsBefore) throw new Error(`${what}: the failed call changed stats().objects ${objectsBefore} -> ${after}`);
      return;
    }
    if (threw) throw new Error(`${what}: expected success, got ${describeError(err)}`);
    then?.(result);
  }

  checkObject(what: string, ref: number): void {
    const [m] = this.sh.mismatches([ref], 1);
    if (m) throw new Error(`${what}: object ${ref} expected ${m[1]} got ${m[2]}`);
  }

  async step(op: Op): Promise<void> {
    const heap = this.heap;
    const sh = this.sh;
    const what = JSON.stringify(op, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? `u8[${v.length}]` : v));
    this.log.push(what);
    switch (op.t) {
      case 'allocStruct': {
        const type = STRUCT_NAMES[op.type % STRUCT_NAMES.length];
        const init: Record<string, unknown> = {};
        let errs: string[] = [];
        fieldsOf(type).forEach(([f, kind], i) => {
          const { include, val } = op.fields[i] ?? { include: false, val: null };
          if (!include) return;
          if (kind === 'ref') {
            const r = this.resolve(val.pick);
            if (r.ref === undefined) return; // { left: undefined } is a field left out of a Partial init
            init[f] = r.ref;
            errs = errs.concat(this.refValueErrors(r));
          } else {
            init[f] = this.scalarValue(kind, val);
            if (!val.valid) errs.push('ERR_FIELD_VALUE');
          }
        });
        const useInit = !op.noInit || errs.length > 0;
        if (errs.length > 0) {
          const T = sh.schema.byName.get(type)!.type;
          const byPosition = () => fieldsOf(type).map(([f]) => init[f] as number | boolean | undefined);
          this.expectOutcome(what, errs, () => (op.viaMake ? T.make(...byPosition()) : T.alloc(init)));
        } else {
          let ref = 0;
          this.expectOutcome(what, [], () => (ref = sh.allocStruct(type, useInit ? (init as Record<string, number | boolean>) : undefined, op.viaMake)));
          this.noteAllocated(ref);
          this.checkObject(what, ref);
        }
        break;
      }
      case 'allocArray':
      case 'allocBytes':
      case 'allocString': {
        const valid =
          op.t === 'allocArray' ? Number.isInteger(op.len) && op.len >= 0 : op.t === 'allocBytes' ? typeof op.data !== 'number' || op.data >= 0 : typeof op.s === 'string';
        if (!valid) {
          const fn = op.t === 'allocArray' ? () => heap.arrays.alloc(op.len) : op.t === 'allocBytes' ? () => heap.bytes.alloc(op.data) : () => heap.strings.alloc(op.s as string);
          this.expectOutcome(what, [ANY], fn);
        } else {
          let ref = 0;
          this.expectOutcome(what, [], () => {
            ref = op.t === 'allocArray' ? sh.allocArray(op.len) : op.t === 'allocBytes' ? sh.allocBytes(op.data) : sh.allocString(op.s as string);
          });
          this.noteAllocated(ref);
          this.checkObject(what, ref);
        }
        break;
      }
      case 'setField':
      case 'getField': {
        const [type, field, kind] = ALL_FIELDS[op.field % ALL_FIELDS.length];
        const T = sh.schema.byName.get(type)!.type;
        const target = this.resolve(op.obj);
        let errs = this.targetErrors(target);
        if (target.cls === 'live' && this.kindOf(target.ref) !== type) errs = ['ERR_WRONG_TYPE'];
        if (op.t === 'getField') {
          this.expectOutcome(what, errs, () => T.get[field](target.ref as number), (v) => {
            const o = sh.objs.get(target.ref as number)!;
            const exp = o.kind === 'struct' ? o.values[field] : undefined;
            const expected = kind === 'ref' ? (exp === null ? 0 : exp) : exp;
            if (!Object.is(v, expected)) throw new Error(`${what}: read ${String(v)}, model says ${String(expected)}`);
          });
          break;
        }
        let value: unknown;
        if (kind === 'ref') {
          const r = this.resolve(op.val.pick);
          value = r.ref;
          errs = errs.concat(this.refValueErrors(r));
        } else {
          value = this.scalarValue(kind, op.val);
          if (!op.val.valid) errs = errs.concat(['ERR_FIELD_VALUE']);
        }
        if (errs.length > 0) {
          this.expectOutcome(what, errs, () => T.set[field](target.ref as number, value));
          if (target.cls === 'live') this.checkObject(what, target.ref);
        } else {
          this.expectOutcome(what, [], () => sh.setField(target.ref as number, field, value as number | boolean));
          this.checkObject(what, target.ref as number);
        }
        break;
      }
      case 'arraySet':
      case 'arrayGet':
      case 'bytesSet':
      case 'bytesGet': {
        const isArray = op.t === 'arraySet' || op.t === 'arrayGet';
        const target = this.resolve(op.obj);
        let errs = this.targetErrors(target);
        if (target.cls === 'live') {
          const o = sh.objs.get(target.ref)!;
          if (isArray ? o.kind !== 'array' : o.kind !== 'bytes') errs = ['ERR_WRONG_TYPE'];
          else {
            const len = o.kind === 'array' ? o.elems.length : o.kind === 'bytes' ? o.value.length : 0;
            if (!(op.index >= 0 && op.index < len)) errs = ['ERR_INDEX_OUT_OF_BOUNDS'];
          }
        }
        const ref = target.ref as number;
        if (op.t === 'arrayGet' || op.t === 'bytesGet') {
          this.expectOutcome(what, errs, () => (isArray ? heap.arrays.get(ref, op.index) : heap.bytes.get(ref, op.index)), (v) => {
            const o = sh.objs.get(ref)!;
            const expected = o.kind === 'array' ? (o.elems[op.index] ?? 0) : o.kind === 'bytes' ? o.value[op.index] : undefined;
            if (v !== expected) throw new Error(`${what}: read ${String(v)}, model says ${String(expected)}`);
          });
          break;
        }
        let value: unknown;
        if (op.t === 'arraySet') {
          const r = this.resolve(op.val);
          value = r.ref;
          errs = errs.concat(this.refValueErrors(r));
        } else {
          value = op.v;
          if (!(typeof op.v === 'number' && Number.isInteger(op.v) && op.v >= 0 && op.v <= 255)) errs = errs.concat(['ERR_FIELD_VALUE']);
        }
        if (errs.length > 0) {
          this.expectOutcome(what, errs, () => (isArray ? heap.arrays.set(ref, op.index, value as number) : heap.bytes.set(ref, op.index, value as number)));
          if (target.cls === 'live') this.checkObject(what, ref);
        } else {
          this.expectOutcome(what, [], () => (isArray ? sh.arraySet(ref, op.index, value as number) : sh.bytesSet(ref, op.index, value as number)));
          this.checkObject(what, ref);
        }
        break;
      }
      case 'read': {
        const target = this.resolve(op.obj);
        this.expectOutcome(what, this.targetErrors(target), () => heap.typeOf(target.ref as number), (t) => {
          const ref = target.ref as number;
          if (t !== this.kindOf(ref)) throw new Error(`${what}: typeOf ${String(t)}, model says ${this.kindOf(ref)}`);
          this.checkObject(what, ref);
        });
        break;
      }
      case 'strCompare': {
        // A live pick with an even n takes a live string (most live objects are not strings).
        const strings = op.obj.from === 'live' && op.obj.n % 2 === 0 ? this.liveRefs().filter((r) => sh.objs.get(r)!.kind === 'string') : [];
        const target: Resolved = strings.length > 0 ? { cls: 'live', ref: strings[(op.obj.n >>> 1) % strings.length] } : this.resolve(op.obj);
        let errs = this.targetErrors(target);
        if (target.cls === 'live' && this.kindOf(target.ref) !== 'String') errs = ['ERR_WRONG_TYPE'];
        const o = target.cls === 'live' ? sh.objs.get(target.ref) : undefined;
        const own = o?.kind === 'string' ? (o.value as string) : undefined;
        const s = own === undefined || op.how === 3 ? op.s : op.how === 0 ? own : op.how === 1 ? `${own}x` : own.slice(0, -1);
        const ref = target.ref as number;
        this.expectOutcome(`${what} length`, errs, () => heap.strings.length(ref), (n) => {
          if (n !== own!.length) throw new Error(`${what}: length ${String(n)}, model says ${own!.length}`);
        });
        if (errs.length === 0 && typeof s !== 'string') errs = ['ERR_FIELD_VALUE'];
        this.expectOutcome(`${what} equals`, errs, () => heap.strings.equals(ref, s as string), (eq) => {
          if (eq !== (own === s)) throw new Error(`${what}: equals(${JSON.stringify(s)}) ${String(eq)}, model holds ${JSON.stringify(own)}`);
        });
        break;
      }
      case 'root': {
        const target = this.resolve(op.obj, false);
        const errs = this.targetErrors(target);
        if (errs.length > 0) this.expectOutcome(what, errs, () => heap.root(target.ref as number));
        else this.expectOutcome(what, [], () => this.handles.push({ h: sh.root(target.ref as number), released: false }));
        break;
      }
      case 'release':
      case 'rootGet':
      case 'rootSet': {
        if (this.handles.length === 0) break;
        const e = this.handles[op.h % this.handles.length];
        let errs = e.released ? ['ERR_ROOT_RELEASED'] : [];
        if (op.t === 'release') {
          if (errs.length > 0) this.expectOutcome(what, errs, () => e.h.release());
          else this.expectOutcome(what, [], () => sh.release(e.h), () => (e.released = true));
        } else if (op.t === 'rootGet') {
          this.expectOutcome(what, errs, () => e.h.get(), (v) => {
            if (v !== sh.roots.get(e.h)) throw new Error(`${what}: handle holds ${String(v)}, model says ${sh.roots.get(e.h)}`);
          });
        } else {
          const target = this.resolve(op.obj, false);
          errs = errs.concat(this.refValueErrors(target));
          if (errs.length > 0) this.expectOutcome(what, errs, () => e.h.set(target.ref as number));
          else this.expectOutcome(what, [], () => sh.rootSet(e.h, target.ref as number));
        }
        break;
      }
      case 'collect': {
        const snap = sh.beginCycle();
        let c;
        try {
          c = await heap.collect();
        } catch (err) {
          // Only a fault the run injected may abort a cycle, and an abort frees nothing.
          if (!this.faulty || !(err instanceof CycleAbortedError)) throw err;
          this.aborts++;
          const r = sh.abortCycle();
          if (r.freed.length > 0) throw new Error(`${what}: aborted (${err.reason}), yet ${r.freed.length} objects freed, e.g. ${r.freed[0]}`);
          if (r.mismatches.length > 0) throw new Error(`${what}: aborted, live object ${r.mismatches[0][0]} expected ${r.mismatches[0][1]} got ${r.mismatches[0][2]}`);
          break;
        }
        const r = sh.endCycle();
        if (r.notFreed.length > 0) throw new Error(`${what}: ${r.notFreed.length} unreachable objects not freed, e.g. ${r.notFreed[0]}`);
        if (r.mismatches.length > 0) throw new Error(`${what}: live object ${r.mismatches[0][0]} expected ${r.mismatches[0][1]} got ${r.mismatches[0][2]}`);
        if (c.objectsFreed !== r.garbage) throw new Error(`${what}: objectsFreed ${c.objectsFreed}, model says ${r.garbage}`);
        if (c.objectsMarked !== snap.live.size) throw new Error(`${what}: objectsMarked ${c.objectsMarked}, model says ${snap.live.size}`);
        this.dead.push(...snap.garbage);
        break;
      }
    }
    const objects = heap.stats().objects;
    if (objects !== sh.objs.size) throw new Error(`after ${what}: stats().objects ${objects}, model has ${sh.objs.size}`);
  }

  noteAllocated(ref: number): void {
    const i = this.dead.indexOf(ref);
    if (i >= 0) this.dead.splice(i, 1);
  }

  finalCheck(): void {
    const m = this.sh.mismatches();
    if (m.length > 0) throw new Error(`final: object ${m[0][0]} expected ${m[0][1]} got ${m[0][2]}`);
    for (const d of this.dead) if (!isFreed(this.heap, d)) throw new Error(`final: freed ${d} reads as live (${this.heap.typeOf(d)})`);
    const stray = allocBitsOutsideObjects(this.heap);
    if (stray.length > 0) throw new Error(`final: allocation bits set outside spans in use or above the top: granules ${stray.join(', ')}`);
  }
}

/**
 * Granules (at most 5) whose allocation bit is set although they lie in
 * span 0, at or above the allocator's top, or in a span not in use. The
 * accessors' fast checks rely on there being none (src/api/accessors.ts):
 * the allocation bit is what keeps them inside the heap.
 */
function allocBitsOutsideObjects(heap: Heap): number[] {
  const { views, allocator } = heapInternals(heap);
  const top = allocator.topGranule;
  const out: number[] = [];
  for (let w = 0; w < views.allocBits.length && out.length < 5; w++) {
    const bits = views.allocBits[w];
    if (bits === 0) continue;
    const s = Math.floor(w / SPAN_BITMAP_WORDS);
    const g = w * 32 + (31 - Math.clz32(bits & -bits));
    if (s === 0 || g >= top || s * SPAN_GRANULES >= top || views.spans[s * SPAN_WORDS + SW_STATE] !== SPAN_IN_USE) out.push(g);
  }
  return out;
}

/** Runs `ops` and a last cycle on `heap`, checks everything against the model, and closes the heap. */
async function runProgram(heap: Heap, ops: Op[], faulty = false): Promise<Run> {
  const run = new Run(heap, faulty);
  try {
    for (const op of ops) await run.step(op);
    // a last cycle, and everything agrees
    await run.step({ t: 'collect' });
    run.finalCheck();
  } finally {
    await closeHeap(heap);
  }
  return run;
}

describe('fuzz: random API call sequences agree with the shadow model, with only typed errors', () => {
  it(
    'valid and invalid calls, forged/stale/interior refs, collects — in both modes, fork mode with and without its choice of marker',
    async () => {
      let programs = 0;
      await fc.assert(
        // A third of the fork-mode programs let the heap mark in-process
        // after its first cycle (a budget of 50 ms: these live sets always
        // fit it), so both markers meet the same random calls.
        fc.asyncProperty(fc.constantFrom<Mode>('fork', 'stw'), fc.integer({ min: 0, max: 2 }), fc.array(opArb, { minLength: 10, maxLength: 150 }), async (mode, choice, ops) => {
          programs++;
          const heap = makeHeap({ mode, maxHeap: MAX_HEAP, ...(choice === 0 ? { inProcessMarkUs: 50_000 } : {}) });
          await runProgram(heap, ops);
          // a closed heap refuses politely
          let e: unknown;
          try {
            heap.typeOf(1);
          } catch (err) {
            e = err;
          }
          if (!(e instanceof ForkGcError) || (e as { code?: string }).code !== 'ERR_HEAP_CLOSED') throw new Error(`closed heap: ${describeError(e)}`);
        }),
        { numRuns: runs(150), interruptAfterTimeLimit: timeLimitMs },
      );
      soakReport('calls in both modes', programs);
    },
    testTimeoutMs,
  );

  // The same programs with a child fault injected into some of their cycles
  // (fork mode): a cycle that completes agrees with the model as above; one
  // that aborts freed nothing and changed nothing (CHILD_FAULTS: every
  // child fault that ends a cycle whole).
  it(
    'with child faults injected into random cycles, a completed cycle agrees with the model and an aborted one frees nothing',
    async () => {
      let aborts = 0;
      let programs = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...CHILD_FAULTS), fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
          fc.array(opArb, { minLength: 10, maxLength: 120 }),
          async (kind, cycles, ops) => {
            programs++;
            const heap = makeHeap({
              mode: 'fork', maxHeap: MAX_HEAP, childTimeoutMs: 200,
              faultInjectionForTesting: { kind, arg: 20, cycles: (id) => cycles.includes(id) },
            });
            aborts += (await runProgram(heap, ops, true)).aborts;
          }),
        { numRuns: runs(60), interruptAfterTimeLimit: timeLimitMs },
      );
      soakReport('child faults', programs);
      expect(aborts, 'some cycles were aborted (the faults took effect)').toBeGreaterThan(0);
    },
    testTimeoutMs,
  );

  it(
    'a dense program of only forged and interior refs never crashes the process',
    async () => {
      const heap = makeHeap({ mode: 'fork' });
      const run = new Run(heap);
      // some objects of every kind, then hammer every granule of the first spans and random far ones
      for (let i = 0; i < 200; i++) {
        await run.step({ t: 'allocStruct', type: i, fields: [], noInit: true, viaMake: i % 2 === 1 });
        if (i % 4 === 0) await run.step({ t: 'allocArray', len: i % 13 });
        if (i % 5 === 0) await run.step({ t: 'allocString', s: 'é'.repeat(i % 17) });
        if (i % 6 === 0) await run.step({ t: 'allocBytes', data: i % 41 });
      }
      const live = new Set(run.sh.objs.keys());
      const maxLive = Math.max(...live);
      const probes: number[] = [];
      for (let g = 1; g <= maxLive + 64; g++) probes.push(g);
      for (let k = 0; k < 2000; k++) probes.push(1 + ((k * 2654435761) >>> 0) % (GRANULES - 1));
      for (const g of probes) {
        let t: string | undefined;
        try {
          t = heap.typeOf(g);
        } catch (e) {
          expect(e, describeError(e)).toBeInstanceOf(ForkGcError);
          expect(['ERR_INVALID_REF', 'ERR_STALE_REF']).toContain((e as { code: string }).code);
          expect(live.has(g), `live object ${g} rejected: ${describeError(e)}`).toBe(false);
          continue;
        }
        expect(live.has(g), `granule ${g} accepted as a ${t} but it is not an object start`).toBe(true);
        expect(t).toBe(run.kindOf(g));
      }
      run.finalCheck();
    },
    60_000,
  );
});
