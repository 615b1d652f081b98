// The collector: drives one garbage-collection cycle at a time.
//
// One cycle, in fork mode, step by step (the invariants cited are those
// of docs/design.md, numbered as there):
//
//  1. Start, at a safepoint only (docs/design.md, invariant 4): from the event loop
//     (an immediate scheduled when the policy's trigger was crossed, a timer
//     its backstop: src/api/core.ts, scheduleIfDue), from heap.safepoint(),
//     or from heap.collect(). Never inside an allocation.
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
//     header, bitmap chunks and trailer. The StreamReader (src/collector/stream.ts)
//     checks each chunk's checksum as it arrives; the addon (stageChunk, with
//     stageMarks() as its reference; src/collector/intake.ts) rejects a mark on a
//     granule that holds no object (a zombie) and ORs the chunk into the
//     parent's mark bitmap, on top of the black bits from step 3.
//  5. At end of stream the trailer must have validated (whole-stream
//     checksum, object count equal to the bits received), and the child is
//     reaped: it must have exited 0. Anything else - a short or corrupt
//     stream, a non-zero exit, a signal, the watchdog - aborts the cycle
//     (invariant 3): the mark bitmap is cleared and NOTHING is freed.
//     childVerdict() (src/collector/child-session.ts) turns how the child
//     ended into the abort reason, on every path: the event loop, an
//     allocation that waits for the child (finishMarkingSync), an abort.
//  6. Phase 'sweeping': every IN_USE span becomes UNSWEPT. The mutator sweeps
//     a few spans of the class it needs on demand (lazy, src/memory/allocator.ts);
//     sweeper threads claim the rest from a shared cursor, one task per
//     thread (src/memory/sweep-board.ts), or the main thread does, a slice
//     at a time between event-loop turns. A swept span's mark bits are
//     cleared, so the bitmap is zero again when the last span is done.
//
// Steps 4-7 need no event-loop turn: heap.safepoint() and an allocation
// that grows the heap call advance(), which reads what the pipe holds
// without blocking, reaps with WNOHANG, starts the sweep and completes it
// from the sweep board. Every wait of the main thread on all this is timed
// (src/collector/stalls.ts) into the cycle's CycleStats.
//  7. Sweep complete: free spans go back to the OS beyond a small reserve,
//     the policy sets the next trigger from the live bytes, and the cycle's
//     figures are published. Only now may the next cycle fork. Complete,
//     abort and close all end the cycle through settle().
//
// In stw mode steps 2-5 are one call to the same native marker in-process
// (invariant 5), and the sweep (step 6) starts at once.
import { Accounting } from './accounting.js';
import { CycleAbortedError, type AbortReason } from '../api/errors.js';
import type { Allocator } from '../memory/allocator.js';
import type { ChildEnd, NativeAddon, RegionViews, RestoreFigures } from '../platform/native.js';
import { FAULT_CODES, faultsCycle, type ResolvedOptions } from '../api/options.js';
import type { Policy } from './policy.js';
import type { RootTable } from '../api/root-table.js';
import type { CycleStats, Trigger } from '../api/stats.js';
import { SweepTally, claimSpan, popcount, sweepClaimedSpan } from '../memory/sweeper.js';
import type { HeapViews } from '../memory/views.js';
import { hugeRangesToRestore, residentSpans } from '../memory/huge-pages.js';
import { faultsSince, markFaults, type FaultMark, type FaultReaders } from './parent-faults.js';
import type { CycleEventMap, CycleEventName } from '../api/events.js';
import type { SweepPool } from '../memory/sweep-pool.js';
import type { SweepTaskResult } from '../memory/sweep-worker.js';
import {
  FREE_CLEAN, GRANULE_BYTES, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_FREE, SPAN_IN_USE, SPAN_SWEEPING, SPAN_UNSWEPT, SPAN_WORDS,
  SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from '../memory/layout.js';
import { StreamError, StreamReader, checkTrailerClaims } from './stream.js';
import { INTAKE_SLICE_NS, PacedIntake, nativeChunkSink } from './intake.js';
import { SweepDriver, type SweepRun } from './sweep-driver.js';
import { ChildSession, childVerdict, readBuffer, type Verdict } from './child-session.js';
import { StallClock, emptyBreakdown } from './stalls.js';
import { MarkChoice } from './mark-choice.js';

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
  /**
   * The sweep is over (or given up): run the finalization callbacks of what it
   * freed, from the event loop; `notFreed` names the unmarked objects a failed
   * sweep left in place.
   */
  sweepFinished(notFreed?: (g: number) => boolean): void;
  /** Publishes a phase of the cycle (src/api/events.ts). */
  publish<K extends CycleEventName>(name: K, payload: CycleEventMap[K]): void;
  cycleCompleted(stats: CycleStats): void;
  cycleAborted(error: CycleAbortedError): void;
  /** The heap ran stop-the-world because it could not fork (reported once per heap). */
  fellBack(reason: string): void;
  /** A child crashed while selective fork was on: plain fork from now on (reported once). */
  selectiveForkOff(reason: string): void;
  /** A fork left nothing out (selective fork off, or not applied): the child shares the whole arena. */
  forkedPlainly(): void;
  /** The minor faults the heap's prefault thread took so far (0 without one). */
  prefaultFaults(): number;
  /** Sweeper threads could not run: the main thread sweeps instead (reported once per heap). */
  sweeperFailed(error: Error, died?: boolean): void;
}

