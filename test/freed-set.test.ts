/**
 * The freed set is exactly the unreachable set (invariants 1, 3's "sweeps only
 * what the bitmap says", 5 "one marker").
 *
 * A seeded random graph is built, object for object, into a fork-mode heap and an
 * STW heap. The oracle walks the heap from the roots; then one cycle must
 *   - keep every reachable object with the exact contents it was built with,
 *   - free every unreachable object (access -> ERR_STALE_REF / ERR_INVALID_REF),
 *   - report objectsMarked = |reachable| and objectsFreed = |unreachable|,
 * and both modes must free the same objects (by spec index).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Heap } from '../src/index.js';
import { closeHeapsAfterEach, closeHeap, isFreed, makeHeap, typeOfError, type CycleStats, type HeapOptions, type Mode } from './helpers/common.js';
import { buildGraph, defaultParams, defineSchema, genGraphSpec, graphParamsArb, type BuiltGraph, type GraphParams, type GraphSpec, type Schema } from './helpers/graph.js';
import { heapInternals } from '../src/internal.js';
import { objectBytes } from '../src/memory/header.js';
import { LARGE_CLASS, SIZE_CLASSES, SPAN_BYTES, sizeClassOf } from '../src/memory/layout.js';
import { heapDescribe, indexLabel, indexMap, reachableInHeap, reachableInSpec, refToIndexLabel, specDescribe } from './helpers/oracle.js';

closeHeapsAfterEach();

interface Outcome {
  mode: Mode;
  stats: CycleStats;
  /** spec indices freed by the cycle */
  freed: number[];
}

function firstDifferences(heap: Heap, schema: Schema, g: BuiltGraph, indices: Iterable<number>, limit = 5): string[] {
  const label = refToIndexLabel(g.indexOf);
  const out: string[] = [];
  for (const i of indices) {
    let actual: string;
    try {
      actual = heapDescribe(heap, schema, g.refs[i], label);
    } catch (e) {
      actual = `threw ${(e as Error).constructor.name}(${(e as { code?: string }).code}): ${(e as Error).message}`;
    }
    const expected = specDescribe(g.spec.objects[i], indexLabel);
    if (actual !== expected) out.push(`#${i} (ref ${g.refs[i]}): expected ${expected.slice(0, 200)} got ${actual.slice(0, 200)}`);
    if (out.length >= limit) break;
  }
  return out;
}

