// The collector: drives one garbage-collection cycle at a time.
//
// One cycle, in fork mode, step by step:
//
//  1. Start, at a safepoint only (DESIGN invariant 4): from the event loop
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
import net from 'node:net';
import { CycleAbortedError, type AbortReason } from './errors.js';
import type { Allocator } from './allocator.js';
import type { NativeAddon, RegionViews } from './native.js';
import { FAULT_CODES, type ResolvedOptions } from './options.js';
import type { Policy } from './policy.js';
import type { RootTable } from './roots.js';
import type { CycleStats, Trigger } from './stats.js';
import { SweepTally, claimSpan, popcount, sweepClaimedSpan } from './sweeper.js';
import type { HeapViews } from './views.js';
import type { CycleEventMap, CycleEventName } from './events.js';
import type { SweepPool } from './sweep-pool.js';
import type { SweepTaskResult } from './sweep-worker.js';
import {
  FREE_CLEAN, GRANULE_BYTES, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_FREE, SPAN_IN_USE, SPAN_SWEEPING, SPAN_UNSWEPT, SPAN_WORDS,
  SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from './layout.js';
import { EXIT_HEAP_CORRUPT, StreamError, StreamReader } from './wire.js';

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
  /** After a failed sweep: recount live objects and bytes from the allocation bits. */
  recount(): void;
  /** The bitmap is final and no span is swept yet: clear dead weak fields, take dead finalization entries. */
  sweepStarting(): void;
  /** The sweep is over (or given up): run the finalization callbacks it took, from the event loop. */
  sweepFinished(): void;
  /** Publishes a phase of the cycle (src/events.ts). */
  publish<K extends CycleEventName>(name: K, payload: CycleEventMap[K]): void;
  /** The sweep freed objects: live accounting goes down. */
  freed(objects: number, bytes: number): void;
  liveBytes(): number;
  cycleCompleted(stats: CycleStats): void;
  cycleAborted(error: CycleAbortedError): void;
  /** The heap ran stop-the-world because it could not fork (reported once per heap). */
  fellBack(reason: string): void;
  /** A child crashed while selective fork was on: plain fork from now on (reported once). */
  selectiveForkOff(reason: string): void;
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
  pid: number;
  fd: number;
  socket?: net.Socket;
  reader?: StreamReader;
  watchdog?: NodeJS.Timeout;
  streamEnded: boolean;
  stagedObjects: number;
  firstByteMs: number;
  reaped: boolean;
  failure?: { reason: AbortReason; message: string };
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
  /** Selective fork, until a child crashes with it (then plain fork for good). */
  private selectiveFork: boolean;

  constructor(private readonly host: CycleHost) {
    this.pageBytes = host.addon.layoutConstants().pageSize;
    this.selectiveFork = host.options.selectiveFork;
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
      pid: 0,
      fd: -1,
      streamEnded: false,
      stagedObjects: 0,
      firstByteMs: 0,
      reaped: false,
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
    h.publish('cycleStart', {
      heapId: h.regions.id, cycleId: id, mode: h.options.mode, trigger, heapBytes: a.heapBytes,
      liveBytes: h.liveBytes(), topGranule: c.topGranule, timeMs: performance.now(),
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
      faulty ? FAULT_CODES[fault.kind] : 0, faulty ? fault.arg ?? 0 : 0, this.selectiveFork);
    const pauseNs = Number(process.hrtime.bigint() - t0);
    if (r.pid < 0) {
      // No child: say so (once per heap) and collect stop-the-world instead.
      h.fellBack(`fork() failed: ${r.message} (errno ${r.errno})`);
      c.stats.fallback = true;
      this.markStopTheWorld(c);
      return;
    }
    this.phase = 'marking';
    c.pid = r.pid;
    c.fd = r.fd;
    c.stats.childPid = r.pid;
    c.stats.pauseUs = pauseNs / 1000;
    c.stats.forkUs = r.forkNs / 1000;
    c.stats.forkPrepareUs = (r.prepareNs + r.restoreNs) / 1000;
    c.stats.forkCpuUs = r.cpuNs / 1000;
    c.stats.selectiveFork = r.selective;
    h.publish('fork', {
      heapId: h.regions.id, cycleId: c.stats.id, pid: r.pid, pauseUs: c.stats.pauseUs, forkUs: c.stats.forkUs,
      timeMs: performance.now(),
    });
    const v = h.views;
    c.reader = new StreamReader(
      { cycleId: c.stats.id, topGranule: c.topGranule, granuleBytes: GRANULE_BYTES },
      (words, offset) => this.stage(c, v, words, offset));
    const socket = new net.Socket({ fd: r.fd, readable: true, writable: false });
    c.socket = socket;
    if (!keepAlive) socket.unref();
    socket.on('data', (data: Buffer) => this.onData(c, data));
    socket.on('end', () => this.onEnd(c));
    socket.on('error', (e) => this.fail(c, 'STREAM_SHORT', `pipe error: ${e.message}`));
    const timeout = h.policy.childTimeoutMs(h.allocator.heapBytes);
    c.watchdog = setTimeout(() => this.fail(c, 'WATCHDOG', `the child ran over ${timeout} ms and was killed`), timeout);
    if (!keepAlive) c.watchdog.unref();
  }

  /** A validated chunk: reject zombies, count marks, OR into the parent's bitmap. */
  private stage(c: Cycle, v: HeapViews, words: Uint32Array, offset: number): void {
    const alloc = v.allocBits;
    const mark = v.markBits;
    let count = 0;
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (w === 0) continue;
      if ((w & ~alloc[offset + i]) !== 0) {
        const g = (offset + i) * 32 + (31 - Math.clz32((w & ~alloc[offset + i]) & -(w & ~alloc[offset + i])));
        throw new StreamError('ZOMBIE_MARK', `granule ${g} is marked but holds no object`);
      }
      mark[offset + i] |= w;
      count += popcount(w);
    }
    c.stagedObjects += count;
  }

  private onData(c: Cycle, data: Buffer): void {
    if (c !== this.cycle || c.failure) return;
    if (c.firstByteMs === 0) c.firstByteMs = performance.now();
    try {
      c.reader!.push(data);
    } catch (e) {
      this.streamFailed(c, e);
    }
  }

  private streamFailed(c: Cycle, e: unknown): void {
    if (e instanceof StreamError) this.fail(c, e.reason, e.message);
    else this.fail(c, 'BAD_HEADER', (e as Error).message);
  }

  private onEnd(c: Cycle): void {
    if (c !== this.cycle || c.failure || c.streamEnded) return;
    c.streamEnded = true;
    try {
      c.reader!.end();
      this.checkTrailer(c);
    } catch (e) {
      // A short stream may be a child that died: let its exit status speak.
      const reason = e instanceof StreamError ? e.reason : 'BAD_HEADER';
      this.reapThen(c, (end) => {
        if (end && end.state === 'signaled') this.fail(c, 'CHILD_SIGNALED', `the child died by signal ${end.signal} (${(e as Error).message})`, end.signal);
        else if (end && end.state === 'exited' && end.code !== 0) this.fail(c, exitReason(end.code), `the child exited with status ${end.code} (${(e as Error).message})`);
        else this.fail(c, reason, (e as Error).message);
      });
      return;
    }
    this.reapThen(c, (end) => {
      if (!end) return this.fail(c, 'WATCHDOG', 'the child did not exit after its stream');
      if (end.state === 'signaled') return this.fail(c, 'CHILD_SIGNALED', `the child died by signal ${end.signal} after its stream`, end.signal);
      if (end.state === 'exited' && end.code !== 0) return this.fail(c, exitReason(end.code), `the child exited with status ${end.code} after its stream`);
      if (end.state === 'gone') return this.fail(c, 'CHILD_EXIT', 'the child could not be reaped');
      this.streamAccepted(c);
    });
  }

  private checkTrailer(c: Cycle): void {
    const t = c.reader!.trailer!;
    if (t.status !== 0) throw new StreamError('HEAP_CORRUPT', `marker status ${t.status}`);
    if (t.objectsMarked !== c.stagedObjects) {
      throw new StreamError('COUNT_MISMATCH', `the trailer claims ${t.objectsMarked} objects, the bitmap holds ${c.stagedObjects}`);
    }
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
      heapId: this.host.regions.id, cycleId: s.id, pid: c.pid, markMs: s.markMs, childMs: s.childMs,
      objectsMarked: s.objectsMarked, bytesMarked: s.bytesMarked, childMaxRssKb: s.childMaxRssKb,
      cowBytes: s.cowBytes, timeMs: performance.now(),
    });
  }

  /**
   * Reaps the child, polling without blocking the event loop (it has closed
   * its end of the pipe, so it is exiting). `then(undefined)` if it would not go.
   */
  private reapThen(c: Cycle, then: (end: ReturnType<NativeAddon['waitChild']> | undefined) => void): void {
    let delay = 0;
    const poll = () => {
      if (c !== this.cycle || c.failure) return;
      const end = this.host.addon.waitChild(c.pid, 0);
      if (end) {
        c.reaped = true;
        return then(end);
      }
      delay = Math.min(delay === 0 ? 1 : delay * 2, 50);
      // The watchdog still runs: a child that never exits is killed by it.
      setTimeout(poll, delay).unref();
    };
    poll();
  }

  /** The stream validated and the child exited 0: nothing can abort this cycle now. */
  private streamAccepted(c: Cycle): void {
    this.closeChannel(c);
    this.host.publish('stream', {
      heapId: this.host.regions.id, cycleId: c.stats.id, pid: c.pid, bitmapBytes: c.stats.bitmapBytes,
      streamBytes: c.stats.streamBytes, firstByteMs: c.firstByteMs, timeMs: performance.now(),
    });
    this.beginSweep(c);
  }

  private closeChannel(c: Cycle): void {
    if (c.watchdog) clearTimeout(c.watchdog);
    c.watchdog = undefined;
    if (c.socket) {
      c.socket.removeAllListeners('data');
      c.socket.removeAllListeners('end');
      c.socket.on('error', () => {});
      c.socket.destroy();
      c.socket = undefined;
    }
  }

  /**
   * Aborts the cycle in flight (invariant 3): kill and reap the child, clear
   * every mark bit, free nothing, report.
   */
  private fail(c: Cycle, reason: AbortReason, message: string, signal?: number): void {
    if (c !== this.cycle || c.failure) return;
    c.failure = { reason, message };
    if (signal !== undefined && CRASH_SIGNALS.has(signal) && c.stats.selectiveFork && this.selectiveFork) {
      // A crash (not our SIGKILL, not the OOM killer's) may be a page the
      // child needed and selective fork left out: never fork that way again.
      this.selectiveFork = false;
      this.host.selectiveForkOff(`the child of cycle ${c.stats.id} crashed (signal ${signal}) while forked selectively`);
    }
    this.closeChannel(c);
    if (c.pid > 0 && !c.reaped) {
      try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
      // SIGKILL cannot be blocked: the child is gone within a scheduler tick.
      const end = this.host.addon.waitChild(c.pid, 5000);
      c.reaped = end !== null;
    }
    this.abortCycle(c, reason, message);
  }

  private abortCycle(c: Cycle, reason: AbortReason, message: string): void {
    const h = this.host;
    // Black bits and any staged child bits: none of it may outlive the cycle,
    // or the next marker would skip objects it has not traced.
    h.views.markBits.fill(0, 0, Math.ceil(h.allocator.topGranule / 32));
    this.phase = 'idle';
    this.cycle = undefined;
    const error = new CycleAbortedError(reason, c.stats.id, message);
    h.policy.cycleAborted();
    h.cycleAborted(error);
    for (const w of c.waiters) w.reject(error);
  }

  /**
   * Called by an allocation that found the heap full while the child marks:
   * reads the rest of the stream synchronously (bounded by the watchdog's
   * deadline) and starts the sweep. Returns whether a sweep is now running.
   */
  finishMarkingSync(): boolean {
    const c = this.cycle;
    if (!c || this.phase !== 'marking' || !c.socket || !c.reader) return this.phase === 'sweeping';
    const h = this.host;
    const deadline = Date.now() + h.policy.childTimeoutMs(h.allocator.heapBytes);
    try {
      let buffered: Buffer | null;
      while ((buffered = c.socket.read() as Buffer | null) !== null) c.reader.push(buffered);
      const buf = new Uint8Array(1 << 20);
      while (!c.reader.done) {
        const n = h.addon.readBlocking(c.fd, buf, Math.max(1, deadline - Date.now()));
        if (n === 0) break;
        if (n === -1) {
          if (Date.now() >= deadline) throw new StreamError('WATCHDOG', 'the child did not finish in time');
          continue;
        }
        if (n < 0) throw new StreamError('STREAM_SHORT', `pipe read failed (errno ${-n})`);
        c.reader.push(buf.subarray(0, n));
      }
      c.reader.end();
      this.checkTrailer(c);
    } catch (e) {
      this.streamFailed(c, e);
      return false;
    }
    c.streamEnded = true;
    const end = h.addon.waitChild(c.pid, Math.max(1, deadline - Date.now()));
    if (!end) { this.fail(c, 'WATCHDOG', 'the child did not exit after its stream'); return false; }
    c.reaped = true;
    if (end.state !== 'exited' || end.code !== 0) {
      this.fail(c, end.state === 'signaled' ? 'CHILD_SIGNALED' : 'CHILD_EXIT', `the child ended ${JSON.stringify(end)}`,
        end.state === 'signaled' ? end.signal : undefined);
      return false;
    }
    this.streamAccepted(c);
    return true;
  }

  // ---- stop-the-world --------------------------------------------------

  private markStopTheWorld(c: Cycle): void {
    const h = this.host;
    const t0 = process.hrtime.bigint();
    const r = h.addon.markInProcess(h.regions.id, c.topGranule, h.roots.highWater);
    const pauseNs = Number(process.hrtime.bigint() - t0);
    c.stats.pauseUs = pauseNs / 1000;
    if (r.status !== 0) {
      this.abortCycle(c, 'HEAP_CORRUPT', `reference ${r.badRef} is not an object`);
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
    h.recount();
    h.sweepFinished();
    this.phase = 'idle';
    this.cycle = undefined;
    const error = new CycleAbortedError('SWEEP_FAILED', c.stats.id,
      `a sweeper thread failed (${e.message}); the spans it had not finished were left unswept`);
    h.policy.cycleAborted();
    h.cycleAborted(error);
    for (const w of c.waiters) w.reject(error);
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
    h.freed(c.tally.freedObjects, c.tally.freedBytes);
    s.objectsFreed = c.tally.freedObjects;
    s.bytesFreed = c.tally.freedBytes;
    s.spansSwept = c.tally.spans;
    s.mainThreadSweepMs = (c.mainSweepNs + a.lazySweepNs) / 1e6;
    s.mainThreadSweepMaxMs = Math.max(c.maxSliceNs, a.lazySweepMaxNs) / 1e6;
    s.workers = [...c.workers].map(([threadId, w]) => ({ threadId, spans: w.spans, ms: w.ms }));
    s.workerSpansSwept = s.workers.reduce((n, w) => n + w.spans, 0);
    s.workerSweepMs = s.workers.reduce((n, w) => n + w.ms, 0);
    s.bytesReturned = a.releaseFreeSpans(h.policy.retainFreeBytes(h.liveBytes()), h.regions.hugePages,
      (offset, bytes) => h.addon.releaseArena(h.regions.id, offset, bytes) === 0);
    const end = process.hrtime.bigint();
    s.sweepMs = Number(end - c.sweepStartNs) / 1e6;
    s.totalMs = Number(end - c.startNs) / 1e6;
    s.heapBytesAfter = a.heapBytes;
    s.liveBytesAfter = h.liveBytes();
    this.phase = 'idle';
    this.cycle = undefined;
    h.policy.cycleCompleted(s.liveBytesAfter, s.heapBytesAfter);
    h.sweepFinished();
    h.publish('sweepEnd', s);
    h.cycleCompleted(s);
    for (const w of c.waiters) w.resolve(s);
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
      this.phase = 'idle';
      this.cycle = undefined;
      const error = new CycleAbortedError('CLOSED', c.stats.id, 'the heap was closed during the sweep');
      for (const w of c.waiters) w.reject(error);
      return;
    }
    this.fail(c, 'CLOSED', 'the heap was closed while the child marked');
  }
}