interface Waiter {
  resolve(stats: CycleStats): void;
  reject(error: Error): void;
}

/** One cycle in flight. */
interface Cycle extends SweepRun {
  topGranule: number;
  waiters: Waiter[];
  // fork mode
  child?: ChildSession;
  reader?: StreamReader;
  /** Paces the reader's intake (at most a slice of it per turn or safepoint). */
  intake?: PacedIntake;
  streamEnded: boolean;
  stagedObjects: number;
  firstByteMs: number;
  failure?: Verdict;
  /** What the end of the stream said (checked once, on whichever path saw the end first). */
  streamFailure?: Verdict;
  /** The parent's minor faults at the cycle's start, and its restore thread's (parent-faults.ts). */
  faults0: FaultMark;
  /**
   * Bytes counted since the previous cycle when this one started (the count
   * starts again from 0): an abort frees nothing, so it adds them back, or
   * a heap at maxHeap, where failed allocations count nothing, never
   * reached its trigger again (found in review).
   */
  allocatedBefore: number;
  /** Bytes of the stream that reached this process so far (the socket's, and a safepoint's direct reads), processed or still queued. */
  bytesArrived: number;
  /** Set when the child is first judged past its deadline (judgeLate). */
  late?: LateChild;
  /** Fork mode, marked in-process by choice (mark-choice.ts): what the mark was allowed, µs; 0 otherwise. */
  inProcessAllowanceUs: number;
}

/**
 * A child past its deadline, judged by what it does from then on rather
 * than by when the main thread looks (docs/failure-model.md, "The
 * watchdog"). Every path shares one: the timer, a safepoint, and an
 * allocation at maxHeap that reads the rest of the stream synchronously.
 */
interface LateChild {
  /** When what is left of the stream must have arrived (performance.now() ms). */
  streamBy: number;
  /** bytesArrived at the last look that found more, and when that was. */
  seen: number;
  progressAt: number;
  /** When a child whose whole stream is here must have exited (set when the stream is first seen whole). */
  exitBy: number;
  /** When the main thread last looked (read the pipe and judged). */
  lookedAt: number;
}

export class Collector {
  phase: Phase = 'idle';
  private cycle: Cycle | undefined;
  private nextId = 1;
  private closed = false;
  private readonly pageBytes: number;
  /** Live bytes and objects, allocation since the last cycle, cumulative figures. */
  readonly account = new Accounting();

  /** Every wait of the main thread on the collector (src/collector/stalls.ts). */
  readonly stalls = new StallClock();

  private readonly sweeper: SweepDriver;
  /** The restore thread's totals at the last fork (native/huge_page_restore.cc). */
  private restoreSeen: RestoreFigures = NO_RESTORE;
  /** The child was reaped and the sweep runs: restore the pages when the cycle ends (streamAccepted says why). */
  private restoreAfterSweep = false;
  /** Selective fork, until a child crashes with it (then plain fork for good). */
  private selectiveFork: boolean;
  /** Fork mode: whether a cycle marks in a child or in-process (src/collector/mark-choice.ts). */
  private readonly markChoice: MarkChoice;
  /**
   * A ref'd handle held while someone awaits the cycle in flight (collect(),
   * or a collect() joined behind an automatic cycle): the automatic cycle's
   * pipe, watchdog and sweep timers are unref'd so that a heap nobody waits
   * on never keeps Node alive, but an awaited cycle must, or Node exits
   * with the await unsettled.
   */
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(private readonly host: CycleHost) {
    this.pageBytes = host.addon.layoutConstants().pageSize;
    this.selectiveFork = host.options.selectiveFork;
    this.markChoice = new MarkChoice(host.options.inProcessMarkUs);
    this.sweeper = new SweepDriver(host, this.account, {
      completed: (c) => this.settle(c as Cycle, { stats: c.stats }),
      failed: (c, error) => this.settle(c as Cycle, { error }),
    }, { stalls: this.stalls, sweeperFailed: (e, died) => host.sweeperFailed(e, died) });
    host.allocator.stalls = this.stalls;
  }

  /**
   * Whether a cycle started now would fork (not marked in-process by the
   * mode, a fallback or the marker choice): only a fork waits for the heap's
   * threads' work in progress (core.ts, helpersDefer). Asked before start(),
   * with what start() will ask (cycleStart listeners' allocation aside).
   */
  wouldFork(): boolean {
    const h = this.host;
    if (h.policy.useStopTheWorld(h.options.mode)) return false;
    return this.markChoice.wouldChoose(this.account.allocatedSinceCycle, h.policy.goal) === 0;
  }

  /** Sweeper threads were found unusable between sweeps or during one: the main thread sweeps from now on. */
  sweeperThreadsLost(): void { this.sweeper.threadsLost(); }

  /**
   * A cycle is in flight, from its start (before the 'cycleStart'
   * listeners run, phase still idle) to its end: collect() waits behind it,
   * and no second cycle starts inside it (a listener's collect() used to,
   * and the two cycles' marks and sweeps mixed).
   */
  get busy(): boolean { return this.cycle !== undefined; }

  /** The phase, read afresh (a call may have moved it on since TypeScript last narrowed `phase`). */
  private phaseNow(): Phase { return this.phase; }

  /** The id of the cycle in flight, or 0. */
  get cycleId(): number { return this.cycle?.stats.id ?? 0; }

