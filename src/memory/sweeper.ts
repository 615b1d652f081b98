// Sweeping one span: pure bit operations over shared views, so the same code
// runs on the main thread (lazy and background sweeping) and in sweeper
// workers. A span is swept by whoever wins its UNSWEPT -> SWEEPING
// compare-and-swap on the span table; nobody else touches its objects,
// bitmaps or table entry until the winner stores the final state.
//
// Sweeping a small span, word by word of its 128 bitmap words (as Go's
// sweeper swaps gcmarkBits into allocBits):
//
//   freed = alloc & ~mark      slots to free (object starts only)
//   alloc = alloc &  mark      the survivors
//   mark  = 0                  ready for the next cycle (after all words)
//
// Memory ordering. The span table, bitmaps and arena are plain (non-shared)
// external ArrayBuffers over the same native memory in every thread; V8's
// Atomics use the processor's atomic instructions on them too
// (test/sweeper.test.ts checks that no contended update is lost). The CAS
// that claims a span is the only arbitration: the loser never touches the
// span. Two spans never share a bitmap word (a span is 128 words), and the
// mutator allocates only in IN_USE spans, so the claimant's writes race with
// nobody. It publishes with a sequentially consistent Atomics.store of the
// final state, after all its writes; the main thread learns of a span a
// worker swept either from the task's result message (postMessage orders
// the worker's writes before the main thread's reads) or by reading that
// state with Atomics.load (rebuildFromTable), never by a plain read racing
// with the worker. In between, it stores SWEPT once the allocation bits are
// final and before the first mark is cleared: while a span is SWEEPING its
// marks are the cycle's, once SWEPT its allocation bits say what survived
// (a heap map's identity check reads a span mid-sweep, and a failed sweep
// one a dying thread left; src/collections/heap-maps.ts, identityAt).
//
// The sweep reads and writes only the bitmaps and the span table: a freed
// slot is neither read nor zeroed (in fork mode every page of a dead object
// would otherwise be copied or faulted in). Freed bytes are counted as
// popcount(freed) x slot size: accounting is in slot bytes for small
// objects and whole spans for large ones (src/collector/accounting.ts). The
// allocator zeroes a slot when it hands it out again, for spans marked
// SPAN_NEEDZERO here, before the first allocation bit of the span is
// cleared (so a sweep interrupted half-way never leaves an unmarked dirty
// span). A span left empty goes back to the free list dirty; it is zeroed
// when reused, or returned to the OS (pages read back as zero).
import {
  CLASS_GRANULES, FREE_DIRTY, GRANULE_BYTES, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_BYTES, SPAN_FREE, SPAN_GRANULES,
  SPAN_IN_USE, SPAN_NEEDZERO, SPAN_SWEEPING, SPAN_SWEPT, SPAN_UNSWEPT, SPAN_WORDS, SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from './layout.js';
import type { HeapViews } from './views.js';

/** What one sweep freed and kept; reused across spans to avoid allocation. */
export class SweepTally {
  freedObjects = 0;
  freedBytes = 0;
  liveObjects = 0;
  spans = 0;
  emptiedSpans = 0;
  add(other: SweepTally): void {
    this.freedObjects += other.freedObjects;
    this.freedBytes += other.freedBytes;
    this.liveObjects += other.liveObjects;
    this.spans += other.spans;
    this.emptiedSpans += other.emptiedSpans;
  }
}

/** Claims span s for sweeping; false if someone else has it or it needs none. */
export function claimSpan(v: HeapViews, s: number): boolean {
  return Atomics.compareExchange(v.spans, s * SPAN_WORDS + SW_STATE, SPAN_UNSWEPT, SPAN_SWEEPING) === SPAN_UNSWEPT;
}

/**
 * Sweeps a span this thread has claimed, then publishes its new state
 * (IN_USE, or FREE when nothing in it survived). Returns how many spans it
 * freed: 0 when the span stays in use, the run's length for a large object.
 */
export function sweepClaimedSpan(v: HeapViews, s: number, tally: SweepTally): number {
  const e = s * SPAN_WORDS;
  const spans = v.spans;
  const cls = spans[e + SW_CLASS];
  tally.spans++;
  if (cls === LARGE_CLASS) return sweepLarge(v, s, tally);
  const alloc = v.allocBits;
  const mark = v.markBits;
  const w0 = s * SPAN_BITMAP_WORDS;
  let live = 0;
  let freedSlots = 0;
  for (let w = w0; w < w0 + SPAN_BITMAP_WORDS; w++) {
    const a = alloc[w];
    if (a === 0) continue;
    const kept = a & mark[w];
    if (kept !== a) {
      if (freedSlots === 0) spans[e + SW_AUX] = SPAN_NEEDZERO;
      freedSlots += popcount(a ^ kept);
      alloc[w] = kept;
    }
    if (kept !== 0) live += popcount(kept);
  }
  // Mark bits go last: a sweep interrupted before this line (a worker that
  // died) can be redone, or the span reset, without freeing a survivor.
  // SWEPT says the allocation bits are final before any mark is cleared,
  // for one interrupted after; the atomic load after it keeps the cleared
  // marks from being seen before it on any CPU (arm64 may show a plain
  // store before an earlier store-release). A heap map's identity check
  // relies on it: a cleared mark means the span is SWEPT or published.
  Atomics.store(spans, e + SW_STATE, SPAN_SWEPT);
  Atomics.load(spans, e + SW_CLASS);
  mark.fill(0, w0, w0 + SPAN_BITMAP_WORDS);
  tally.freedObjects += freedSlots;
  tally.freedBytes += freedSlots * CLASS_GRANULES[cls] * GRANULE_BYTES;
  tally.liveObjects += live;
  spans[e + SW_LIVE] = live;
  if (live === 0) {
    tally.emptiedSpans++;
    spans[e + SW_AUX] = FREE_DIRTY;
    Atomics.store(spans, e + SW_STATE, SPAN_FREE);
    return 1;
  }
  Atomics.store(spans, e + SW_STATE, SPAN_IN_USE);
  return 0;
}

// A large object is counted as its whole spans; it is freed without reading it.
function sweepLarge(v: HeapViews, s: number, tally: SweepTally): number {
  const e = s * SPAN_WORDS;
  const g = s * SPAN_GRANULES;
  const bit = 1 << (g & 31);
  const w = g >>> 5;
  if ((v.markBits[w] & bit) !== 0) {
    Atomics.store(v.spans, e + SW_STATE, SPAN_SWEPT);  // (as for a small span)
    Atomics.load(v.spans, e + SW_CLASS);
    v.markBits[w] &= ~bit;
    tally.liveObjects++;
    Atomics.store(v.spans, e + SW_STATE, SPAN_IN_USE);
    return 0;
  }
  const run = v.spans[e + SW_AUX];
  tally.freedObjects++;
  tally.freedBytes += run * SPAN_BYTES;
  tally.emptiedSpans += run;
  v.allocBits[w] &= ~bit;
  for (let t = s + run - 1; t >= s; t--) {
    const te = t * SPAN_WORDS;
    // LARGE_CLASS, not a small class: a free span whose class is small held
    // slots of that class, and the allocator may take it back as it is
    // (Allocator.prepareFreeRun); a large object's body holds no slots.
    v.spans[te + SW_CLASS] = LARGE_CLASS;
    v.spans[te + SW_LIVE] = 0;
    v.spans[te + SW_AUX] = FREE_DIRTY;
    Atomics.store(v.spans, te + SW_STATE, SPAN_FREE);
  }
  return run;
}

export function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}
