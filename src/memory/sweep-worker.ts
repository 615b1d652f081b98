// The piscina task that sweeps in a worker thread: one task per thread per
// cycle. It attaches to the heap's memory through the addon, once per thread
// (the mappings stay until it detaches, or the thread ends, even if the heap
// is closed meanwhile), claims batches of spans from the cycle's shared
// cursor (src/memory/sweep-board.ts), claims each span with the same CAS the
// main thread uses, sweeps it with the same code (src/memory/sweeper.ts), and
// publishes its tally on the board. The main thread learns which spans were
// swept from the span table, not from a message.
import { threadId, workerData } from 'node:worker_threads';
import { warmSweep } from '../collector/warm.js';
import { native } from '../platform/native.js';
import { SweepTally } from './sweeper.js';
import { HeapViews } from './views.js';
import { SweepBoard, sweepFromCursor } from './sweep-board.js';

export interface SweepTask {
  heapId: number;
  cycleId: number;
  /** This task's slot on the board. */
  slot: number;
  /** The cycle's sweep board (src/memory/sweep-board.ts): the cursor, the slots' states and tallies. */
  control: Int32Array;
  tallies: Float64Array;
  /** Testing only: throw after claiming this many spans (leaving the last one half-swept). */
  failAfter: number;
  /** Non-zero once the heap is closing: stop before the next span. */
  cancelled: Int32Array;
  /**
   * Let go of the heap's attachment when the task is done: set on a pool
   * the application shares with us, whose threads outlive the heap (an
   * attachment kept there held the closed heap's memory until a task of
   * another heap ran on that thread). Our own pool's threads keep theirs
   * between cycles and end with the heap.
   */
  release?: boolean;
}

/** What the task returns; the main thread may have read the same from the board already. */
export interface SweepTaskResult {
  slot: number;
  /** The heap was gone before the task ran. */
  heapGone: boolean;
}

// Piscina loads this module with require(), which Node 20.19+ answers for an
// ES module by evaluating it and then, for a module with a default export and
// no `__esModule` export, building a "facade" module around it. Node aborts
// the whole process (a CHECK in CreateRequiredModuleFacade) if the thread is
// terminated while it builds that facade, and heap.close() terminates our
// threads the moment they count themselves booted, just before it
// (test/worker-load.test.ts reproduces it). With `__esModule` exported, Node
// returns the namespace itself and builds no facade; piscina then takes the
// default export from it.
export const __esModule = true;

// This thread's attachments, one per heap, kept across tasks on our own
// pool: making views of a large arena costs milliseconds (native/binding.cc,
// attachHeap). On an application's pool each task lets go of its own
// (SweepTask.release).
const attached = new Map<number, HeapViews>();

// When the thread starts (piscina loads this module then): warm the sweep
// code, whose first sweep would otherwise run cold and several times slower;
// on the heap's own pool attach to the heap (its id is in workerData), so
// that the first sweep does not make the views either (it took 7.7 ms of
// the first cycle's sweep in full gcbench, against 0.25 for the second);
// then count this thread as booted, for heap.ready() (sweep-pool.ts). On an
// application's pool this runs at our first task instead, and there is no
// counter or heap in its workerData.
warmSweep();
const data = workerData as { forkgcBooted?: unknown; forkgcHeapId?: unknown } | null | undefined;
if (typeof data?.forkgcHeapId === 'number') {
  try {
    viewsOf(data.forkgcHeapId);
  } catch {
    // Only a head start: the first task attaches (or reports) on its own.
  }
}
const booted = data?.forkgcBooted;
if (booted instanceof Int32Array) Atomics.add(booted, 0, 1);

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
  const board = SweepBoard.attach(task.control, task.tallies);
  board.running(task.slot);
  const tally = new SweepTally();
  let failed = true;
  let v: HeapViews | null = null;
  try {
    v = viewsOf(task.heapId);
    if (v) sweepFromCursor(v, board, tally, task.cancelled, task.failAfter);
    failed = false;
  } finally {
    // Published even when the sweep threw: the main thread must not wait on a dead slot.
    board.finish(task.slot, {
      freedObjects: tally.freedObjects, freedBytes: tally.freedBytes, liveObjects: tally.liveObjects,
      spans: tally.spans, startEpochMs, endEpochMs: performance.timeOrigin + performance.now(), threadId,
    }, failed);
    if (task.release && v) {
      attached.delete(task.heapId);
      native().detachHeap(v.regions);
    }
  }
  return { slot: task.slot, heapGone: v === null };
}

