/**
 * pause-scaling: how the collector's pauses grow with the live heap.
 *
 * A live set of `liveMiB` MiB is built from binary trees of depth 10 (2047 nodes
 * each) hanging off one rooted RefArray spine, with automatic cycles off. Then
 * `cycles` explicit cycles are measured (after one warm-up cycle) while the
 * mutator keeps working: it walks random root-to-leaf paths and writes the leaf's
 * f64 (scattered writes: copy-on-write faults in fork mode), replaces a chunk now
 * and then and allocates a little garbage (within a per-cycle budget, see
 * churnBudgetNodes), ticking the meter per operation and yielding every ~2 ms.
 *
 * A second 1 GiB case gives the mutator `betweenMs` of the same scattered
 * writes between two cycles (no allocation, no child), as a paced heap would:
 * at gcPercent 100 the next cycle waits for about the live size in new
 * allocation. That is the time the heap's huge-page restore thread
 * (native/huge_page_restore.cc) needs to merge back the 2 MiB pages the
 * writes split while the child shared them; back to back it gets none.
 *
 * Figures per cycle (median and max over the measured cycles): the fork pause
 * (CycleStats.pauseUs in fork mode), the child's marking time, the stop-the-world
 * pause (pauseUs in stw mode), bitmap bytes piped, copy-on-write bytes (cowBytes,
 * when the library reports it) and marking ns per object.
 *
 * v8: the same trees as plain objects until heapUsed reaches the target; the same
 * mutator loop runs for a fixed time while V8's own gc entries are recorded, then
 * three forced full collections (global.gc, --expose-gc) give the v8 "stw" figure.
 *
 *   PNode | left: ref | right: ref | value: i32 | w: f64 |
 */
import { performance } from 'node:perf_hooks';
import { mulberry32 } from '../lib/rng.js';
import { smapsRollup } from '../lib/proc.js';
import { percentileOf, round } from '../lib/histogram.js';
import type { CycleStats, Ref } from '../lib/forkgc.js';
import { mib, needHeap, type RunContext, type SystemSpec, type Workload, type WorkloadResult } from './types.js';

export interface PauseScalingParams extends Record<string, number> {
  liveMiB: number;
  cycles: number;
  /** Mutator time between cycles (scattered writes only), ms; 0: back to back. */
  betweenMs: number;
}

const CHUNK_DEPTH = 10;
const CHUNK_NODES = 2 ** (CHUNK_DEPTH + 1) - 1;
const MAX_HEAP_MIB = 4096;

/** Chance per mutator op of replacing a whole chunk (2047 nodes) with a new one. */
const CHURN = 0.02;

/**
 * Nodes the mutator may allocate per cycle (v8: per measured phase): live/16, at
 * most 32 MiB of 32-byte nodes. Past it, the mutator only reads and writes, so a
 * slow cycle cannot run the heap out of room and every size sees similar churn.
 */
function churnBudgetNodes(p: PauseScalingParams): number {
  return Math.floor(Math.min(mib(p.liveMiB) / 16, mib(32)) / 32);
}

function maxHeapMiB(p: PauseScalingParams): number {
  return Math.min(MAX_HEAP_MIB, Math.ceil(p.liveMiB * 1.5 + 128));
}

// ---- plain JavaScript objects ------------------------------------------------

class PNode {
  left: PNode | null = null;
  right: PNode | null = null;
  value = 0;
  w = 0;
}