  /** Waits for the cycle in flight to finish (resolves with its figures). */
  join(): Promise<CycleStats> {
    const c = this.cycle;
    if (!c) throw new Error('no cycle in flight');
    this.holdEventLoop();
    return new Promise((resolve, reject) => c.waiters.push({ resolve, reject }));
  }

  private holdEventLoop(): void {
    this.keepAlive ??= setInterval(() => {}, 2 ** 30);
  }

  private releaseEventLoop(): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = undefined;
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
      bytesArrived: 0,
      stagedObjects: 0,
      firstByteMs: 0,
      sweepStartNs: 0n,
      mainSweepNs: 0,
      maxSliceNs: 0,
      tally: new SweepTally(),
      faults0: markFaults(this.faultReaders),
      allocatedBefore: this.account.allocatedSinceCycle,
      inProcessAllowanceUs: 0,
    };
    this.cycle = c;
    const done = new Promise<CycleStats>((resolve, reject) => c.waiters.push({ resolve, reject }));
    if (keepAlive) this.holdEventLoop();
    h.newEpoch();
    this.account.allocatedSinceCycle = 0;
    this.account.allocationFailed = false;
    h.publish('cycleStart', {
      heapId: h.regions.id, cycleId: id, mode: h.options.mode, trigger, heapBytes: a.heapBytes,
      liveBytes: this.account.liveBytes, topGranule: c.topGranule, timeMs: performance.now(),
    });
    // A listener may have allocated, and rooted, objects in new spans: the
    // snapshot's top is the heap's top at the fork (or stw mark), not at the
    // start of the cycle, or the marker takes a root above it for corruption.
    // A listener closed the heap: the cycle was settled (CLOSED), nothing of it goes on.
    if (this.cycle !== c) return done;
    c.topGranule = a.topGranule;
    if (h.policy.useStopTheWorld(h.options.mode)) {
      c.stats.fallback = h.options.mode === 'fork';
      c.stats.marker = 'in-process';
      this.markStopTheWorld(c);
    } else {
      // A small live set marks in-process: the fork would cost more than the
      // mark it saves (mark-choice.ts). (allocatedSinceCycle: what
      // cycleStart listeners allocated.)
      c.inProcessAllowanceUs = this.markChoice.choose(c.allocatedBefore + this.account.allocatedSinceCycle, h.policy.goal);
      if (c.inProcessAllowanceUs > 0) {
        c.stats.marker = 'in-process';
        this.markStopTheWorld(c);
      } else {
        this.fork(c, keepAlive);
      }
    }
    return done;
  }

  // ---- fork mode -------------------------------------------------------

  private fork(c: Cycle, keepAlive: boolean): void {
    const h = this.host;
    const fault = h.options.fault;
    const faulty = fault && faultsCycle(fault, c.stats.id);
    this.countPagesRestored(c);
    const stall = this.stalls.begin('fork');
    const t0 = process.hrtime.bigint();
    const r = h.addon.forkCycle(
      h.regions.id, c.stats.id, c.topGranule, h.roots.highWater,
      faulty ? FAULT_CODES[fault.kind] : 0, faulty ? fault.arg ?? 0 : 0, this.selectiveFork);
    const pauseNs = Number(process.hrtime.bigint() - t0);
    // The child's start on performance.now()'s scale: the two clocks read
    // side by side, not the pause's end (the thread may be preempted
    // between the call's return and any later reading).
    const childStartMs = performance.now() - (Number(process.hrtime.bigint()) - r.forkStartNs) / 1e6;
    this.stalls.end(stall);
    if (r.pid < 0) {
      // No child: say so (once per heap) and collect stop-the-world instead.
      // (The errno is pipe2()'s or fork()'s: the addon makes the pipe first.)
      h.fellBack(`could not fork a child: ${r.message} (errno ${r.errno}, from pipe2() or fork())`);
      if (this.cycle !== c) return;  // a 'fallback' listener closed the heap
      c.stats.fallback = true;
      c.stats.marker = 'in-process';
      this.markStopTheWorld(c);
      return;
    }
    this.phase = 'marking';
    this.markChoice.forked(pauseNs / 1000);
    // The child now shares every resident page: allocate where it does not.
    h.allocator.childForked(this.account.liveBytes + h.policy.retainFreeBytes(this.account.liveBytes));
    const child = new ChildSession(h.addon, r.pid, r.fd);
    c.child = child;
    c.stats.childPid = r.pid;
    c.stats.pauseUs = pauseNs / 1000;
    c.stats.forkUs = r.forkNs / 1000;
    c.stats.forkPrepareUs = (r.prepareNs + r.restoreNs) / 1000;
    c.stats.forkCpuUs = r.cpuNs / 1000;
    c.stats.selectiveFork = r.selective;
    if (!r.selective) h.forkedPlainly();
    h.publish('fork', {
      heapId: h.regions.id, cycleId: c.stats.id, pid: r.pid, pauseUs: c.stats.pauseUs, forkUs: c.stats.forkUs,
      childStartMs, timeMs: performance.now(),
    });
    // A 'fork' listener closed the heap: the child was killed and reaped, its
    // pipe closed. Opening it now would arm a watchdog for a dead cycle (a
    // timer that kept the process alive for childTimeoutMs, in review).
    if (this.cycle !== c) return;
    const v = h.views;
    c.reader = new StreamReader(
      { cycleId: c.stats.id, topGranule: c.topGranule, granuleBytes: GRANULE_BYTES },
      nativeChunkSink(h.addon, h.regions.id, v.allocBits, v.markBits, (n) => { c.stagedObjects += n; }));
    const timeout = h.policy.childTimeoutMs(h.allocator.heapBytes);
    c.intake = new PacedIntake((data) => this.onData(c, data), () => this.onEnd(c), this.stalls);
    const socket = child.open(keepAlive, timeout, () => this.watchdogFired(c), (data) => {
      c.bytesArrived += data.length;
      c.intake!.data(data);
    });
    socket.on('end', () => c.intake!.end());
    socket.on('error', (e) => this.fail(c, { reason: 'STREAM_SHORT', message: `pipe error: ${e.message}` }));
  }

  /**
   * The watchdog's timer fired: at the deadline, or to look at a late child
   * again. The child may have finished in time with the main thread looking
   * only now (a long synchronous stretch; or the timers phase ran before
   * the poll phase read the pipe): then its whole stream is in the pipe.
   * So the pipe is read first (without waiting), and the child judged by
   * what it does from then on (judgeLate): it is killed (WATCHDOG) only if
   * it stops (a finished cycle was thrown away as "ran over"; found in
   * review).
   */
  private watchdogFired(c: Cycle): void {
    if (c !== this.cycle || c.failure) return;
    if (this.phase === 'marking' && c.child?.socket) {
      const child = c.child;
      this.pumpPipe(c);
      // Timers run on libuv's whole-millisecond clock, so this one may fire
      // up to a millisecond before deadlineMs: then pumpPipe did not judge,
      // and nothing would look again (found in review: a hung child lived
      // on, and collect() never settled, in 27 of 150 tries).
      const now = performance.now();
      if (c === this.cycle && !c.failure && this.phase === 'marking' && now < child.deadlineMs) child.rearm(child.deadlineMs - now);
      return;
    }
    this.fail(c, { reason: 'WATCHDOG', message: ranOver(c) });
  }

  /**
   * Where a late child stands, made when it is first judged late (on
   * whichever path): what is left of its stream must arrive within
   * LATE_STREAM_MS plus a second per LATE_MIN_RATE bytes still to come.
   */
  private lateState(c: Cycle, now: number): LateChild {
    if (c.late) return c.late;
    const toCome = Math.max(0, c.topGranule / 8 - c.bytesArrived);
    c.late = {
      streamBy: now + LATE_STREAM_MS + toCome / LATE_MIN_RATE * 1000, seen: c.bytesArrived, progressAt: now, exitBy: Infinity, lookedAt: now,
    };
    return c.late;
  }

  /**
   * A look at a late child, the pipe just read: whatever arrived since the
   * last look is progress. Time in which nobody looked is not charged to
   * its stream: a stream larger than the pipe waits for its reader, and a
   * program busy for a second between two looks would otherwise have its
   * finished child killed (found in review). A look that finds nothing new
   * extends nothing, so a hung child still dies.
   */
  private lookedLate(c: Cycle, late: LateChild, now: number): void {
    const gap = now - late.lookedAt;
    late.lookedAt = now;
    if (c.bytesArrived > late.seen) {
      if (gap > LATE_READ_MS) late.streamBy += gap - LATE_READ_MS;
      late.seen = c.bytesArrived;
      late.progressAt = now;
    }
  }

  /** When a late child whose whole stream is here must have exited (from the first look that found it whole). */
  private exitDeadline(late: LateChild, now: number): number {
    if (late.exitBy === Infinity) late.exitBy = now + EXIT_GRACE_MS;
    return late.exitBy;
  }

  /**
   * The child is past its deadline (the timer, or a safepoint, found it):
   * judge it without waiting for it, and look again on the timer. It is
   * killed (WATCHDOG) when none of its stream arrived for LATE_READ_MS (a
   * child blocked on a full pipe goes on as soon as the pipe is read, and
   * the pipe was read just before this), when the rest of its stream has
   * not arrived by the late budget (lateState), or when its whole stream
   * is here and it has not exited within EXIT_GRACE_MS. The main thread
   * goes on meanwhile: the old path read the rest of the stream
   * synchronously, blocking up to a second or more (found in review); only
   * an allocation at maxHeap still waits (finishMarkingSync), under the
   * same bounds.
   */
  private judgeLate(c: Cycle): void {
    const child = c.child!;
    // What arrived is taken at once (the pacing is for the mutator's sake;
    // this is the rare path): the trailer may be in the queue.
    if (c.intake!.queued) c.intake!.drain(BigInt(Number.MAX_SAFE_INTEGER));
    if (c !== this.cycle || c.failure || this.phase !== 'marking' || child.reaped) return;
    const now = performance.now();
    const late = this.lateState(c, now);
    this.lookedLate(c, late, now);
    if (c.streamEnded || c.reader!.done) {
      // The whole stream is here: the child is exiting (tearing down a large
      // address space takes a while). onEnd's poll, or the next safepoint's
      // read, reaps it and moves the cycle on.
      const exitBy = this.exitDeadline(late, now);
      if (now >= exitBy) return this.fail(c, { reason: 'WATCHDOG', message: ranOver(c) });
      child.rearm(exitBy - now);
      return;
    }
    if (now - late.progressAt >= LATE_READ_MS || now >= late.streamBy) {
      return this.fail(c, { reason: 'WATCHDOG', message: ranOver(c) });
    }
    child.rearm(Math.min(late.progressAt + LATE_READ_MS, late.streamBy) - now);
  }

  private onData(c: Cycle, data: Uint8Array): void {
    if (c !== this.cycle || c.failure) return;
    if (c.firstByteMs === 0) c.firstByteMs = performance.now();
    const stall = this.stalls.begin('intake');
    try {
      c.reader!.push(data);
    } catch (e) {
      // A chunk that fails its checks aborts at once, whatever the child does next.
      this.fail(c, streamVerdict(e));
    } finally {
      this.stalls.end(stall);
    }
  }

  /**
   * Moves the cycle in flight on without blocking, from a safepoint or an
   * allocation's slow path, so that a program that rarely yields to the
   * event loop still completes its cycles (the event loop does the same
   * work when it gets the chance):
   *   marking  - reads whatever the pipe holds now (a non-blocking read),
   *              checks and stages it; at end of stream checks the trailer
   *              and reaps the child if it has exited (WNOHANG), then starts
   *              the sweep;
   *   sweeping - sweeps a slice on this thread if no sweeper thread does,
   *              and completes the cycle once the board says every span is
   *              swept.
   * Never waits for the child or a thread.
   */
  advance(): void {
    const c = this.cycle;
    if (!c) return;
    if (this.phase === 'marking') this.pumpPipe(c);
    if (this.phase === 'sweeping') this.sweeper.advance();
  }

  private pumpPipe(c: Cycle): void {
    const child = c.child;
    if (!child || c.failure) return;
    this.readPipe(c, child);
    // A program that never yields never lets the timer fire: hold the child
    // to its deadline here too (found in review: a hung child lived on, and
    // a late one was accepted), after reading what the pipe holds.
    if (c === this.cycle && !c.failure && this.phase === 'marking' && performance.now() >= child.deadlineMs) {
      this.judgeLate(c);
    }
  }

  /** Reads what the pipe holds now, for at most a slice, and reaps a child whose stream is over if it has exited. */
  private readPipe(c: Cycle, child: ChildSession): void {
    if (!c.streamEnded) {
      if (!child.socket) return;
      const h = this.host;
      const buf = readBuffer;
      // The socket flows: whatever it took off the pipe went to the paced
      // intake at once, through its onread callback (no socket buffer to
      // drain first), so once the intake's queue is empty, reading the fd
      // directly keeps the order.
      // At most INTAKE_SLICE_NS of it per call: the child refills the pipe
      // as fast as it is read, so "until the pipe is empty" meant the whole
      // stream at once, 13-30 ms at the end of an 800 MiB heap's marking
      // (perf sched: the main thread on CPU throughout, the child waking on
      // each read). The rest waits for the next safepoint or turn.
      const deadline = process.hrtime.bigint() + INTAKE_SLICE_NS;
      // One stall for the slice, opened by its first piece of work (onData's brackets nest in it).
      let stall: number | undefined;
      try {
        if (c.intake!.queued) {
          stall = this.stalls.begin('intake');
          if (!c.intake!.drain(INTAKE_SLICE_NS)) return;
          if (c.streamEnded || c !== this.cycle || c.failure) return;  // the queue held the end (onEnd ran)
        }
        for (;;) {
          if (c !== this.cycle || c.failure) return;
          const n = h.addon.readBlocking(child.fd, buf, 0);  // poll(0): never waits
          if (n === -1) return;  // nothing more now
          stall ??= this.stalls.begin('intake');
          if (n < 0) {
            this.fail(c, { reason: 'STREAM_SHORT', message: `pipe read failed (errno ${-n})` });
            return;
          }
          if (n === 0) break;  // end of stream
          c.bytesArrived += n;
          this.onData(c, buf.subarray(0, n));
          if (process.hrtime.bigint() >= deadline) return;
        }
      } finally {
        if (stall !== undefined) this.stalls.end(stall);
      }
      if (c !== this.cycle || c.failure) return;
      c.streamEnded = true;
      c.streamFailure = this.endOfStream(c);
    }
    // The stream is over: reap without waiting; if the child is still exiting, a later safepoint (or the event loop) will.
    if (child.reaped) return;
    const end = child.reapNow();
    if (end) this.childEnded(c, end, c.streamFailure);
  }

  /** The child closed the pipe: check the end of the stream, reap, and let childVerdict() decide. */
  private onEnd(c: Cycle): void {
    if (c !== this.cycle || c.failure) return;
    if (!c.streamEnded) {
      c.streamEnded = true;
      c.streamFailure = this.endOfStream(c);
    }
    const streamFailure = c.streamFailure;
    c.child!.reapThen(() => c === this.cycle && !c.failure && this.phase === 'marking' && !c.child!.reaped, (end) => this.childEnded(c, end, streamFailure));
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

  private readonly faultReaders: FaultReaders = {
    process: () => process.resourceUsage().minorPageFault,
    threads: () => this.restoreFigures().writableFaults + this.host.prefaultFaults(),
  };

  /** The restore thread's totals so far (all 0 before it first runs). */
  private restoreFigures(): RestoreFigures {
    return this.host.addon.hugePageRestoreFigures(this.host.regions.id);
  }

  /** What the restore thread did since the last fork (it stops at this one). */
  private countPagesRestored(c: Cycle): void {
    const f = this.restoreFigures();
    const was = this.restoreSeen;
    c.stats.hugeRangesRestored = f.rangesCollapsed - was.rangesCollapsed;
    c.stats.hugeRestoreMs = (f.ns - was.ns) / 1e6;
    c.stats.bytesMadeWritable = f.bytesMadeWritable - was.bytesMadeWritable;
    c.stats.makeWritableMs = (f.writableNs - was.writableNs) / 1e6;
    this.restoreSeen = f;
  }

  /**
   * The child is reaped, so no page of the arena is shared any more: in the
   * background, make writable again the pages fork() write-protected, and
   * merge back the huge pages the child's sharing split
   * (native/huge_page_restore.cc).
   */
  private restorePages(): void {
    const h = this.host;
    const top = h.allocator.topSpan;
    // Only on 4 KiB pages: on huge pages the populate measured worse (a longer
    // next fork and child mark; docs/performance-log.md, session 19).
    const writable = h.options.restoreWritable && !h.regions.hugePages ? residentSpans(h.views.spans, top) : NONE;
    const huge = h.regions.hugePages && h.options.restoreHugePages ? hugeRangesToRestore(h.views.spans, top) : NONE;
    if (writable.length > 0 || huge.length > 0) h.addon.restorePages(h.regions.id, writable, huge);
  }

  /** The stream validated and the child exited 0: nothing can abort this cycle now. */
  private streamAccepted(c: Cycle): void {
    c.child!.closeChannel();
    // The pages are restored (huge pages merged back, 4 KiB pages made
    // writable) once the sweep is over, not from here: the restore thread
    // otherwise takes a CPU from the sweeper thread and the mutator right
    // when the sweep needs it (1 GiB live, three interleaved pairs each:
    // the fork-mode sweep 26-34 ms a cycle against 13-16 with 4 KiB pages,
    // 20-30 against 15-18 with huge pages, back to back; the fork pauses,
    // the mutator's faults and its operations the same).
    this.restoreAfterSweep = true;
    this.host.publish('stream', {
      heapId: this.host.regions.id, cycleId: c.stats.id, pid: c.child!.pid, bitmapBytes: c.stats.bitmapBytes,
      streamBytes: c.stats.streamBytes, firstByteMs: c.firstByteMs, timeMs: performance.now(),
    });
    if (this.cycle !== c) return;  // a 'stream' listener closed the heap
    this.beginSweep(c);
  }

  /**
   * Aborts the cycle in flight (docs/design.md, invariant 3): kill and reap
   * the child, clear every mark bit, free nothing, report.
   */
  private fail(c: Cycle, verdict: Verdict, closing = false): void {
    // Once the sweep has begun, the stream was accepted and the child seen to
    // exit 0: nothing can abort the cycle any more (a sweep that fails ends
    // it through the driver, SWEEP_FAILED). A late verdict (a timer, a
    // second look at the child) must not clear the marks the sweep reads.
    if (c !== this.cycle || c.failure || this.phase === 'sweeping') return;
    c.failure = verdict;
    c.intake?.stop();
    this.host.allocator.childGone();
    if (verdict.signal !== undefined && CRASH_SIGNALS.has(verdict.signal) && c.stats.selectiveFork && this.selectiveFork) {
      // A crash (not our SIGKILL, not the OOM killer's) may be a page the
      // child needed and selective fork left out: never fork that way again.
      this.selectiveFork = false;
      this.host.selectiveForkOff(`the child of cycle ${c.stats.id} crashed (signal ${verdict.signal}) while forked selectively`);
    }
    if (c.child) {
      c.child.closeChannel();
      c.child.kill();
      if (c.child.reaped) this.restorePages();
    }
    // Black bits and any staged child bits: none of it may outlive the cycle,
    // or the next marker would skip objects it has not traced.
    const h = this.host;
    h.views.markBits.fill(0, 0, Math.ceil(h.allocator.topGranule / 32));
    this.settle(c, { error: new CycleAbortedError(verdict.reason, c.stats.id, verdict.message), closing });
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
    if (!c || !child || this.phase !== 'marking' || !c.reader) return this.phase === 'sweeping';
    const h = this.host;
    // The watchdog's deadline, from the fork: not a new one from now (found
    // in review: the child had up to twice its time, the thread blocked for
    // a whole timeout when the watchdog was nearly due).
    const deadline = Number.isFinite(child.deadlineMs) ? child.deadlineMs
      : performance.now() + h.policy.childTimeoutMs(h.allocator.heapBytes);
    const stall = this.stalls.begin('syncRead');
    try {
      if (!c.streamEnded) {
        if (!child.socket) return false;
        try {
          // Everything the socket took off the pipe is in the paced intake
          // (its onread callback hands each read over; the socket buffers
          // nothing): take it all, then read the rest of the pipe directly.
          c.intake!.drain(BigInt(Number.MAX_SAFE_INTEGER));
          // The queue may have held the end of the stream: onEnd judged it
          // and, when the child had exited already, reaped it and began the
          // sweep (or failed the cycle). The child's fate is known then;
          // asking again would find no child (ECHILD) and fail a cycle whose
          // sweep runs on its marks, clearing them: every live object in the
          // spans still to sweep would be freed.
          if (c !== this.cycle || c.failure || this.phaseNow() !== 'marking') return this.phaseNow() === 'sweeping';
          // (Reused: a new buffer would bring fresh pages, each a fault
          // inside the kernel's copy into it; child-session.ts.)
          const buf = readBuffer;
          const reader = c.reader;
          // Up to the end of the pipe, not just the trailer: bytes after it
          // fail the stream here as they do on the event-loop path.
          while (!c.streamEnded) {
            // Past the deadline the child is judged by what it does now,
            // not by when this thread came to read (found in review: a
            // stream larger than the pipe waits for its reader, and a child
            // that has written its trailer may still be exiting), under the
            // bounds the timer and the safepoints apply (judgeLate), whose
            // late state this shares: more of the stream within LATE_READ_MS
            // of the last that came, the rest by the late budget
            // (a child trickling its stream kept this thread for as long as
            // it liked; a fixed second killed a 4 GiB heap's finished child
            // under load; found in review), and a complete stream
            // EXIT_GRACE_MS for the pipe to close.
            const start = performance.now();
            const late = start >= deadline;
            let wait = deadline - start;
            if (late) {
              const bounds = this.lateState(c, start);
              this.lookedLate(c, bounds, start);
              if (reader.done) {
                wait = this.exitDeadline(bounds, start) - start;
              } else {
                if (start >= bounds.streamBy) throw new StreamError('WATCHDOG', ranOver(c));
                wait = Math.min(bounds.progressAt + LATE_READ_MS, bounds.streamBy) - start;
              }
            }
            // Past a bound, one read that does not wait: a child blocked on
            // a full pipe (nobody read it meanwhile) has left something there.
            const n = h.addon.readBlocking(child.fd, buf, late ? Math.max(0, wait) : Math.max(1, wait));
            if (n === 0) break;  // end of stream: endOfStream() judges it
            if (n === -1) {
              // (A read begun before the deadline that reached it holding the
              // whole stream goes on to the exit grace.)
              if (late || (performance.now() >= deadline && !reader.done)) throw new StreamError('WATCHDOG', ranOver(c));
              continue;
            }
            if (n < 0) throw new StreamError('STREAM_SHORT', `pipe read failed (errno ${-n})`);
            c.bytesArrived += n;
            c.reader.push(buf.subarray(0, n));
          }
        } catch (e) {
          this.fail(c, streamVerdict(e));
          return false;
        }
        if (!c.streamEnded) {  // (the intake's queue may have held the end: then onEnd judged it)
          c.streamEnded = true;
          c.streamFailure = this.endOfStream(c);
        }
      }
      // (Reaped already: onEnd's first look found it exited, and childEnded has run.)
      if (child.reaped) return this.phaseNow() === 'sweeping';
      // The child closed its pipe: it is exiting (tearing down a large
      // address space takes a while), so it gets at least a grace; past the
      // deadline, the one the late state already set, if any.
      const now = performance.now();
      const exitBy = now >= deadline ? this.exitDeadline(this.lateState(c, now), now) : Math.max(deadline, now + EXIT_GRACE_MS);
      return this.childEnded(c, child.reapSync(Math.max(1, exitBy - now)), c.streamFailure);
    } finally {
      this.stalls.end(stall);
    }
  }

  // ---- stop-the-world --------------------------------------------------

  private markStopTheWorld(c: Cycle): void {
    const h = this.host;
    const stall = this.stalls.begin('stwMark');
    const t0 = process.hrtime.bigint();
    const r = h.addon.markInProcess(h.regions.id, c.topGranule, h.roots.highWater);
    const pauseNs = Number(process.hrtime.bigint() - t0);
    // From here to the sweep's start ('mark' listeners) new objects are black.
    h.allocator.allocateBlack();
    this.stalls.end(stall);
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
    if (this.cycle !== c) return;  // a 'mark' listener closed the heap
    this.beginSweep(c);
  }

  // ---- sweeping (src/collector/sweep-driver.ts) -------------------------

  private beginSweep(c: Cycle): void {
    const stall = this.stalls.begin('sweepStart');
    let over = false;
    try {
      this.host.sweepStarting();
      this.phase = 'sweeping';
      over = this.sweeper.begin(c);
    } finally {
      this.stalls.end(stall);
    }
    // A small heap was swept whole and its sweep completed just now: settle
    // after the stall was recorded (settling takes the cycle's stall figures).
    if (over) this.settle(c, { stats: c.stats });
  }

  /** The heap is full while sweeping: sweep whatever is left right now (src/collector/sweep-driver.ts). */
  finishSweepSync(): void {
    const c = this.cycle;
    if (!c || this.phase !== 'sweeping') return;
    this.sweeper.finishSync(c);
  }

  /**
   * The one way a cycle ends - completed, aborted, or cut short by close() -
   * so that every end leaves the same state: phase idle, no cycle, the
   * figures and policy told, the waiters answered.
   */
  private settle(c: Cycle, outcome: { stats: CycleStats } | { error: CycleAbortedError; closing?: boolean }): void {
    // A cycle ends once: a second end must not reset the phase and cycle of
    // the next one.
    if (c !== this.cycle) return;
    const h = this.host;
    this.phase = 'idle';
    this.cycle = undefined;
    if (this.restoreAfterSweep) {
      this.restoreAfterSweep = false;
      if (!('error' in outcome && outcome.closing)) this.restorePages();
    }
    this.releaseEventLoop();
    if ('stats' in outcome) {
      const s = outcome.stats;
      const w = this.stalls.take();
      s.stallUs = w.stallUs;
      s.maxStallUs = w.maxStallUs;
      s.stalls = w.stalls;
      s.parentMinorFaults = faultsSince(c.faults0, this.faultReaders);
      this.markChoice.marked(s.markMs * 1e6, s.bytesMarked, s.marker === 'in-process', c.inProcessAllowanceUs);
      h.policy.cycleCompleted(s.liveBytesAfter, s.heapBytesAfter, {
        markMs: Number(c.sweepStartNs - c.startNs) / 1e6, sweepMs: s.sweepMs, allocatedBytes: this.account.allocatedSinceCycle,
      });
      // Counted in the heap's totals before anyone hears of it: stats() in a
      // 'sweepEnd' listener includes this cycle, as in a 'cycle' listener.
      this.account.cycleCompleted(s);
      // One object goes to the listeners and to every awaiting collect():
      // none of them may change what the others see (found in review), so
      // its nested parts are frozen too.
      for (const figure of Object.values(s.stalls)) Object.freeze(figure);
      for (const worker of s.workers) Object.freeze(worker);
      Object.freeze(s.stalls);
      Object.freeze(s.workers);
      Object.freeze(s);
      h.publish('sweepEnd', s);
      h.cycleCompleted(s);
      for (const w of c.waiters) w.resolve(s);
      return;
    }
    const error = outcome.error;
    // An aborted cycle has no figures: its waits (in the trace and the
    // 'stall' events) must not be counted in the next cycle's.
    this.stalls.take();
    if (!outcome.closing) {
      this.account.aborted++;
      this.account.allocatedSinceCycle += c.allocatedBefore;
      h.policy.cycleAborted(h.allocator.heapBytes);
      h.cycleAborted(error);
    }
    for (const w of c.waiters) w.reject(error);
  }
  // ---- close -----------------------------------------------------------

  /** Kills and reaps any child, stops sweeping; the cycle is aborted (CLOSED). */
  close(): void {
    this.closed = true;
    const c = this.cycle;
    this.sweeper.stop();
    if (!c) return;
    if (this.phase === 'sweeping') {
      // Sweeping frees only what the validated bitmap says is garbage; the
      // heap is going away anyway, so just stop.
      this.settle(c, { error: new CycleAbortedError('CLOSED', c.stats.id, 'the heap was closed during the sweep', true), closing: true });
      return;
    }
    // As during the sweep: the heap is gone, so no listener hears of it and
    // nothing counts it (an 'abort' listener that read the heap threw
    // HeapClosedError; found by an intermittent failure of the suite).
    this.fail(c, { reason: 'CLOSED', message: c.child ? 'the heap was closed while the child marked' : 'the heap was closed before the cycle swept' }, true);
  }
}