/** Builds spec into a fresh heap, collects once, checks everything; returns what was freed. */
async function buildCollectCheck(spec: GraphSpec, mode: Mode, extra: HeapOptions = {}): Promise<Outcome> {
  const heap = makeHeap({ mode, maxHeap: '64MiB', auto: false, ...extra });
  try {
    const schema = defineSchema(heap);
    const g = buildGraph(heap, schema, spec);
    const n = spec.objects.length;
    const all = [...Array(n).keys()];

    // sanity of the build itself: every object reads back as specified
    expect(firstDifferences(heap, schema, g, all), 'contents right after the build').toEqual([]);
    expect(heap.stats().objects, 'stats().objects after the build').toBe(n);

    // the oracle, through the heap, agrees with the spec's own reachability
    const reachRefs = reachableInHeap(heap, schema, g.handles.map((h) => h.get()));
    const reach = reachableInSpec(indexMap(spec.objects), spec.roots);
    expect(new Set([...reachRefs].map((r) => g.indexOf.get(r)))).toEqual(reach);
    const unreachable = all.filter((i) => !reach.has(i));
    // a graph without live or without dead objects would prove nothing
    expect(reach.size).toBeGreaterThan(0);
    expect(unreachable.length).toBeGreaterThan(0);

    const liveBytesBefore = heap.stats().liveBytes;
    // Live bytes count what objects occupy: their slot (size class), or whole
    // spans for a large object (src/collector/accounting.ts).
    const core = heapInternals(heap);
    const occupied = (i: number) => {
      const b = objectBytes(core.views, core.refs.any(g.refs[i]));
      const cls = sizeClassOf(b);
      return cls < LARGE_CLASS ? SIZE_CLASSES[cls] : Math.ceil(b / SPAN_BYTES) * SPAN_BYTES;
    };
    const occupiedByReachable = [...reach].reduce((n, i) => n + occupied(i), 0);
    const ownBytesOfReachable = [...reach].reduce((n, i) => n + objectBytes(core.views, core.refs.any(g.refs[i])), 0);
    const c = await heap.collect();

    expect(c.mode).toBe(mode);
    expect(c.trigger).toBe('explicit');
    // every reachable object intact
    expect(firstDifferences(heap, schema, g, reach), 'reachable objects after the cycle').toEqual([]);
    // every unreachable object freed
    const notFreed = unreachable.filter((i) => !isFreed(heap, g.refs[i]));
    expect(
      notFreed.slice(0, 5).map((i) => `#${i} ref ${g.refs[i]} ${specDescribe(spec.objects[i], indexLabel).slice(0, 80)} typeOf -> ${typeOfError(heap, g.refs[i]) ?? heap.typeOf(g.refs[i])}`),
      `${notFreed.length} unreachable objects were not freed`,
    ).toEqual([]);
    // a typed accessor on a freed struct fails too, not just typeOf
    for (const i of unreachable.slice(0, 50)) {
      const o = spec.objects[i];
      if (o.kind !== 'struct') continue;
      const info = schema.byName.get(o.type)!;
      let code: string | undefined;
      try {
        info.type.get[info.fields[0][0]](g.refs[i]);
      } catch (e) {
        code = (e as { code?: string }).code;
      }
      expect(['ERR_STALE_REF', 'ERR_INVALID_REF'], `typed read of freed #${i}`).toContain(code);
      expect(info.type.is(g.refs[i]), `${o.type}.is(freed #${i})`).toBe(false);
    }
    // the cycle's figures
    expect(c.objectsMarked, 'objectsMarked').toBe(reach.size);
    expect(c.objectsFreed, 'objectsFreed').toBe(unreachable.length);
    expect(c.bytesFreed).toBeGreaterThan(0);
    expect(c.bytesMarked).toBeGreaterThan(0);
    const st = heap.stats();
    expect(st.objects, 'stats().objects after the cycle').toBe(reach.size);
    expect(st.cycles).toBe(1);
    expect(st.abortedCycles).toBe(0);
    if (mode === 'fork') {
      expect(c.childPid).toBeGreaterThan(0);
      expect(c.bitmapBytes).toBeGreaterThan(0);
    } else {
      expect(c.childPid).toBe(0);
      expect(c.bitmapBytes).toBe(0);
    }

    // garbage is stable: a second cycle finds nothing more to free and keeps everything
    const c2 = await heap.collect();
    expect(c2.objectsFreed, 'second cycle frees nothing').toBe(0);
    expect(c2.objectsMarked).toBe(reach.size);
    expect(firstDifferences(heap, schema, g, reach), 'reachable objects after the second cycle').toEqual([]);

    // byte accounting (last, so that a unit mismatch does not hide the checks above)
    expect(c.liveBytesAfter + c.bytesFreed, 'liveBytesAfter + bytesFreed = stats().liveBytes before the cycle').toBe(liveBytesBefore);
    expect(c.liveBytesAfter, 'liveBytesAfter = the slots of the reachable objects (nothing allocated during the cycle)').toBe(occupiedByReachable);
    expect(c.bytesMarked, 'bytesMarked = the reachable objects\' own sizes (the marker\'s unit)').toBe(ownBytesOfReachable);
    expect(st.liveBytes, 'stats().liveBytes = liveBytesAfter').toBe(c.liveBytesAfter);

    return { mode, stats: c, freed: unreachable.filter((i) => isFreed(heap, g.refs[i])) };
  } finally {
    await closeHeap(heap);
  }
}

async function bothModesAgree(spec: GraphSpec, extra: HeapOptions = {}): Promise<void> {
  const f = await buildCollectCheck(spec, 'fork', extra);
  const s = await buildCollectCheck(spec, 'stw', extra);
  expect(f.freed).toEqual(s.freed);
  expect(f.stats.objectsMarked).toBe(s.stats.objectsMarked);
  expect(f.stats.objectsFreed).toBe(s.stats.objectsFreed);
  expect(f.stats.bytesFreed).toBe(s.stats.bytesFreed);
}