async function plain(ctx: RunContext<PauseScalingParams>): Promise<WorkloadResult> {
  const meter = ctx.meter;
  const rnd = mulberry32(7);
  const target = mib(ctx.params.liveMiB);
  const build = (d: number): PNode => {
    const n = new PNode();
    if (d > 0) {
      n.left = build(d - 1);
      n.right = build(d - 1);
    }
    return n;
  };
  const spine: PNode[] = [];
  meter.setup();
  while (process.memoryUsage().heapUsed < target) {
    for (let i = 0; i < 16; i++) spine.push(build(CHUNK_DEPTH));
    meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) ctx.unmeasured(gc);
  const liveBytes = process.memoryUsage().heapUsed;

  let budget = 0;
  const mutate = () => {
    let n = spine[Math.floor(rnd() * spine.length)];
    for (let d = 0; d < CHUNK_DEPTH; d++) n = (rnd() < 0.5 ? n.left : n.right)!;
    n.w += 1;
    if (budget > 0 && rnd() < CHURN) {
      spine[Math.floor(rnd() * spine.length)] = build(CHUNK_DEPTH);
      budget -= CHUNK_NODES + 15;
    }
    if (budget > 0) {
      build(3);
      budget -= 15;
    }
  };
  meter.begin();
  const t0 = performance.now();
  const mutateMs = Math.min(2000, 300 + ctx.params.liveMiB);
  budget = churnBudgetNodes(ctx.params);
  while (performance.now() - t0 < mutateMs) {
    mutate();
    meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  meter.end();
  const fullGcMs: number[] = [];
  if (gc) {
    for (let i = 0; i < ctx.params.cycles; i++) {
      fullGcMs.push(ctx.unmeasured(gc));
      await meter.yield();
    }
  }
  return {
    verified: null,
    extra: {
      liveBytes,
      objects: spine.length * CHUNK_NODES,
      stwPauseMs: fullGcMs.length ? round(percentileOf(fullGcMs, 50), 3) : null,
      stwPauseMaxMs: fullGcMs.length ? round(Math.max(...fullGcMs), 3) : null,
      forkPauseMs: null,
      childMarkMs: null,
      bitmapBytes: null,
      cowBytes: null,
    },
  };
}

// ---- forkgc -------------------------------------------------------------------

async function forkgc(ctx: RunContext<PauseScalingParams>): Promise<WorkloadResult> {
  const heap = needHeap(ctx);
  const meter = ctx.meter;
  const rnd = mulberry32(7);
  const Node = heap.defineStruct('PNode', { left: 'ref', right: 'ref', value: 'i32', w: 'f64' });
  const G = Node.get;
  const S = Node.set;
  const target = mib(ctx.params.liveMiB);
  const chunkBytes = CHUNK_NODES * Node.size;
  const maxChunks = Math.ceil(target / chunkBytes);
  const spineRoot = heap.root(heap.arrays.alloc(maxChunks));
  const build = (d: number): Ref => {
    const n = Node.alloc();
    if (d > 0) {
      const l = build(d - 1);
      const r = build(d - 1);
      S.left(n, l);
      S.right(n, r);
    }
    return n;
  };

  // Build; stop early (and give back 5% as headroom) if the arena is exhausted.
  meter.setup();
  let chunks = 0;
  let exhausted = false;
  while (chunks < maxChunks) {
    try {
      heap.arrays.set(spineRoot.get(), chunks, build(CHUNK_DEPTH));
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_HEAP_EXHAUSTED') throw e;
      exhausted = true;
      break;
    }
    chunks++;
    if ((chunks & 15) === 0) meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  if (exhausted) {
    const keep = Math.floor(chunks * 0.95);
    for (let i = keep; i < chunks; i++) heap.arrays.set(spineRoot.get(), i, 0);
    chunks = keep;
  }
  const anonHugePagesBytes = smapsRollup('AnonHugePages');
  await heap.collect(); // warm-up: frees nothing, establishes the live size
  let budget = 0;
  const mutate = () => {
    const spine = spineRoot.get();
    let n = heap.arrays.get(spine, Math.floor(rnd() * chunks));
    for (let d = 0; d < CHUNK_DEPTH; d++) n = rnd() < 0.5 ? G.left(n) : G.right(n);
    S.w(n, G.w(n) + 1);
    if (budget > 0 && rnd() < CHURN) {
      heap.arrays.set(spine, Math.floor(rnd() * chunks), build(CHUNK_DEPTH));
      budget -= CHUNK_NODES + 15;
    }
    if (budget > 0) {
      build(3);
      budget -= 15;
    }
  };

  const measured: CycleStats[] = [];
  const callMs: number[] = [];
  const minorFaults: number[] = [];
  meter.begin();
  for (let i = 0; i < ctx.params.cycles; i++) {
    let done = false;
    budget = churnBudgetNodes(ctx.params);
    const faults0 = process.resourceUsage().minorPageFault;
    const s = performance.now();
    const p = heap.collect();
    callMs.push(performance.now() - s);
    let stats: CycleStats | null = null;
    let err: unknown = null;
    p.then(
      (c) => {
        stats = c;
        done = true;
      },
      (e) => {
        err = e;
        done = true;
      },
    );
    while (!done) {
      mutate();
      meter.tick();
      if (meter.yieldDue) await meter.yield();
    }
    if (err) throw err;
    minorFaults.push(process.resourceUsage().minorPageFault - faults0);
    measured.push(stats!);
    await meter.yield();
    budget = 0;
    for (const t = performance.now(); performance.now() - t < ctx.params.betweenMs;) {
      mutate();
      meter.tick();
      if (meter.yieldDue) await meter.yield();
    }
  }
  meter.end();
  spineRoot.release();

  const med = (f: (c: CycleStats) => number) => round(percentileOf(measured.map(f), 50), 3);
  const mx = (f: (c: CycleStats) => number) => round(Math.max(...measured.map(f)), 3);
  const fork = ctx.system.mode === 'fork';
  const hasCow = measured.every((c) => typeof c.cowBytes === 'number');
  return {
    verified: null,
    extra: {
      liveBytes: measured[measured.length - 1].bytesMarked,
      objects: measured[measured.length - 1].objectsMarked,
      exhausted,
      forkPauseMs: fork ? med((c) => c.pauseUs / 1000) : null,
      forkPauseMaxMs: fork ? mx((c) => c.pauseUs / 1000) : null,
      forkCpuMs: fork ? med((c) => (c.forkCpuUs ?? NaN) / 1000) : null,
      forkCpuMaxMs: fork ? mx((c) => (c.forkCpuUs ?? NaN) / 1000) : null,
      // 2 MiB ranges found or made huge again before each fork (CycleStats.hugeRangesRestored), median.
      hugeRangesRestored: fork ? med((c) => c.hugeRangesRestored ?? 0) : null,
      childMarkMs: fork ? med((c) => c.markMs) : null,
      stwPauseMs: fork ? null : med((c) => c.pauseUs / 1000),
      stwPauseMaxMs: fork ? null : mx((c) => c.pauseUs / 1000),
      markMs: med((c) => c.markMs),
      markNsPerObject: round(
        (measured.reduce((a, c) => a + c.markMs, 0) * 1e6) / Math.max(1, measured.reduce((a, c) => a + c.objectsMarked, 0)),
        2,
      ),
      bitmapBytes: med((c) => c.bitmapBytes),
      cowBytes: hasCow ? med((c) => c.cowBytes!) : null,
      sweepMs: med((c) => c.sweepMs),
      cycleTotalMs: med((c) => c.totalMs),
      collectCallMs: round(percentileOf(callMs, 50), 3),
      anonHugePagesBytes,
      // Parent's minor page faults per cycle (fork..end of sweep): copy-on-write and
      // first writes to pages left write-protected by fork() show up here.
      minorFaultsPerCycle: round(percentileOf(minorFaults, 50), 0),
      // The same, as the heap reports it (CycleStats.parentMinorFaults: cycle start..end).
      parentMinorFaultsPerCycle: med((c) => c.parentMinorFaults ?? NaN),
      // The main thread's GC-attributable stall per cycle (CycleStats.stallUs, maxStallUs), median and worst.
      stallMsPerCycle: med((c) => (c.stallUs ?? NaN) / 1000),
      maxStallMs: mx((c) => (c.maxStallUs ?? NaN) / 1000),
      workerSweepMs: med((c) => c.workerSweepMs),
    },
  };
}

const SYSTEMS_PS = ['forkgc-fork', 'forkgc-fork-huge', 'forkgc-stw', 'forkgc-stw-huge', 'v8'] as const;

export const pauseScaling: Workload<PauseScalingParams> = {
  name: 'pause-scaling',
  unit: 'mutator op during a cycle',
  cases: (full) =>
    [
      ...(full ? [64, 256, 1024, 3584] : [64, 256, 1024]).map((liveMiB) => ({
        liveMiB,
        cycles: full || liveMiB < 1024 ? 3 : 2,
        betweenMs: 0,
      })),
      { liveMiB: 1024, cycles: 3, betweenMs: 1000 },
    ],
  label: (p) =>
    `${p.liveMiB >= 1024 ? `${p.liveMiB / 1024} GiB` : `${p.liveMiB} MiB`} live` +
    (p.betweenMs > 0 ? `, ${p.betweenMs / 1000} s of writes between cycles` : ''),
  // Quick runs leave out stw + huge pages (huge pages matter for the fork pause);
  // the case with time between cycles is about the fork pause alone.
  systems: (full, p) =>
    p && p.betweenMs > 0 ? ['forkgc-fork', 'forkgc-fork-huge']
      : full ? [...SYSTEMS_PS] : SYSTEMS_PS.filter((s) => s !== 'forkgc-stw-huge'),
  heapOptions: (p: PauseScalingParams, sys: SystemSpec) => ({
    maxHeap: maxHeapMiB(p) * 1024 * 1024,
    auto: false,
    hugePages: !!sys.hugePages,
  }),
  nodeFlags: (p, sys) =>
    sys.kind === 'v8' ? ['--expose-gc', `--max-old-space-size=${Math.ceil(p.liveMiB * 3 + 512)}`] : [],
  timeoutMs: (p, full) => (full ? 900_000 : 60_000 + p.liveMiB * 60),
  plain,
  forkgc,
};
