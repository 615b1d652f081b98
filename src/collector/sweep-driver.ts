// Driving the sweep of one cycle: hands spans to sweeper threads (piscina)
// or sweeps them on the main thread in slices between event-loop turns,
// lets the mutator finish it synchronously when the heap is full, puts the
// span table back in order when a sweeper thread fails, and fills in the
// cycle's sweep figures. How one span is swept is src/memory/sweeper.ts;
// lazy sweeping on allocation is src/memory/allocator.ts.
import { CycleAbortedError } from '../api/errors.js';
import { faultsCycle } from '../api/options.js';
import type { CycleStats } from '../api/stats.js';
import {
  FREE_CLEAN, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_FREE, SPAN_GRANULES, SPAN_IN_USE, SPAN_SWEEPING, SPAN_UNSWEPT, SPAN_WORDS,
  SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from '../memory/layout.js';
import { SweepTally, claimSpan, popcount, sweepClaimedSpan } from '../memory/sweeper.js';
import type { SweepTaskResult } from '../memory/sweep-worker.js';
import type { Accounting } from './accounting.js';
import type { CycleHost } from './collector.js';

/** Spans per sweeper task: 4 MiB of arena, small enough to spread over threads. */
const TASK_SPANS = 64;

const SLICE_NS = 2_000_000n;  // background sweeping yields to the event loop this often

/** What the driver keeps of a cycle: its figures and the sweep's own state. */
export interface SweepRun {
  stats: CycleStats;
  startNs: bigint;
  sweepStartNs: bigint;
  mainSweepNs: number;
  maxSliceNs: number;
  tally: SweepTally;
  /** Sweeper-thread tasks not yet settled, and the first failure among them. */
  tasksPending: number;
  sweepFailure?: Error;
  workers: Map<number, { spans: number; ms: number }>;
}

/** How a sweep ends: the collector settles the cycle. */
export interface SweepEnds {
  completed(run: SweepRun): void;
  failed(run: SweepRun, error: CycleAbortedError): void;
}

export class SweepDriver {
  private current: SweepRun | undefined;
  private sweepCursor = 1;
  private sweepImmediate: NodeJS.Immediate | undefined;

  constructor(private readonly host: CycleHost, private readonly account: Accounting, private readonly ends: SweepEnds) {}

  /** Stops sweeping (the heap closes): no more slices, task results are ignored. */
  stop(): void {
    this.current = undefined;
    if (this.sweepImmediate) clearImmediate(this.sweepImmediate);
    this.sweepImmediate = undefined;
  }

  /** The bitmap is final: start sweeping (sweeper threads, or main-thread slices). */
  begin(c: SweepRun): void {
    this.current = c;
    c.sweepStartNs = process.hrtime.bigint();
    this.host.allocator.beginSweep();
    this.host.publish('sweepStart', {
      heapId: this.host.regions.id, cycleId: c.stats.id, spans: this.host.allocator.topSpan - 1, timeMs: performance.now(),
    });
    this.sweepCursor = 1;
    const pool = this.host.sweepPool();
    if (!pool) {
      this.sweepImmediate = setImmediate(() => this.sweepSlice(c));
      return;
    }
    // Sweeper threads take the spans in order; the mutator meanwhile sweeps
    // (lazily) only spans of the classes it allocates from.
    const fault = this.host.options.fault;
    let failAfter = fault?.kind === 'sweep-worker-throw' && faultsCycle(fault, c.stats.id) ? fault.arg ?? 1 : 0;
    const top = this.host.allocator.topSpan;
    for (let from = 1; from < top; from += TASK_SPANS) {
      c.tasksPending++;
      pool.run({ heapId: this.host.regions.id, cycleId: c.stats.id, from, to: Math.min(top, from + TASK_SPANS), failAfter })
        .then((r) => this.taskDone(c, r), (e) => this.taskFailed(c, e as Error));
      failAfter = 0;
    }
    if (c.tasksPending === 0) this.sweepImmediate = setImmediate(() => this.sweepSlice(c));
  }

  private taskDone(c: SweepRun, r: SweepTaskResult): void {
    if (c !== this.current) return;
    const h = this.host;
    const a = h.allocator;
    // The result message orders the worker's writes before these reads.
    for (let i = 0; i < r.swept.length; i += 2) a.afterSweep(r.swept[i], r.swept[i + 1]);
    c.tally.freedObjects += r.freedObjects;
    c.tally.freedBytes += r.freedBytes;
    c.tally.liveObjects += r.liveObjects;
    const ms = r.endEpochMs - r.startEpochMs;
    const w = c.workers.get(r.threadId) ?? { spans: 0, ms: 0 };
    w.spans += r.spans;
    w.ms += ms;
    c.workers.set(r.threadId, w);
    if (r.spans > 0) {
      h.publish('sweepProgress', {
        heapId: h.regions.id, cycleId: c.stats.id, thread: `worker-${r.threadId}`, spans: r.spans,
        freedObjects: r.freedObjects, freedBytes: r.freedBytes,
        startMs: r.startEpochMs - performance.timeOrigin, endMs: r.endEpochMs - performance.timeOrigin,
      });
    }
    this.taskSettled(c);
  }

  private taskFailed(c: SweepRun, e: Error): void {
    if (c !== this.current) return;
    c.sweepFailure ??= e;
    this.taskSettled(c);
  }

  private taskSettled(c: SweepRun): void {
    if (--c.tasksPending > 0) return;
    if (c.sweepFailure) this.sweepFailed(c, c.sweepFailure);
    else this.completeSweep(c);
  }

  /**
   * A sweeper thread threw. What was swept was swept correctly (from a
   * validated bitmap); the rest is put back as it was, unswept garbage and
   * all: every span still UNSWEPT or left SWEEPING by the dead task is reset
   * (its mark bits cleared last by the sweeper, so a half-swept span keeps
   * every survivor), counted again, and made usable. Then the cycle fails
   * loudly (CycleAbortedError SWEEP_FAILED). Finalization follows what was
   * freed: entries of unmarked objects left in the spans put back return to
   * their registries. Weak fields stay cleared: they follow reachability at
   * the fork, and such an object is garbage whose children may be freed
   * already (docs/failure-model.md).
   */
  private sweepFailed(c: SweepRun, e: Error): void {
    const h = this.host;
    const a = h.allocator;
    const v = h.views;
    // The spans put back: an unmarked object whose allocation bit is still
    // set in one of them was not freed (its finalization entries go back).
    const notSwept = new Uint8Array(a.topSpan);
    for (let s = 1; s < a.topSpan; s++) {
      const e0 = s * SPAN_WORDS;
      const state = Atomics.load(v.spans, e0 + SW_STATE);
      if (state !== SPAN_UNSWEPT && state !== SPAN_SWEEPING) continue;
      notSwept[s] = 1;
      const w0 = s * SPAN_BITMAP_WORDS;
      let live = 0;
      for (let w = w0; w < w0 + SPAN_BITMAP_WORDS; w++) live += popcount(v.allocBits[w]);
      v.markBits.fill(0, w0, w0 + SPAN_BITMAP_WORDS);
      v.spans[e0 + SW_LIVE] = live;
      if (live === 0 && v.spans[e0 + SW_CLASS] !== LARGE_CLASS) {
        v.spans[e0 + SW_AUX] = FREE_CLEAN;
        Atomics.store(v.spans, e0 + SW_STATE, SPAN_FREE);
      } else {
        Atomics.store(v.spans, e0 + SW_STATE, SPAN_IN_USE);
      }
    }
    a.endSweep();
    this.account.recount(v, a.topGranule);
    const alloc = v.allocBits;
    h.sweepFinished((g) => notSwept[Math.floor(g / SPAN_GRANULES)] === 1 && (alloc[g >>> 5] & (1 << (g & 31))) !== 0);
    this.current = undefined;
    this.ends.failed(c, new CycleAbortedError('SWEEP_FAILED', c.stats.id, `a sweeper thread failed (${e.message})`));
  }

  /** Background sweeping on the main thread, a slice per event-loop turn. */
  private sweepSlice(c: SweepRun): void {
    this.sweepImmediate = undefined;
    if (c !== this.current) return;
    const h = this.host;
    const a = h.allocator;
    const v = h.views;
    const start = process.hrtime.bigint();
    const startMs = performance.now();
    const before = { spans: c.tally.spans, objects: c.tally.freedObjects, bytes: c.tally.freedBytes };
    let n = 0;
    while (this.sweepCursor < a.topSpan) {
      const s = this.sweepCursor++;
      if (claimSpan(v, s)) a.afterSweep(s, sweepClaimedSpan(v, s, c.tally));
      if ((++n & 3) === 0 && process.hrtime.bigint() - start > SLICE_NS) break;
    }
    const sliceNs = Number(process.hrtime.bigint() - start);
    c.mainSweepNs += sliceNs;
    c.maxSliceNs = Math.max(c.maxSliceNs, sliceNs);
    if (c.tally.spans > before.spans) {
      h.publish('sweepProgress', {
        heapId: h.regions.id, cycleId: c.stats.id, thread: 'main', spans: c.tally.spans - before.spans,
        freedObjects: c.tally.freedObjects - before.objects, freedBytes: c.tally.freedBytes - before.bytes,
        startMs, endMs: performance.now(),
      });
    }
    if (this.sweepCursor < a.topSpan) {
      this.sweepImmediate = setImmediate(() => this.sweepSlice(c));
      return;
    }
    this.completeSweep(c);
  }

  /**
   * Sweeps whatever is left right now (the heap is full). With sweeper
   * threads, it also waits (bounded) for spans they are sweeping and picks
   * up what they freed from the span table; the cycle itself completes when
   * their results arrive.
   */
  finishSync(c: SweepRun): void {
    if (c !== this.current) return;
    if (c.tasksPending > 0) {
      const a = this.host.allocator;
      const start = process.hrtime.bigint();
      a.sweepAllLazily();
      const nap = new Int32Array(new SharedArrayBuffer(4));
      const deadline = Date.now() + 10_000;
      while (a.anySweeping() && Date.now() < deadline) Atomics.wait(nap, 0, 0, 1);
      a.rebuildFromTable();
      const ns = Number(process.hrtime.bigint() - start);
      c.mainSweepNs += ns;
      c.maxSliceNs = Math.max(c.maxSliceNs, ns);
      return;
    }
    if (this.sweepImmediate) clearImmediate(this.sweepImmediate);
    this.sweepImmediate = undefined;
    this.sweepCursor = this.host.allocator.topSpan;
    this.host.allocator.sweepAllLazily();
    this.completeSweep(c);
  }

  private completeSweep(c: SweepRun): void {
    const h = this.host;
    const a = h.allocator;
    const s = c.stats;
    c.tally.add(a.lazyTally);
    a.endSweep();
    this.account.freed(c.tally.freedObjects, c.tally.freedBytes);
    s.objectsFreed = c.tally.freedObjects;
    s.bytesFreed = c.tally.freedBytes;
    s.spansSwept = c.tally.spans;
    s.mainThreadSweepMs = (c.mainSweepNs + a.lazySweepNs) / 1e6;
    s.mainThreadSweepMaxMs = Math.max(c.maxSliceNs, a.lazySweepMaxNs) / 1e6;
    s.workers = [...c.workers].map(([threadId, w]) => ({ threadId, spans: w.spans, ms: w.ms }));
    s.workerSpansSwept = s.workers.reduce((n, w) => n + w.spans, 0);
    s.workerSweepMs = s.workers.reduce((n, w) => n + w.ms, 0);
    s.bytesReturned = a.releaseFreeSpans(h.policy.retainFreeBytes(this.account.liveBytes), h.regions.hugePages,
      (offset, bytes) => h.addon.releaseArena(h.regions.id, offset, bytes) === 0);
    const end = process.hrtime.bigint();
    s.sweepMs = Number(end - c.sweepStartNs) / 1e6;
    s.totalMs = Number(end - c.startNs) / 1e6;
    s.heapBytesAfter = a.heapBytes;
    s.liveBytesAfter = this.account.liveBytes;
    h.sweepFinished();
    this.current = undefined;
    this.ends.completed(c);
  }
}
