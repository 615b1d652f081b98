// Driving the sweep of one cycle: sweeps a small heap whole on the main
// thread at once (below), or posts ONE task per sweeper thread
// (piscina), each claiming spans from the cycle's shared cursor
// (src/memory/sweep-board.ts), or sweeps from the same cursor on the main
// thread in slices between event-loop turns (no threads, or threads that
// could not start: then it says so once and goes on without them); learns
// that the sweep is over from the board at any safepoint (advance()), not
// only when a result message arrives on the event loop;
// lets the mutator finish it synchronously when the heap is full, puts the
// span table back in order when a sweeper thread fails, and fills in the
// cycle's sweep figures. How one span is swept is src/memory/sweeper.ts;
// lazy sweeping on allocation is src/memory/allocator.ts.
import { CycleAbortedError } from '../api/errors.js';
import { faultsCycle } from '../api/options.js';
import type { CycleStats } from '../api/stats.js';
import {
  FREE_DIRTY, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_FREE, SPAN_GRANULES, SPAN_IN_USE, SPAN_SWEEPING, SPAN_UNSWEPT, SPAN_WORDS,
  SPAN_LARGE_TAIL, SPAN_SWEPT, SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from '../memory/layout.js';
import { SweepTally, popcount } from '../memory/sweeper.js';
import { BATCH, SLOT_DONE, SLOT_FAILED, SLOT_POSTED, SLOT_RUNNING, SweepBoard, sweepFromCursor } from '../memory/sweep-board.js';
import { isStartFailure } from '../memory/sweep-pool.js';
import type { StallClock } from './stalls.js';
import { SweepSpeed } from './sweep-speed.js';
import { warmSweep } from './warm.js';
import type { Accounting } from './accounting.js';
import type { CycleHost } from './collector.js';

const SLICE_NS = 2_000_000n;  // background sweeping yields to the event loop this often
const SAFEPOINT_SLICE_NS = 1_000_000n;  // what a safepoint sweeps when no thread does
const THREAD_GRACE_NS = 5_000_000n;  // how long sweeper threads may take to start on a sweep before the main thread helps
/**
 * The main thread's first guess of its sweep speed (ns per span below the
 * top, free spans included), before it has measured its own: on the slow
 * side of what it measures on a loaded 2-core VM, so a first inline sweep
 * rarely overruns.
 */
export const FIRST_NS_PER_SPAN = 3_000;

// Why a small heap is swept inline. Handing a sweep to a sweeper thread has
// a fixed cost on the main thread (posting a piscina task, ~0.3-1 ms here,
// more for the first), and the sweep is over only when the thread has been
// scheduled, has swept, and the main thread has looked at the board again
// (a safepoint or an event-loop turn: milliseconds of wall time under load).
// Sweeping a span costs the main thread ~1 µs (bitmaps and the span table
// only, src/memory/sweeper.ts), so for a heap of a few hundred spans the
// whole sweep costs less than the hand-off. The driver keeps its own
// measured speed (src/collector/sweep-speed.ts) and sweeps inline when
// spans x ns per span fits in the inlineSweepUs budget; a sweep that runs
// over twice the budget stops and hands the rest to the threads (they
// claim from the same cursor).

/** What the driver keeps of a cycle: its figures and the sweep's own state. */
export interface SweepRun {
  stats: CycleStats;
  startNs: bigint;
  sweepStartNs: bigint;
  mainSweepNs: number;
  maxSliceNs: number;
  /** What the main thread swept from the cursor (slices, finishSync). */
  tally: SweepTally;
  /** The cycle's board, and which of its slots' tasks were rejected (settled without finishing). */
  board?: SweepBoard;
  rejected?: Set<number>;
  sweepFailure?: Error;
}

/** How a sweep ends: the collector settles the cycle. */
export interface SweepEnds {
  completed(run: SweepRun): void;
  failed(run: SweepRun, error: CycleAbortedError): void;
}

/** What the driver needs beyond the host: where stalls go, and the once-only report of threads that could not run. */
export interface SweepDriverHooks {
  readonly stalls: StallClock;
  /** Threads cannot be relied on (could not start; `died`: one died while it swept): the main thread sweeps from now on. */
  sweeperFailed(error: Error, died?: boolean): void;
}

export class SweepDriver {
  private current: SweepRun | undefined;
  private sweepImmediate: NodeJS.Immediate | undefined;
  /** Sweeping from the cursor on the main thread (no usable threads). */
  private mainSweeps = false;
  private readonly cancelled = new Int32Array(new SharedArrayBuffer(4));
  /** The main thread's sweep speed (inline sweeps and the threads' sweeps measure it). */
  readonly speed = new SweepSpeed(FIRST_NS_PER_SPAN);

  constructor(
    private readonly host: CycleHost, private readonly account: Accounting, private readonly ends: SweepEnds,
    private readonly hooks: SweepDriverHooks,
  ) {
    if (host.options.inlineSweepUs > 0) warmSweep();
  }

  /** Stops sweeping (the heap closes): no more slices, task results are ignored. */
  stop(): void {
    this.current?.board?.drain();
    this.current = undefined;
    if (this.sweepImmediate) clearImmediate(this.sweepImmediate);
    this.sweepImmediate = undefined;
  }

  /**
   * The bitmap is final: start sweeping. A heap small enough for the
   * inlineSweepUs budget is swept whole right here and its sweep completed:
   * then this returns true and the caller settles the cycle (after it has
   * recorded the stall). Otherwise it posts one task per sweeper thread, or
   * schedules main-thread slices, and returns false.
   */
  begin(c: SweepRun): boolean {
    this.current = c;
    c.sweepStartNs = process.hrtime.bigint();
    const a = this.host.allocator;
    a.beginSweep();
    this.host.publish('sweepStart', {
      heapId: this.host.regions.id, cycleId: c.stats.id, spans: a.topSpan - 1, timeMs: performance.now(),
    });
    // A listener closed the heap (its memory is gone): nothing left to sweep.
    if (this.current !== c) return false;
    const pool = this.host.sweepPool();
    const slots = pool && !pool.broken ? pool.threads : 0;
    const board = new SweepBoard(slots, a.topSpan);
    c.board = board;
    c.rejected = new Set();
    this.mainSweeps = slots === 0;
    const fault = this.host.options.fault;
    let failAfter = fault?.kind === 'sweep-worker-throw' && faultsCycle(fault, c.stats.id) ? fault.arg ?? 1 : 0;
    // (A cycle whose sweeper thread is to fail is left to the thread.)
    if (failAfter === 0 && this.sweepInline(c)) {
      // (A 'sweepProgress' listener may have closed the heap meanwhile.)
      if (this.current !== c) return false;
      this.complete(c);
      return true;
    }
    if (this.current !== c) return false;
    if (slots === 0) {
      this.scheduleSlice(c);
      return false;
    }
    // Each thread claims spans from the cursor (what is left of it); the
    // mutator meanwhile sweeps (lazily) only spans of the classes it
    // allocates from.
    for (let slot = 0; slot < slots; slot++) {
      pool!.run({ heapId: this.host.regions.id, cycleId: c.stats.id, slot, control: board.control, tallies: board.tallies, failAfter })
        .then(() => {
          // A task that ran said so on the board before it returned. An
          // application's pool that settled without running it (a wrapper
          // that swallows failures) has threads that cannot run ours: the
          // main thread sweeps, or the cycle waited for a sweep nobody did.
          if (c === this.current && board.state(slot) === SLOT_POSTED) {
            this.taskRejected(c, slot, new Error("the pool's run() settled a sweep task without running it"));
          } else {
            this.advance();
          }
        }, (e: Error) => this.taskRejected(c, slot, e));
      failAfter = 0;
    }
    return false;
  }

  /**
   * Sweeps the whole heap now, on this thread, if the measured speed says it
   * fits the inlineSweepUs budget; stops at twice the budget (the rest is
   * left on the cursor). Returns whether every span is swept.
   */
  private sweepInline(c: SweepRun): boolean {
    const budgetUs = this.host.options.inlineSweepUs;
    const board = c.board!;
    const spans = board.top - 1;
    if (budgetUs === 0 || spans * this.speed.nsPerSpan > budgetUs * 1000) return false;
    const start = process.hrtime.bigint();
    const startMs = performance.now();
    const before = { spans: c.tally.spans, objects: c.tally.freedObjects, bytes: c.tally.freedBytes };
    sweepFromCursor(this.host.views, board, c.tally, this.cancelled, 0, start + BigInt(2 * budgetUs * 1000));
    const ns = Number(process.hrtime.bigint() - start);
    c.mainSweepNs += ns;
    c.maxSliceNs = Math.max(c.maxSliceNs, ns);
    this.mainProgress(c, before, startMs);
    const done = board.exhausted;
    // What it got through: every span below the top, or up to the cursor.
    const through = Math.max(1, done ? spans : Math.min(spans, Atomics.load(board.control, 0) - 1));
    if (!done) this.speed.overran(ns, through);
    else if (through >= BATCH) this.speed.measured(ns, through);
    return done;
  }

  private scheduleSlice(c: SweepRun): void {
    if (!this.sweepImmediate) this.sweepImmediate = setImmediate(() => { this.sweepImmediate = undefined; this.sweepSlice(c, SLICE_NS); });
  }

  /**
   * A task settled with an error. One that never ran (its thread could not
   * start) is not a failed sweep: the main thread sweeps the rest from the
   * cursor, and the heap says once that it goes on without threads. One that
   * ran and threw, or whose thread died while it ran, fails the sweep
   * (SWEEP_FAILED): only that puts back the spans it had claimed. (A task
   * that ran and was rejected with a start failure's code - a thread over
   * its memory limit, ERR_WORKER_OUT_OF_MEMORY - was taken for one that
   * never ran: the cycle completed with its spans SWEEPING for good and
   * their marks never cleared; found in review.) Such a code also says the
   * pool's threads cannot be relied on: the main thread sweeps from then on.
   */
  private taskRejected(c: SweepRun, slot: number, e: Error): void {
    if (c !== this.current) return;
    const board = c.board!;
    c.rejected!.add(slot);
    if (board.state(slot) === SLOT_POSTED) {
      // The main thread takes over first: nothing the report does may leave the sweep undone.
      this.mainSweeps = true;
      this.scheduleSlice(c);
      this.hooks.sweeperFailed(e);
    } else {
      c.sweepFailure ??= e;
      board.drain();
      if (isStartFailure(e)) this.hooks.sweeperFailed(e, true);
    }
    this.advance();
  }

  /** Every thread that could not start: the main thread takes over (called once the pool is known broken). */
  threadsLost(): void {
    const c = this.current;
    if (!c || this.mainSweeps) return;
    this.mainSweeps = true;
    // Tasks still posted are not given up: the pool may yet run one on a
    // thread that did start, and one that then claims spans must be waited
    // for like any running task (advance() skips only rejected ones). One
    // that starts after the main thread emptied the cursor claims nothing.
    this.scheduleSlice(c);
  }

  /**
   * Moves the sweep on without waiting (a safepoint, an allocation's slow
   * path, a task's result): when nothing else sweeps, sweeps a short slice
   * from the cursor; when every span is swept and no thread runs, completes
   * the cycle. Returns whether the sweep is over.
   */
  advance(): boolean {
    const c = this.current;
    if (!c) return true;
    const board = c.board!;
    // The main thread sweeps a slice itself when no thread does: none
    // usable, or none has started on this cycle yet (a new thread is ready,
    // and a queued task is posted, only when the event loop turns).
    if (!board.exhausted && (this.mainSweeps ||
        (board.noneStarted && process.hrtime.bigint() - c.sweepStartNs > THREAD_GRACE_NS))) this.sweepSlice(c, SAFEPOINT_SLICE_NS);
    if (this.current !== c) return true;
    // A thread that threw says FAILED on the board, and its task may still
    // fulfil (an application's pool that swallows failures): the sweep
    // fails here, and nothing more is taken from the cursor (found in
    // review: looked for only once the cursor was empty, which nothing then
    // emptied, the cycle stayed sweeping for good).
    for (let i = 0; i < board.slots && !c.sweepFailure; i++) {
      if (board.state(i) === SLOT_FAILED) {
        c.sweepFailure = new Error('the sweeper thread threw');
        board.drain();
      }
    }
    if (!board.exhausted && !c.sweepFailure) return false;
    // Still sweeping (a slot whose task was rejected while running never will).
    if (board.runningBut(c.rejected!)) return false;
    if (c.sweepFailure) {
      this.sweepFailed(c, c.sweepFailure);
    } else {
      this.completeSweep(c);
    }
    return true;
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
    // Which of them are garbage, said before their marks are cleared (a
    // heap map's pass asks; src/memory/allocator.ts, garbageLeft).
    const garbage = new Uint32Array(a.topSpan * SPAN_BITMAP_WORDS);
    for (let s = 1; s < a.topSpan; s++) {
      const e0 = s * SPAN_WORDS;
      const state = Atomics.load(v.spans, e0 + SW_STATE);
      if (state !== SPAN_UNSWEPT && state !== SPAN_SWEEPING && state !== SPAN_SWEPT) continue;
      notSwept[s] = 1;
      const w0 = s * SPAN_BITMAP_WORDS;
      let live = 0;
      // (A thread that died after making the span's allocation bits final
      // may have cleared its marks: then what is allocated survived.)
      const final = state === SPAN_SWEPT;
      for (let w = w0; w < w0 + SPAN_BITMAP_WORDS; w++) {
        live += popcount(v.allocBits[w]);
        if (!final) garbage[w] = v.allocBits[w] & ~v.markBits[w];
      }
      v.markBits.fill(0, w0, w0 + SPAN_BITMAP_WORDS);
      v.spans[e0 + SW_LIVE] = live;
      if (live === 0 && v.spans[e0 + SW_CLASS] === LARGE_CLASS) {
        // A large object's free cut short (sweepLarge clears its allocation
        // bit, then frees the run from its end): finish it, or the head
        // stayed IN_USE and the next sweep freed the whole run again,
        // a tail span reused meanwhile included (found in review). Tails
        // already FREE may have been taken since: only LARGE_TAIL ones of
        // this run are freed.
        const run = v.spans[e0 + SW_AUX];
        for (let t = s; t < s + run && t < a.topSpan; t++) {
          const te = t * SPAN_WORDS;
          // (A tail whose aux is FREE_DIRTY already was being freed when the
          // thread died: no other run can hold a span inside this one's.)
          if (t > s && (Atomics.load(v.spans, te + SW_STATE) !== SPAN_LARGE_TAIL ||
              (v.spans[te + SW_AUX] !== s && v.spans[te + SW_AUX] !== FREE_DIRTY))) continue;
          v.spans[te + SW_CLASS] = LARGE_CLASS;
          v.spans[te + SW_LIVE] = 0;
          v.spans[te + SW_AUX] = FREE_DIRTY;
          Atomics.store(v.spans, te + SW_STATE, SPAN_FREE);
        }
      } else if (live === 0) {
        v.spans[e0 + SW_AUX] = FREE_DIRTY;
        Atomics.store(v.spans, e0 + SW_STATE, SPAN_FREE);
      } else {
        Atomics.store(v.spans, e0 + SW_STATE, SPAN_IN_USE);
      }
    }
    a.endSweep();
    a.garbageLeft = garbage;
    this.account.recount(v, a.topGranule, a.outstanding());
    const alloc = v.allocBits;
    h.sweepFinished((g) => notSwept[Math.floor(g / SPAN_GRANULES)] === 1 && (alloc[g >>> 5] & (1 << (g & 31))) !== 0);
    this.stop();
    this.ends.failed(c, new CycleAbortedError('SWEEP_FAILED', c.stats.id, `a sweeper thread failed (${e.message})`));
  }

  /** Publishes what a main-thread sweep (slice or inline) did since `before` ('sweepProgress', thread 'main'). */
  private mainProgress(c: SweepRun, before: { spans: number; objects: number; bytes: number }, startMs: number): void {
    if (c.tally.spans <= before.spans) return;
    const h = this.host;
    h.publish('sweepProgress', {
      heapId: h.regions.id, cycleId: c.stats.id, thread: 'main', spans: c.tally.spans - before.spans,
      freedObjects: c.tally.freedObjects - before.objects, freedBytes: c.tally.freedBytes - before.bytes,
      startMs, endMs: performance.now(),
    });
  }

  /** Sweeping on the main thread from the cursor, bounded by `budgetNs`; a slice per event-loop turn until the cursor is done. */
  private sweepSlice(c: SweepRun, budgetNs: bigint): void {
    if (c !== this.current) return;
    const h = this.host;
    const t = this.hooks.stalls.begin('sweepSlice');
    const start = process.hrtime.bigint();
    const startMs = performance.now();
    const before = { spans: c.tally.spans, objects: c.tally.freedObjects, bytes: c.tally.freedBytes };
    try {
      sweepFromCursor(h.views, c.board!, c.tally, this.cancelled, 0, start + budgetNs);
    } finally {
      this.hooks.stalls.end(t);
    }
    const sliceNs = Number(process.hrtime.bigint() - start);
    c.mainSweepNs += sliceNs;
    c.maxSliceNs = Math.max(c.maxSliceNs, sliceNs);
    this.mainProgress(c, before, startMs);
    if (!c.board!.exhausted) {
      this.scheduleSlice(c);
      return;
    }
    if (budgetNs === SLICE_NS) this.advance();
  }

  /**
   * Sweeps whatever is left right now (the heap is full): the rest of the
   * cursor and every span still UNSWEPT behind it, then waits (bounded) for
   * spans sweeper threads are in the middle of. The cycle completes here if
   * no thread still runs, else when the last one reports.
   */
  finishSync(c: SweepRun): void {
    if (c !== this.current) return;
    const a = this.host.allocator;
    const t = this.hooks.stalls.begin('finishSync');
    const start = process.hrtime.bigint();
    try {
      sweepFromCursor(this.host.views, c.board!, c.tally, this.cancelled);
      a.sweepAllLazily();
      const nap = new Int32Array(new SharedArrayBuffer(4));
      const deadline = performance.now() + 10_000;
      // Only a running thread can finish a span it claimed: once none runs,
      // a span still SWEEPING was left by a thread that threw (its slot says
      // FAILED at once, on the board) or died (its task rejected while its
      // slot says RUNNING, for good: not waited for, or an allocation waited
      // the whole 10 s; found in review), and advance() below puts it back.
      const board = c.board!;
      while (a.anySweeping() && board.runningBut(c.rejected!) && performance.now() < deadline) Atomics.wait(nap, 0, 0, 1);
      a.rebuildFromTable();
    } finally {
      const ns = Number(process.hrtime.bigint() - start);
      c.mainSweepNs += ns;
      c.maxSliceNs = Math.max(c.maxSliceNs, ns);
      this.hooks.stalls.end(t);
    }
    this.advance();
  }

  private completeSweep(c: SweepRun): void {
    const t = this.hooks.stalls.begin('sweepEnd');
    let over: boolean;
    try {
      over = this.complete(c);
    } finally {
      this.hooks.stalls.end(t);
    }
    // After the stall is recorded: settling takes the cycle's stall figures.
    if (over) this.ends.completed(c);
  }

  /** Ends the sweep; false when a 'sweepProgress' listener closed the heap (the cycle was settled CLOSED). */
  private complete(c: SweepRun): boolean {
    const h = this.host;
    const a = h.allocator;
    const s = c.stats;
    const board = c.board!;
    const total = new SweepTally();
    total.add(c.tally);
    total.add(a.lazyTally);
    const mainSpans = total.spans;
    const workers = new Map<number, { spans: number; ms: number }>();
    for (let i = 0; i < board.slots; i++) {
      if (board.state(i) !== SLOT_DONE) continue;
      const r = board.tally(i);
      total.freedObjects += r.freedObjects;
      total.freedBytes += r.freedBytes;
      total.liveObjects += r.liveObjects;
      total.spans += r.spans;
      const w = workers.get(r.threadId) ?? { spans: 0, ms: 0 };
      w.spans += r.spans;
      w.ms += r.endEpochMs - r.startEpochMs;
      workers.set(r.threadId, w);
      if (r.spans >= BATCH) this.speed.measured((r.endEpochMs - r.startEpochMs) * 1e6, r.spans);
      if (r.spans > 0) {
        h.publish('sweepProgress', {
          heapId: h.regions.id, cycleId: s.id, thread: `worker-${r.threadId}`, spans: r.spans,
          freedObjects: r.freedObjects, freedBytes: r.freedBytes,
          startMs: r.startEpochMs - performance.timeOrigin, endMs: r.endEpochMs - performance.timeOrigin,
        });
        // A listener closed the heap: its views are detached, nothing more to do.
        if (this.current !== c) return false;
      }
    }
    a.endSweep();
    this.account.freed(total.freedObjects, total.freedBytes);
    s.objectsFreed = total.freedObjects;
    s.bytesFreed = total.freedBytes;
    s.spansSwept = mainSpans;  // by the main thread (workerSpansSwept: by the sweeper threads)
    s.mainThreadSweepMs = (c.mainSweepNs + a.lazySweepNs) / 1e6;
    s.mainThreadSweepMaxMs = Math.max(c.maxSliceNs, a.lazySweepMaxNs) / 1e6;
    s.workers = [...workers].map(([threadId, w]) => ({ threadId, spans: w.spans, ms: w.ms }));
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
    this.stop();
    return true;
  }
}