describe('invariant: the freed set is exactly the unreachable set', () => {
  it.each([1, 2, 3, 4])(
    'seed %i: fork and stw free exactly the oracle-unreachable objects, and the same ones',
    async (seed) => {
      await bothModesAgree(genGraphSpec(defaultParams(seed, 2500)));
    },
    60_000,
  );

  it(
    'property: for random graphs both modes free exactly the unreachable set (fast-check)',
    async () => {
      await fc.assert(
        fc.asyncProperty(graphParamsArb({ minObjects: 50, maxObjects: 2500 }), async (p: GraphParams) => {
          await bothModesAgree(genGraphSpec(p));
        }),
        { numRuns: 15 },
      );
    },
    120_000,
  );

  it(
    'a tiny mark stack (overflow path) marks the same set: deep chain and wide arrays',
    async () => {
      const p: GraphParams = { seed: 77, objects: 1500, chain: 3000, rootFraction: 0.6, clusterSize: 200 };
      const f = await buildCollectCheck(genGraphSpec(p), 'fork', { markStackEntries: 4 });
      const s = await buildCollectCheck(genGraphSpec(p), 'stw', { markStackEntries: 4 });
      expect(f.freed).toEqual(s.freed);
      // The overflow path is what this test is about: edges queued past the
      // stack are marked at once and the heap rescanned (native/marker.cc).
      expect(f.stats.overflowRescans).toBeGreaterThan(0);
      expect(s.stats.overflowRescans).toBeGreaterThan(0);
    },
    60_000,
  );

  it(
    'property: with a mark stack of 1-8 entries random graphs free exactly the unreachable set (fast-check)',
    async () => {
      // (The 32 edges in the marker's prefetch ring are off the stack, so a
      // small random graph may never fill it; the test above always does.)
      await fc.assert(
        fc.asyncProperty(graphParamsArb({ minObjects: 50, maxObjects: 1500 }), fc.integer({ min: 1, max: 8 }),
          async (p: GraphParams, entries: number) => {
            const f = await buildCollectCheck(genGraphSpec(p), 'fork', { markStackEntries: entries });
            const s = await buildCollectCheck(genGraphSpec(p), 'stw', { markStackEntries: entries });
            expect(f.freed).toEqual(s.freed);
          }),
        { numRuns: 12 },
      );
    },
    120_000,
  );

  it(
    'with transparent huge pages on the arena, both modes free the same exact set',
    async () => {
      await bothModesAgree(genGraphSpec(defaultParams(5, 2000)), { hugePages: true });
    },
    60_000,
  );

  it(
    'two fork-mode heaps collected at the same time each free exactly their own unreachable set',
    async () => {
      const specs = [genGraphSpec(defaultParams(31, 1500)), genGraphSpec(defaultParams(32, 1500))];
      const heaps = specs.map(() => makeHeap({ mode: 'fork' }));
      const schemas = heaps.map((h) => defineSchema(h));
      const graphs = specs.map((spec, k) => buildGraph(heaps[k], schemas[k], spec));
      const reach = specs.map((spec) => reachableInSpec(indexMap(spec.objects), spec.roots));
      const cs = await Promise.all(heaps.map((h) => h.collect()));
      for (let k = 0; k < 2; k++) {
        const n = specs[k].objects.length;
        expect(cs[k].objectsMarked, `heap ${k}`).toBe(reach[k].size);
        expect(cs[k].objectsFreed, `heap ${k}`).toBe(n - reach[k].size);
        expect(firstDifferences(heaps[k], schemas[k], graphs[k], reach[k]), `heap ${k}`).toEqual([]);
        const notFreed = [...specs[k].objects.keys()].filter((i) => !reach[k].has(i) && !isFreed(heaps[k], graphs[k].refs[i]));
        expect(notFreed.length, `heap ${k}: unreachable objects not freed`).toBe(0);
      }
      expect(cs[0].childPid).not.toBe(cs[1].childPid);
    },
    60_000,
  );

  it(
    'a graph where everything is garbage: everything is freed',
    async () => {
      const spec = genGraphSpec(defaultParams(9, 800));
      spec.roots = [];
      for (const mode of ['fork', 'stw'] as const) {
        const heap = makeHeap({ mode });
        const schema = defineSchema(heap);
        const g = buildGraph(heap, schema, spec);
        const c = await heap.collect();
        expect(c.objectsMarked).toBe(0);
        expect(c.objectsFreed).toBe(spec.objects.length);
        expect(g.refs.filter((r) => !isFreed(heap, r))).toEqual([]);
        expect(heap.stats().objects).toBe(0);
        expect(heap.stats().liveBytes).toBe(0);
      }
    },
    60_000,
  );

  it(
    'a graph where everything is rooted: nothing is freed',
    async () => {
      const spec = genGraphSpec(defaultParams(10, 800));
      spec.roots = [...spec.objects.keys()];
      for (const mode of ['fork', 'stw'] as const) {
        const heap = makeHeap({ mode });
        const schema = defineSchema(heap);
        const g = buildGraph(heap, schema, spec);
        const c = await heap.collect();
        expect(c.objectsFreed).toBe(0);
        expect(c.bytesFreed).toBe(0);
        expect(c.objectsMarked).toBe(spec.objects.length);
        expect(firstDifferences(heap, schema, g, spec.objects.keys())).toEqual([]);
      }
    },
    60_000,
  );
});
