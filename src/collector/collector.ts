// The collector: drives one garbage-collection cycle at a time.
//
// One cycle, in fork mode, step by step:
//
//  1. Start, at a safepoint only (docs/design.md, invariant 4): from the event loop
//     (an immediate scheduled when the policy's trigger was crossed), from
//     heap.safepoint(), or from heap.collect(). Never inside an allocation.
//     The previous cycle's sweep has finished, so every span is IN_USE or
//     FREE and the mark bitmap is all zero.
//  2. Fork (the only pause). native/child.cc makes a pipe, blocks signals,
//     _Fork()s. The child's copy of the arena is the snapshot (invariant 1):
//     copy-on-write is the write barrier, so the mutator needs none.
//  3. Phase 'marking'. The mutator runs on. Every object allocated now gets
//     its mark bit set by the allocator (allocate black, invariant 2): the
//     child cannot see it, so the sweep must not free it. Nothing is freed
//     in this phase, so no allocation bit is cleared.
//  4. The child marks from the root table in its snapshot and streams
//     header, bitmap chunks and trailer. The StreamReader (src/wire.ts)
//     checks each chunk's checksum as it arrives; stage() rejects a mark on a
//     granule that holds no object (a zombie) and ORs the chunk into the
//     parent's mark bitmap, on top of the black bits from step 3.
//  5. At end of stream the trailer must have validated (whole-stream
//     checksum, object count equal to the bits received), and the child is
//     reaped: it must have exited 0. Anything else - a short or corrupt
//     stream, a non-zero exit, a signal, the watchdog - aborts the cycle
//     (invariant 3): the mark bitmap is cleared and NOTHING is freed.
//  6. Phase 'sweeping': every IN_USE span becomes UNSWEPT. The mutator sweeps
//     spans of the class it needs on demand (lazy, src/allocator.ts); the
//     background sweeper sweeps the rest a slice at a time between event-loop
//     turns. A swept span's mark bits are cleared, so the bitmap is zero
//     again when the last span is done.
//  7. Sweep complete: free spans go back to the OS beyond a small reserve,
//     the policy sets the next trigger from the live bytes, and the cycle's
//     figures are published. Only now may the next cycle fork.
//
// In stw mode steps 2-5 are one call to the same native marker in-process
// (invariant 5), and the sweep (step 6) starts at once.
import { Accounting } from './accounting.js';
import { CycleAbortedError, type AbortReason } from '../api/errors.js';
import type { Allocator } from '../memory/allocator.js';
import type { ChildEnd, NativeAddon, RegionViews } from '../platform/native.js';
import { FAULT_CODES, type ResolvedOptions } from '../api/options.js';
import type { Policy } from './policy.js';
import type { RootTable } from '../api/root-table.js';
import type { CycleStats, Trigger } from '../api/stats.js';
import { SweepTally, claimSpan, popcount, sweepClaimedSpan } from '../memory/sweeper.js';
import type { HeapViews } from '../memory/views.js';
import type { CycleEventMap, CycleEventName } from '../api/events.js';
import type { SweepPool } from '../memory/sweep-pool.js';
import type { SweepTaskResult } from '../memory/sweep-worker.js';
import {
  FREE_CLEAN, GRANULE_BYTES, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_FREE, SPAN_IN_USE, SPAN_SWEEPING, SPAN_UNSWEPT, SPAN_WORDS,
  SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from '../memory/layout.js';
import { StreamError, StreamReader, checkTrailerClaims, stageMarks } from './stream.js';
import { ChildSession, childVerdict, type Verdict } from './child-session.js';

export type Phase = 'idle' | 'marking' | 'sweeping';

/** What the collector needs from the heap that owns it. */
export interface CycleHost {
  readonly addon: NativeAddon;
  readonly regions: RegionViews;
  readonly views: HeapViews;
  readonly allocator: Allocator;
  readonly roots: RootTable;
  readonly options: ResolvedOptions;
  readonly policy: Policy;
  /** A cycle is starting: checked mode moves to the next epoch. */
  newEpoch(): void;
  /** The sweeper threads, if the heap has any (created on first use). */
  sweepPool(): SweepPool | undefined;
  /** The bitmap is final and no span is swept yet: clear dead weak fields, take dead finalization entries. */
  sweepStarting(): void;
  /** The sweep is over (or given up): run the finalization callbacks it took, from the event loop. */
  sweepFinished(): void;
  /** Publishes a phase of the cycle (src/events.ts). */
  publish<K extends CycleEventName>(name: K, payload: CycleEventMap[K]): void;
  cycleCompleted(stats: CycleStats): void;
  cycleAborted(error: CycleAbortedError): void;
  /** The heap ran stop-the-world because it could not fork (reported once per heap). */
  fellBack(reason: string): void;
}

interface Waiter {
  resolve(stats: CycleStats): void;
  reject(error: Error): void;
}

/** One cycle in flight. */
interface Cycle {
  stats: CycleStats;
  startNs: bigint;
  topGranule: number;
  waiters: Waiter[];
  // fork mode
  child?: ChildSession;
  reader?: StreamReader;
  streamEnded: boolean;
  stagedObjects: number;
  firstByteMs: number;
  failure?: Verdict;
  // sweeping
  sweepStartNs: bigint;
  mainSweepNs: number;
  maxSliceNs: number;
  tally: SweepTally;
  /** Sweeper-thread tasks not yet settled, and the first failure among them. */
  tasksPending: number;
  sweepFailure?: Error;
  workers: Map<number, { spans: number; ms: number }>;
}

/** Spans per sweeper task: 4 MiB of arena, small enough to spread over threads. */
const TASK_SPANS = 64;

const SLICE_NS = 2_000_000n;  // background sweeping yields to the event loop this often

export class Collector {
  phase: Phase = 'idle';
  private cycle: Cycle | undefined;
  private nextId = 1;
  private sweepCursor = 1;
  private sweepImmediate: NodeJS.Immediate | undefined;
  private closed = false;
  private readonly pageBytes: number;
  /** Live bytes and objects, allocation since the last cycle, cumulative figures. */
  readonly account = new Accounting();

  constructor(private readonly host: CycleHost) {
    this.pageBytes = host.addon.layoutConstants().pageSize;
  }

  get busy(): boolean { return this.phase !== 'idle'; }

  /** Waits for the cycle in flight to finish (resolves with its figures). */
  join(): Promise<CycleStats> {
    const c = this.cycle;
    if (!c) throw new Error('no cycle in flight');
    return new Promise((resolve, reject) => c.waiters.push({ resolve, reject }));
  }

  /**
   * Starts a cycle now; the caller guarantees this is a safepoint and that no
   * cycle is in flight. Returns a promise for the cycle's figures.
   */
  start(trigger: Trigger, keepAlive: boolean): Promise<CycleStats> {
    if (this.busy) throw new Error('a cycle is already in flight');
    const h = this.host;
    const a = h.allocator;
    const id = this.nextId++;
    const c: Cycle = {
      stats: emptyStats(id, h.options.mode, trigger, a.heapBytes),
      startNs: process.hrtime.bigint(),
      topGranule: a.topGranule,
      waiters: [],
      streamEnded: false,
      stagedObjects: 0,
      firstByteMs: 0,
      sweepStartNs: 0n,
      mainSweepNs: 0,
      maxSliceNs: 0,
      tally: new SweepTally(),
      tasksPending: 0,
      workers: new Map(),
    };
    this.cycle = c;
    const done = new Promise<CycleStats>((resolve, reject) => c.waiters.push({ resolve, reject }));
    h.newEpoch();
    this.account.allocatedSinceCycle = 0;
    h.publish('cycleStart', {
      heapId: h.regions.id, cycleId: id, mode: h.options.mode, trigger, heapBytes: a.heapBytes,
      liveBytes: this.account.liveBytes, topGranule: c.topGranule, timeMs: performance.now(),
    });
    if (h.policy.useStopTheWorld(h.options.mode)) {
      c.stats.fallback = h.options.mode === 'fork';
      this.markStopTheWorld(c);
    } else {
      this.fork(c, keepAlive);
    }
    return done;
  }

  // ---- fork mode -------------------------------------------------------

  private fork(c: Cycle, keepAlive: boolean): void {
    const h = this.host;
    const fault = h.options.fault;
    const faulty = fault && (!fault.cycles || fault.cycles(c.stats.id));
    const t0 = process.hrtime.bigint();
    const r = h.addon.forkCycle(
      h.regions.id, c.stats.id, c.topGranule, h.roots.highWater,
      faulty ? FAULT_CODES[fault.kind] : 0, faulty ? fault.arg ?? 0 : 0);
    const pauseNs = Number(process.hrtime.bigint() - t0);
    if (r.pid < 0) {
      // No child: say so (once per heap) and collect stop-the-world instead.
      h.fellBack(`fork() failed: ${r.message} (errno ${r.errno})`);
      c.stats.fallback = true;
      this.markStopTheWorld(c);
      return;
    }
    this.phase = 'marking';
    const child = new ChildSession(h.addon, r.pid, r.fd);
    c.child = child;
    c.stats.childPid = r.pid;
    c.stats.pauseUs = pauseNs / 1000;
    c.stats.forkUs = r.forkNs / 1000;
    h.publish('fork', {
      heapId: h.regions.id, cycleId: c.stats.id, pid: r.pid, pauseUs: c.stats.pauseUs, forkUs: c.stats.forkUs,
      timeMs: performance.now(),
    });
    const v = h.views;
    c.reader = new StreamReader(
      { cycleId: c.stats.id, topGranule: c.topGranule, granuleBytes: GRANULE_BYTES },
      (words, offset) => { c.stagedObjects += stageMarks(v.allocBits, v.markBits, words, offset); });
    const timeout = h.policy.childTimeoutMs(h.allocator.heapBytes);
    const socket = child.open(keepAlive, timeout,
      () => this.fail(c, { reason: 'WATCHDOG', message: `the child ran over ${timeout} ms and was killed` }));
    socket.on('data', (data: Buffer) => this.onData(c, data));
    socket.on('end', () => this.onEnd(c));
    socket.on('error', (e) => this.fail(c, { reason: 'STREAM_SHORT', message: `pipe error: ${e.message}` }));
  }

  private onData(c: Cycle, data: Buffer): void {
    if (c !== this.cycle || c.failure) return;
    if (c.firstByteMs === 0) c.firstByteMs = performance.now();
    try {
      c.reader!.push(data);
    } catch (e) {
      // A chunk that fails its checks aborts at once, whatever the child does next.
      this.fail(c, streamVerdict(e));
    }
  }

  /** The child closed the pipe: check the end of the stream, reap, and let childVerdict() decide. */
  private onEnd(c: Cycle): void {
    if (c !== this.cycle || c.failure || c.streamEnded) return;
    c.streamEnded = true;
    const streamFailure = this.endOfStream(c);
    c.child!.reapThen(() => c === this.cycle && !c.failure, (end) => this.childEnded(c, end, streamFailure));
  }

  /** The trailer arrived (or should have): its checks, then the child's figures. */
  private endOfStream(c: Cycle): Verdict | undefined {
    try {
      c.reader!.end();
      checkTrailerClaims(c.reader!.trailer!, c.stagedObjects);
    } catch (e) {
      return streamVerdict(e);
    }
    this.recordChildFigures(c);
    return undefined;
  }

  /** The one place a cycle learns its child's fate, on every path. */
  private childEnded(c: Cycle, end: ChildEnd | null, streamFailure: Verdict | undefined): boolean {
    const verdict = childVerdict(end, streamFailure);
    if (verdict) {
      this.fail(c, verdict);
      return false;
    }
    this.streamAccepted(c);
    return true;
  }

  private recordChildFigures(c: Cycle): void {
    const t = c.reader!.trailer!;
    const s = c.stats;
    s.objectsMarked = t.objectsMarked;
    s.bytesMarked = t.bytesMarked;
    s.markMs = t.markNs / 1e6;
    s.childMs = t.childNs / 1e6;
    s.childMaxRssKb = t.childMaxRssKb;
    s.markStackHighWater = t.markStackHighWater;
    s.overflowRescans = t.overflowRescans;
    s.cowBytes = t.cowPages < 0 ? -1 : t.cowPages * this.pageBytes;
    s.bitmapBytes = c.reader!.header!.bitmapBytes;
    s.streamBytes = c.reader!.bytesReceived;
    this.host.publish('childDone', {
      heapId: this.host.regions.id, cycleId: s.id, pid: c.child!.pid, markMs: s.markMs, childMs: s.childMs,
      objectsMarked: s.objectsMarked, bytesMarked: s.bytesMarked, childMaxRssKb: s.childMaxRssKb,
      cowBytes: s.cowBytes, timeMs: performance.now(),
    });
  }

  /** The stream validated and the child exited 0: nothing can abort this cycle now. */
  private streamAccepted(c: Cycle): void {
    c.child!.closeChannel();
    this.host.publish('stream', {
      heapId: this.host.regions.id, cycleId: c.stats.id, pid: c.child!.pid, bitmapBytes: c.stats.bitmapBytes,
      streamBytes: c.stats.streamBytes, firstByteMs: c.firstByteMs, timeMs: performance.now(),
    });
    this.beginSweep(c);
  }

  /**
   * Aborts the cycle in flight (docs/design.md, invariant 3): kill and reap
   * the child, clear every mark bit, free nothing, report.
   */
  private fail(c: Cycle, verdict: Verdict): void {
    if (c !== this.cycle || c.failure) return;
    c.failure = verdict;
    if (c.child) {
      c.child.closeChannel();
      c.child.kill();
    }
    // Black bits and any staged child bits: none of it may outlive the cycle,
    // or the next marker would skip objects it has not traced.
    const h = this.host;
    h.views.markBits.fill(0, 0, Math.ceil(h.allocator.topGranule / 32));
    this.settle(c, { error: new CycleAbortedError(verdict.reason, c.stats.id, verdict.message) });
  }

  /**
   * Called by an allocation that found the heap full while the child marks:
   * reads the rest of the stream synchronously (bounded by the watchdog's
   * deadline), reaps the child and lets childVerdict() decide, as the
   * event-loop path does. Returns whether a sweep is now running.
   */
  finishMarkingSync(): boolean {
    const c = this.cycle;
    const child = c?.child;
    if (!c || !child || this.phase !== 'marking' || !child.socket || !c.reader) return this.phase === 'sweeping';
    const h = this.host;
    const deadline = Date.now() + h.policy.childTimeoutMs(h.allocator.heapBytes);
    try {
      let buffered: Buffer | null;
      while ((buffered = child.socket.read() as Buffer | null) !== null) c.reader.push(buffered);
      const buf = new Uint8Array(1 << 20);
      while (!c.reader.done) {
        const n = h.addon.readBlocking(child.fd, buf, Math.max(1, deadline - Date.now()));
        if (n === 0) break;  // end of stream: endOfStream() judges it
        if (n === -1) {
          if (Date.now() >= deadline) throw new StreamError('WATCHDOG', 'the child did not finish in time');
          continue;
        }
        if (n < 0) throw new StreamError('STREAM_SHORT', `pipe read failed (errno ${-n})`);
        c.reader.push(buf.subarray(0, n));
      }
    } catch (e) {
      this.fail(c, streamVerdict(e));
      return false;
    }
    c.streamEnded = true;
    const streamFailure = this.endOfStream(c);
    return this.childEnded(c, child.reapSync(deadline - Date.now()), streamFailure);
  }

  // ---- stop-the-world --------------------------------------------------

  private markStopTheWorld(c: Cycle): void {
    const h = this.host;
    const t0 = process.hrtime.bigint();
    const r = h.addon.markInProcess(h.regions.id, c.topGranule, h.roots.highWater);
    const pauseNs = Number(process.hrtime.bigint() - t0);
    c.stats.pauseUs = pauseNs / 1000;
    if (r.status !== 0) {
      this.fail(c, { reason: 'HEAP_CORRUPT', message: `reference ${r.badRef} is not an object` });
      return;
    }
    const s = c.stats;
    s.objectsMarked = r.objects;
    s.bytesMarked = r.bytes;
    s.markMs = r.ns / 1e6;
    s.markStackHighWater = r.stackHighWater;
    s.overflowRescans = r.overflowRescans;
    h.publish('mark', {
      heapId: h.regions.id, cycleId: s.id, markMs: s.markMs, objectsMarked: s.objectsMarked,
      bytesMarked: s.bytesMarked, timeMs: performance.now(),
    });
    this.beginSweep(c);
  }

  // ---- sweeping --------------------------------------------------------

  private beginSweep(c: Cycle): void {
    this.host.sweepStarting();
    this.phase = 'sweeping';
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
    let failAfter = fault?.kind === 'sweep-worker-throw' && (!fault.cycles || fault.cycles(c.stats.id)) ? fault.arg ?? 1 : 0;
    const top = this.host.allocator.topSpan;
    for (let from = 1; from < top; from += TASK_SPANS) {
      c.tasksPending++;
      pool.run({ heapId: this.host.regions.id, cycleId: c.stats.id, from, to: Math.min(top, from + TASK_SPANS), failAfter })
        .then((r) => this.taskDone(c, r), (e) => this.taskFailed(c, e as Error));
      failAfter = 0;
    }
    if (c.tasksPending === 0) this.sweepImmediate = setImmediate(() => this.sweepSlice(c));
  }

  private taskDone(c: Cycle, r: SweepTaskResult): void {
    if (c !== this.cycle) return;
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

  private taskFailed(c: Cycle, e: Error): void {
    if (c !== this.cycle) return;
    c.sweepFailure ??= e;
    this.taskSettled(c);
  }

  private taskSettled(c: Cycle): void {
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
   * loudly (CycleAbortedError SWEEP_FAILED).
   */
  private sweepFailed(c: Cycle, e: Error): void {
    const h = this.host;
    const a = h.allocator;
    const v = h.views;
    for (let s = 1; s < a.topSpan; s++) {
      const e0 = s * SPAN_WORDS;
      const state = Atomics.load(v.spans, e0 + SW_STATE);
      if (state !== SPAN_UNSWEPT && state !== SPAN_SWEEPING) continue;
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
    h.sweepFinished();
    this.settle(c, { error: new CycleAbortedError('SWEEP_FAILED', c.stats.id, `a sweeper thread failed (${e.message})`) });
  }

  /** Background sweeping on the main thread, a slice per event-loop turn. */
  private sweepSlice(c: Cycle): void {
    this.sweepImmediate = undefined;
    if (c !== this.cycle || this.closed) return;
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
  finishSweepSync(): void {
    const c = this.cycle;
    if (!c || this.phase !== 'sweeping') return;
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

  private completeSweep(c: Cycle): void {
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
    this.settle(c, { stats: s });
  }

  /**
   * The one way a cycle ends - completed, aborted, or cut short by close() -
   * so that every end leaves the same state: phase idle, no cycle, the
   * figures and policy told, the waiters answered.
   */
  private settle(c: Cycle, outcome: { stats: CycleStats } | { error: CycleAbortedError; closing?: boolean }): void {
    const h = this.host;
    this.phase = 'idle';
    this.cycle = undefined;
    if ('stats' in outcome) {
      const s = outcome.stats;
      h.policy.cycleCompleted(s.liveBytesAfter, s.heapBytesAfter);
      h.publish('sweepEnd', s);
      this.account.cycleCompleted(s);
      h.cycleCompleted(s);
      for (const w of c.waiters) w.resolve(s);
      return;
    }
    const error = outcome.error;
    if (!outcome.closing) {
      this.account.aborted++;
      h.policy.cycleAborted();
      h.cycleAborted(error);
    }
    for (const w of c.waiters) w.reject(error);
  }

  // ---- close -----------------------------------------------------------

  /** Kills and reaps any child, stops sweeping; the cycle is aborted (CLOSED). */
  close(): void {
    this.closed = true;
    const c = this.cycle;
    if (this.sweepImmediate) clearImmediate(this.sweepImmediate);
    this.sweepImmediate = undefined;
    if (!c) return;
    if (this.phase === 'sweeping') {
      // Sweeping frees only what the validated bitmap says is garbage; the
      // heap is going away anyway, so just stop.
      this.settle(c, { error: new CycleAbortedError('CLOSED', c.stats.id, 'the heap was closed during the sweep'), closing: true });
      return;
    }
    this.fail(c, { reason: 'CLOSED', message: 'the heap was closed while the child marked' });
  }
}


/** A stream that failed its checks: its own reason, or INTERNAL for a bug of ours while reading it. */
function streamVerdict(e: unknown): Verdict {
  if (e instanceof StreamError) return { reason: e.reason, message: e.message };
  return { reason: 'INTERNAL', message: (e as Error).message };
}

function emptyStats(id: number, mode: 'fork' | 'stw', trigger: Trigger, heapBytes: number): CycleStats {
  return {
    id, mode, trigger, fallback: false, pauseUs: 0, forkUs: 0, childPid: 0, markMs: 0, childMs: 0,
    childMaxRssKb: 0, cowBytes: 0, objectsMarked: 0, bytesMarked: 0, markStackHighWater: 0, overflowRescans: 0,
    bitmapBytes: 0, streamBytes: 0, objectsFreed: 0, bytesFreed: 0, sweepMs: 0, mainThreadSweepMs: 0, mainThreadSweepMaxMs: 0,
    spansSwept: 0, workerSweepMs: 0, workerSpansSwept: 0, workers: [], heapBytesBefore: heapBytes, heapBytesAfter: heapBytes, liveBytesAfter: 0,
    bytesReturned: 0, totalMs: 0,
  };
}

