// The piscina task that sweeps a range of spans in a worker thread. It
// attaches to the heap's memory through the addon, once per thread (the
// mappings stay until it detaches, or the thread ends, even if the heap is
// closed meanwhile), claims each span with
// the same CAS the main thread uses, sweeps it with the same code
// (src/memory/sweeper.ts), and returns what it did; the main thread does the
// bookkeeping.
import { threadId } from 'node:worker_threads';
import { native } from '../platform/native.js';
import { SweepTally, claimSpan, sweepClaimedSpan } from './sweeper.js';
import { HeapViews } from './views.js';

export interface SweepTask {
  heapId: number;
  cycleId: number;
  from: number;
  to: number;
  /** Testing only: throw after claiming this many spans (leaving the last one half-swept). */
  failAfter: number;
  /** Non-zero once the heap is closing: stop before the next span. */
  cancelled: Int32Array;
}

export interface SweepTaskResult {
  /** Pairs: span index, spans freed from it (0 when it stays in use). */
  swept: Int32Array;
  freedObjects: number;
  freedBytes: number;
  liveObjects: number;
  spans: number;
  threadId: number;
  /** Wall-clock (epoch) milliseconds, comparable across threads. */
  startEpochMs: number;
  endEpochMs: number;
  /** The heap was gone before the task ran. */
  heapGone: boolean;
}

// This thread's attachments, one per heap, kept across tasks: making views
// of a large arena costs milliseconds (native/binding.cc, attachHeap).
const attached = new Map<number, HeapViews>();

function viewsOf(heapId: number): HeapViews | null {
  const addon = native();
  // Let go of heaps that were closed since (their mappings go with us).
  for (const [id, v] of attached) {
    if (id !== heapId && addon.heapDestroyed(id)) {
      attached.delete(id);
      addon.detachHeap(v.regions);
    }
  }
  let v = attached.get(heapId);
  if (!v) {
    const regions = addon.attachHeap(heapId);
    if (!regions) return null;
    v = new HeapViews(regions);
    attached.set(heapId, v);
  }
  return v;
}

export default function sweepSpans(task: SweepTask): SweepTaskResult {
  const startEpochMs = performance.timeOrigin + performance.now();
  const v = viewsOf(task.heapId);
  const tally = new SweepTally();
  const swept: number[] = [];
  if (v && Atomics.load(task.cancelled, 0) === 0) {
    let claimed = 0;
    for (let s = task.from; s < task.to && Atomics.load(task.cancelled, 0) === 0; s++) {
      if (!claimSpan(v, s)) continue;
      if (++claimed === task.failAfter) throw new Error(`injected sweeper failure at span ${s}`);
      swept.push(s, sweepClaimedSpan(v, s, tally));
    }
  }
  return {
    swept: Int32Array.from(swept),
    freedObjects: tally.freedObjects,
    freedBytes: tally.freedBytes,
    liveObjects: tally.liveObjects,
    spans: tally.spans,
    threadId,
    startEpochMs,
    endEpochMs: performance.timeOrigin + performance.now(),
    heapGone: v === null,
  };
}
