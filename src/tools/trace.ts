// Records a heap's cycles as Chrome Trace Event JSON, the format Perfetto
// (https://ui.perfetto.dev) and chrome://tracing open.
//
//   const rec = startTrace(heap);
//   ... run the application ...
//   rec.writeTo('forkgc.trace.json');     // stops recording, writes the file
//
// Built only on the heap's cycle events (src/api/events.ts): nothing is added to
// the collector's hot paths, and a heap that is not traced pays nothing.
//
// Tracks (processes and threads of the trace):
//
// | process              | thread (tid)                      | slices                                         |
// |----------------------|-----------------------------------|------------------------------------------------|
// | this Node process    | main thread (tid = pid)           | 'fork' and 'stw mark' (mutator pauses),        |
// |                      |                                   | 'sweep slice' (background sweeping, main)      |
// |                      | 'heap H: main-thread GC stalls'   | 'stall <kind>': every wait of the main thread  |
// |                      |                                   | on the collector (src/collector/stalls.ts)     |
// |                      | 'heap H: cycles'                  | 'cycle N' > 'marking', 'sweeping'; instants    |
// |                      |                                   | 'child done', 'abort', 'fallback'              |
// |                      | 'heap H: pipe'                    | 'pipe transfer' (first byte read .. stream OK) |
// |                      | 'sweeper <name>' (one per thread) | 'sweep slice' of other sweeping threads        |
// | the GC child (its pid)| 'marker'                         | 'child' > 'mark', 'stream'                     |
//
// Counters: 'heap' (heapBytes, liveBytes at cycle start and end) and
// 'copy-on-write' (KiB the parent copied during the cycle, from childDone).
//
// Times: every event's timeMs is performance.now(); a trace timestamp is that
// in microseconds. The child's slices are reconstructed in the parent from
// its own figures: it starts at the fork (the fork event's childStartMs:
// when the fork() call began, which the child's own childMs counts from;
// the pause's end minus the call's length was late by whatever the parent
// did, or waited, after the call) and lives childMs; its marking ends when its header
// reaches the pipe, which the parent sees as the first byte it reads
// (firstByteMs), so 'mark' is drawn as [firstByteMs - markMs, firstByteMs],
// clipped to the child's life. 'stream' is the rest of its life: writing the
// bitmap and counting copied pages in its pagemap.
//
// Mutator pauses are the slices of category 'pause' on the main thread: the
// fork() call (fork mode), the whole marking (stw mode), and every slice of
// sweeping the main thread did between event-loop turns (categories
// 'sweep,pause'). Lazy sweeping inside allocations is not an event; its total
// is in the cycle's args (mainThreadSweepMs).
import { writeFileSync } from 'node:fs';
import type { CycleAbortedError } from '../index.js';
import type {
  ChildDoneEvent, CycleStartEvent, FallbackEvent, ForkEvent, MarkEvent, StreamEvent, SweepProgressEvent,
  SweepStartEvent,
} from '../index.js';
import type { StallEvent } from '../api/events.js';
import type { Heap } from '../index.js';
import { heapId as heapIdOf } from '../internal.js';
import { Heap as HeapClass } from '../api/heap.js';
import { InvalidArgumentError, InvalidOptionError, describe } from '../api/errors.js';
import type { CycleStats } from '../index.js';

/** One event of the Trace Event format (the subset forkgc writes). */
export interface TraceEvent {
  name: string;
  /** Categories, comma-separated. */
  cat?: string;
  /** X complete slice, i instant, C counter, M metadata. */
  ph: 'X' | 'i' | 'C' | 'M';
  /** Microseconds (performance.now() * 1000). */
  ts: number;
  /** Microseconds, for 'X'. */
  dur?: number;
  pid: number;
  tid: number;
  /** Scope of an instant: g global, p process, t thread. */
  s?: 'g' | 'p' | 't';
  args?: Record<string, unknown>;
}

/** The JSON object a trace file holds (the "JSON Object Format"). */
export interface TraceFile {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ms' | 'ns';
  otherData: Record<string, string | number | boolean>;
}

export interface TraceOptions {
  /** Most events kept (later ones are counted in otherData.droppedEvents). Default 1,000,000. */
  maxEvents?: number;
}

export interface TraceRecorder {
  /** Whether events are still being recorded. */
  readonly recording: boolean;
  /** The trace so far, recording goes on. */
  snapshot(): TraceFile;
  /** Stops recording (idempotent) and returns the trace. */
  stop(): TraceFile;
  /** Stops recording and writes the trace to `path` as JSON; returns it. */
  writeTo(path: string): TraceFile;
}