/**
 * How long a child that closed its pipe by its deadline may take to exit
 * before it counts as hung (ms): exiting unmaps its copy of the address
 * space, which takes longer the bigger the heap.
 */
const EXIT_GRACE_MS = 1000;

/**
 * How long a read past the deadline waits for more of the stream (ms): a
 * child blocked on a full pipe goes on within a scheduling delay once it is
 * read; a hung one is killed this long after the main thread first looks.
 */
const LATE_READ_MS = 250;

/**
 * How long the rest of a stream may take past the deadline, all reads
 * together: LATE_STREAM_MS, and a second per LATE_MIN_RATE bytes of the
 * bitmap still to come. A 4 GiB heap's bitmap (32 MiB) took 230-330 ms
 * idle and up to 1.5 s with eight CPU hogs (review); this bounds how long
 * a child trickling its stream holds the main thread.
 */
const LATE_STREAM_MS = 1000;
const LATE_MIN_RATE = 8 * 2 ** 20;

const NO_RESTORE: RestoreFigures = {
  rangesCollapsed: 0, rangesFailed: 0, ns: 0, bytesMadeWritable: 0, writableNs: 0, writableFaults: 0, working: false,
};
const NONE = new Uint8Array(0);

/** The WATCHDOG message. */
function ranOver(c: Cycle): string {
  return `the child ran over ${c.child?.timeoutMs ?? 0} ms and was killed`;
}