/** Signals a crashing child dies of: SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS. */
const CRASH_SIGNALS = new Set([4, 5, 6, 7, 8, 11, 31]);

function exitReason(code: number): AbortReason {
  return code === EXIT_HEAP_CORRUPT ? 'HEAP_CORRUPT' : 'CHILD_EXIT';
}

function emptyStats(id: number, mode: 'fork' | 'stw', trigger: Trigger, heapBytes: number): CycleStats {
  return {
    id, mode, trigger, fallback: false, pauseUs: 0, forkUs: 0, forkPrepareUs: 0, forkCpuUs: 0, selectiveFork: false, childPid: 0, markMs: 0, childMs: 0,
    childMaxRssKb: 0, cowBytes: 0, objectsMarked: 0, bytesMarked: 0, markStackHighWater: 0, overflowRescans: 0,
    bitmapBytes: 0, streamBytes: 0, objectsFreed: 0, bytesFreed: 0, sweepMs: 0, mainThreadSweepMs: 0, mainThreadSweepMaxMs: 0,
    spansSwept: 0, workerSweepMs: 0, workerSpansSwept: 0, workers: [], heapBytesBefore: heapBytes, heapBytesAfter: heapBytes, liveBytesAfter: 0,
    bytesReturned: 0, totalMs: 0,
  };
}