/** Names of the slices and instants a trace holds (for tests, docs and queries in Perfetto). */
export const TRACE_NAMES = {
  fork: 'fork',
  stwMark: 'stw mark',
  child: 'child',
  childMark: 'mark',
  childStream: 'stream',
  pipe: 'pipe transfer',
  sweepSlice: 'sweep slice',
  marking: 'marking',
  sweeping: 'sweeping',
  childDone: 'child done',
  abort: 'abort',
  fallback: 'fallback',
  sweeperFallback: 'sweeper fallback',
  /** 'stall <kind>' slices (main thread): each wait on the collector (src/collector/stalls.ts). */
  stallPrefix: 'stall ',
  /** 'cycle N' slices start with this. */
  cyclePrefix: 'cycle ',
} as const;

interface OpenCycle {
  id: number;
  start: CycleStartEvent;
  fork?: ForkEvent;
  childStartMs?: number;
  child?: ChildDoneEvent;
  markEndMs?: number;
  sweepStart?: SweepStartEvent;
}

const us = (ms: number) => Math.round(ms * 1000 * 1000) / 1000;  // ms -> µs, to the ns

/**
 * Starts recording `heap`'s cycles. Subscribes to the heap's events; stop()
 * (or writeTo()) unsubscribes. Several recorders may trace one heap.
 */