/** A stream that failed its checks: its own reason, or INTERNAL for a bug of ours while reading it. */
function streamVerdict(e: unknown): Verdict {
  if (e instanceof StreamError) return { reason: e.reason, message: e.message };
  return { reason: 'INTERNAL', message: (e as Error).message };
}

/** Signals a crashing child dies of: SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS. */
const CRASH_SIGNALS = new Set([4, 5, 6, 7, 8, 11, 31]);

function emptyStats(id: number, mode: 'fork' | 'stw', trigger: Trigger, heapBytes: number): CycleStats {
  return {
    id, mode, trigger, fallback: false, marker: mode === 'fork' ? 'child' : 'in-process', pauseUs: 0, forkUs: 0, forkPrepareUs: 0, forkCpuUs: 0, selectiveFork: false, childPid: 0, markMs: 0, childMs: 0,
    childMaxRssKb: 0, cowBytes: 0, objectsMarked: 0, bytesMarked: 0, markStackHighWater: 0, overflowRescans: 0,
    bitmapBytes: 0, streamBytes: 0, objectsFreed: 0, bytesFreed: 0, sweepMs: 0, mainThreadSweepMs: 0, mainThreadSweepMaxMs: 0,
    spansSwept: 0, workerSweepMs: 0, workerSpansSwept: 0, workers: [], heapBytesBefore: heapBytes, heapBytesAfter: heapBytes, liveBytesAfter: 0,
    bytesReturned: 0, totalMs: 0, stallUs: 0, maxStallUs: 0, stalls: emptyBreakdown(), parentMinorFaults: 0,
    hugeRangesRestored: 0, hugeRestoreMs: 0, bytesMadeWritable: 0, makeWritableMs: 0,
  };
}