export function startTrace(heap: Heap, options: TraceOptions = {}): TraceRecorder {
  if (!(heap instanceof HeapClass)) throw new InvalidArgumentError(`startTrace: expected a Heap, got ${describe(heap)}`);
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`startTrace: options must be an object, got ${describe(options)}`);
  }
  const maxEvents = options.maxEvents === undefined ? 1_000_000 : options.maxEvents;
  if (typeof maxEvents !== 'number' || !Number.isInteger(maxEvents) || maxEvents < 0) {
    throw new InvalidOptionError(`startTrace: maxEvents: expected a non-negative integer, got ${describe(maxEvents)}`);
  }
  const pid = process.pid;
  const mainTid = pid;  // on Linux the main thread's tid is the pid
  const events: TraceEvent[] = [];
  const meta: TraceEvent[] = [];
  const threadTids = new Map<string, number>();
  const childPids = new Set<number>();
  const open = new Map<number, OpenCycle>();
  let heapId = 0;
  let dropped = 0;
  let recording = true;
  const startedMs = performance.now();

  const push = (e: TraceEvent) => {
    if (events.length >= maxEvents) dropped++;
    else events.push(e);
  };
  const slice = (name: string, cat: string, pidOf: number, tid: number, startMs: number, endMs: number,
    args?: Record<string, unknown>) => {
    push({ name, cat, ph: 'X', ts: us(startMs), dur: Math.max(0, us(endMs) - us(startMs)), pid: pidOf, tid, args });
  };
  const instant = (name: string, cat: string, tid: number, ms: number, args?: Record<string, unknown>, s: 'g' | 'p' | 't' = 't') => {
    push({ name, cat, ph: 'i', s, ts: us(ms), pid, tid, args });
  };
  const counter = (name: string, ms: number, args: Record<string, number>) => {
    push({ name, cat: 'forkgc', ph: 'C', ts: us(ms), pid, tid: mainTid, args });
  };
  const threadName = (p: number, tid: number, name: string, sort: number) => {
    meta.push({ name: 'thread_name', ph: 'M', ts: 0, pid: p, tid, args: { name } });
    meta.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid: p, tid, args: { sort_index: sort } });
  };

  // Tracks of this process. Synthetic tids for the heap's logical tracks,
  // derived from the heap id so that traces of several heaps can be merged.
  const cyclesTid = () => 1_000_000 + heapId * 16;
  const pipeTid = () => 1_000_000 + heapId * 16 + 1;
  // The main thread's waits on the collector, on a track of their own (they
  // overlap the 'fork' and 'sweep slice' slices of the main thread's track
  // without nesting exactly: each is timed by its own clock reading).
  const stallsTid = () => 1_000_000 + heapId * 16 + 15;
  const sweeperTid = (thread: string) => {
    if (thread === 'main') return mainTid;
    let tid = threadTids.get(thread);
    if (tid === undefined) {
      tid = 1_000_000 + heapId * 16 + 2 + threadTids.size;
      threadTids.set(thread, tid);
      threadName(pid, tid, `sweeper ${thread}`, 10 + threadTids.size);
    }
    return tid;
  };
  const noteHeap = (id: number) => {
    if (heapId !== 0) return;
    heapId = id;
    meta.push({ name: 'process_name', ph: 'M', ts: 0, pid, tid: mainTid, args: { name: `node (forkgc heap ${id})` } });
    meta.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid, tid: mainTid, args: { sort_index: 0 } });
    threadName(pid, mainTid, 'main thread (mutator)', 0);
    threadName(pid, cyclesTid(), `heap ${id}: cycles`, 1);
    threadName(pid, pipeTid(), `heap ${id}: pipe`, 2);
    threadName(pid, stallsTid(), `heap ${id}: main-thread GC stalls`, 3);
  };

  /** The child's slices, from what is known of it (at the stream event, or at an abort). */
  const childSlices = (c: OpenCycle, endMs: number, outcome: string) => {
    if (!c.fork || c.childStartMs === undefined) return;
    const p = c.fork.pid;
    if (!childPids.has(p)) {
      childPids.add(p);
      meta.push({ name: 'process_name', ph: 'M', ts: 0, pid: p, tid: p, args: { name: `forkgc GC child (heap ${heapId}, cycle ${c.id})` } });
      meta.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid: p, tid: p, args: { sort_index: 1 } });
      meta.push({ name: 'thread_name', ph: 'M', ts: 0, pid: p, tid: p, args: { name: 'marker' } });
    }
    const start = c.childStartMs;
    const ch = c.child;
    if (!ch) {
      slice(TRACE_NAMES.child, 'child', p, p, start, endMs, { cycleId: c.id, pid: p, outcome });
      return;
    }
    const end = start + ch.childMs;
    slice(TRACE_NAMES.child, 'child', p, p, start, end, {
      cycleId: c.id, pid: p, outcome, childMs: ch.childMs, markMs: ch.markMs, objectsMarked: ch.objectsMarked,
      bytesMarked: ch.bytesMarked, childMaxRssKb: ch.childMaxRssKb, cowBytes: ch.cowBytes,
    });
    const markEnd = Math.min(end, Math.max(start, c.markEndMs ?? end));
    const markStart = Math.max(start, markEnd - ch.markMs);
    slice(TRACE_NAMES.childMark, 'child', p, p, markStart, markEnd, {
      objectsMarked: ch.objectsMarked, bytesMarked: ch.bytesMarked, markMs: ch.markMs,
      placement: 'estimated: ends when the parent read the first byte of the stream',
    });
    if (end > markEnd) {
      slice(TRACE_NAMES.childStream, 'child', p, p, markEnd, end, { what: 'write the bitmap, count copied pages, write the trailer' });
    }
  };

  const onCycleStart = (e: CycleStartEvent) => {
    noteHeap(e.heapId);
    open.set(e.cycleId, { id: e.cycleId, start: e });
    counter('heap', e.timeMs, { heapBytes: e.heapBytes, liveBytes: e.liveBytes });
  };
  const onFork = (e: ForkEvent) => {
    const c = open.get(e.cycleId);
    if (!c) return;
    c.fork = e;
    const pauseStart = e.timeMs - e.pauseUs / 1000;
    c.childStartMs = Math.max(pauseStart, e.childStartMs);
    slice(TRACE_NAMES.fork, 'pause,fork', pid, mainTid, pauseStart, e.timeMs, {
      cycleId: e.cycleId, pid: e.pid, pauseUs: e.pauseUs, forkUs: e.forkUs,
    });
  };
  const onChildDone = (e: ChildDoneEvent) => {
    const c = open.get(e.cycleId);
    if (!c) return;
    c.child = e;
    instant(TRACE_NAMES.childDone, 'child', cyclesTid(), e.timeMs, { ...e });
    if (e.cowBytes >= 0) counter('copy-on-write', e.timeMs, { cowKiB: e.cowBytes / 1024 });
  };
  const onStream = (e: StreamEvent) => {
    const c = open.get(e.cycleId);
    if (!c) return;
    c.markEndMs = e.firstByteMs > 0 ? e.firstByteMs : undefined;
    childSlices(c, e.timeMs, 'exited 0, stream validated');
    const first = e.firstByteMs > 0 ? e.firstByteMs : e.timeMs;
    slice(TRACE_NAMES.pipe, 'pipe', pid, pipeTid(), first, e.timeMs, {
      cycleId: e.cycleId, bitmapBytes: e.bitmapBytes, streamBytes: e.streamBytes,
    });
    slice(TRACE_NAMES.marking, 'cycle', pid, cyclesTid(), c.fork ? c.fork.timeMs : c.start.timeMs, e.timeMs, { cycleId: e.cycleId });
  };
  const onMark = (e: MarkEvent) => {
    const c = open.get(e.cycleId);
    if (!c) return;
    slice(TRACE_NAMES.stwMark, 'pause,mark', pid, mainTid, e.timeMs - e.markMs, e.timeMs, {
      cycleId: e.cycleId, markMs: e.markMs, objectsMarked: e.objectsMarked, bytesMarked: e.bytesMarked,
    });
  };
  const onSweepStart = (e: SweepStartEvent) => {
    const c = open.get(e.cycleId);
    if (c) c.sweepStart = e;
  };
  const onSweepProgress = (e: SweepProgressEvent) => {
    slice(TRACE_NAMES.sweepSlice, e.thread === 'main' ? 'sweep,pause' : 'sweep', pid, sweeperTid(e.thread), e.startMs, e.endMs, {
      cycleId: e.cycleId, thread: e.thread, spans: e.spans, freedObjects: e.freedObjects, freedBytes: e.freedBytes,
    });
  };
  const onSweepEnd = (s: CycleStats) => {
    const now = performance.now();
    const c = open.get(s.id);
    if (!c) return;
    open.delete(s.id);
    if (c.sweepStart) {
      slice(TRACE_NAMES.sweeping, 'cycle', pid, cyclesTid(), c.sweepStart.timeMs, now, {
        cycleId: s.id, spans: c.sweepStart.spans, sweepMs: s.sweepMs, mainThreadSweepMs: s.mainThreadSweepMs,
      });
    }
    slice(`${TRACE_NAMES.cyclePrefix}${s.id}`, 'cycle', pid, cyclesTid(), c.start.timeMs, now, { ...s });
    counter('heap', now, { heapBytes: s.heapBytesAfter, liveBytes: s.liveBytesAfter });
  };
  const onAbort = (e: CycleAbortedError) => {
    const now = performance.now();
    const c = open.get(e.cycleId);
    instant(TRACE_NAMES.abort, 'cycle', heapId ? cyclesTid() : mainTid, now, { cycleId: e.cycleId, reason: e.reason, message: e.message });
    if (!c) return;
    open.delete(e.cycleId);
    childSlices(c, now, `aborted: ${e.reason}`);
    slice(`${TRACE_NAMES.cyclePrefix}${c.id}`, 'cycle', pid, cyclesTid(), c.start.timeMs, now, {
      cycleId: c.id, aborted: e.reason, message: e.message,
    });
  };
  const onFallback = (e: FallbackEvent) => {
    noteHeap(e.heapId);
    instant(TRACE_NAMES.fallback, 'cycle', cyclesTid(), e.timeMs, { reason: e.reason }, 'g');
  };

  // Every wait of the main thread on the collector, on the main thread's track.
  const onStall = (e: StallEvent) => {
    noteHeap(e.heapId);
    slice(`${TRACE_NAMES.stallPrefix}${e.kind}`, 'stall,gc', pid, stallsTid(), e.startMs, e.endMs, { cycleId: e.cycleId, kind: e.kind });
  };
  const onSweeperFallback = (e: FallbackEvent) => {
    noteHeap(e.heapId);
    instant(TRACE_NAMES.sweeperFallback, 'cycle', cyclesTid(), e.timeMs, { reason: e.reason }, 'g');
  };

  noteHeap(heapIdOf(heap));
  heap.on('cycleStart', onCycleStart);
  heap.on('fork', onFork);
  heap.on('childDone', onChildDone);
  heap.on('stream', onStream);
  heap.on('mark', onMark);
  heap.on('sweepStart', onSweepStart);
  heap.on('sweepProgress', onSweepProgress);
  heap.on('sweepEnd', onSweepEnd);
  heap.on('abort', onAbort);
  heap.on('fallback', onFallback);
  heap.on('stall', onStall);
  heap.on('sweeperFallback', onSweeperFallback);

  const unsubscribe = () => {
    heap.off('cycleStart', onCycleStart);
    heap.off('fork', onFork);
    heap.off('childDone', onChildDone);
    heap.off('stream', onStream);
    heap.off('mark', onMark);
    heap.off('sweepStart', onSweepStart);
    heap.off('sweepProgress', onSweepProgress);
    heap.off('sweepEnd', onSweepEnd);
    heap.off('abort', onAbort);
    heap.off('fallback', onFallback);
    heap.off('stall', onStall);
    heap.off('sweeperFallback', onSweeperFallback);
  };

  const snapshot = (): TraceFile => {
    const body = [...events].sort((a, b) => a.ts - b.ts || (b.dur ?? 0) - (a.dur ?? 0));
    return {
      traceEvents: [...meta, ...body],
      displayTimeUnit: 'ms',
      otherData: {
        producer: 'forkgc',
        heapId,
        pid,
        timeOrigin: performance.timeOrigin,
        recordedFromMs: startedMs,
        recordedToMs: performance.now(),
        droppedEvents: dropped,
        cyclesInFlight: open.size,
      },
    };
  };

  const stop = (): TraceFile => {
    if (recording) {
      recording = false;
      unsubscribe();
    }
    return snapshot();
  };

  return {
    get recording() { return recording; },
    snapshot,
    stop,
    writeTo(path: string): TraceFile {
      // A path only: fs would take a number as a file descriptor (2 writes
      // the trace into stderr) and -0 aborts Node in its C++.
      if (typeof path !== 'string' || path === '' || path.includes('\0')) {
        throw new InvalidArgumentError(`TraceRecorder.writeTo: expected a file path, got ${describe(path)}`);
      }
      const file = stop();
      writeFileSync(path, JSON.stringify(file));
      return file;
    },
  };
}
