// What the heap holds and what cycles did to it: live objects and bytes
// (up at each allocation, down by each sweep, recounted after a failed
// sweep), bytes allocated since the last cycle (the policy's trigger), and
// the cumulative figures of heap.stats(). The collector owns one; the
// allocation path in src/api/core.ts adds to it directly (no call per
// allocation).
//
// The unit of live bytes is what an object occupies in the heap, not what
// it asked for: its slot (its size class) for a small object, its whole
// spans for a large one. That is what the sweep can count without reading
// a dead object (popcount x slot size, src/memory/sweeper.ts), and it is
// what allocation adds, so the two always agree. (The child's bytesMarked
// counts objects' own sizes, header included: it is not in this unit.)
import {
  CLASS_GRANULES, GRANULE_BYTES, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_BYTES, SPAN_IN_USE, SPAN_UNSWEPT,
  SPAN_SWEEPING, SPAN_WORDS, SW_AUX, SW_CLASS, SW_STATE,
} from '../memory/layout.js';
import { popcount } from '../memory/sweeper.js';
import type { HeapViews } from '../memory/views.js';
import type { CycleStats } from '../api/stats.js';

export class Accounting {
  liveBytes = 0;
  objects = 0;
  allocatedSinceCycle = 0;
  /**
   * An allocation failed at maxHeap since the last cycle started: a cycle is
   * due whatever the count says (a full heap counts nothing more, and a
   * program that released roots after a cycle that found everything live
   * would otherwise wait for one for ever).
   */
  allocationFailed = false;
  allocatedTotal = 0;
  cycles = 0;
  aborted = 0;
  fallback = 0;
  inProcess = 0;
  freedTotal = 0;
  returnedTotal = 0;
  maxPauseUs = 0;
  pauseUs = 0;
  markMs = 0;
  sweepMs = 0;

  /** The sweep freed objects: live accounting goes down. */
  freed(objects: number, bytes: number): void {
    this.objects -= objects;
    this.liveBytes -= bytes;
    this.freedTotal += bytes;
  }

  /**
   * After a failed sweep: count live objects and bytes again from the
   * allocation bits and the span table, plus the slots of the allocator's
   * cached words (counted when cached, not yet handed out: `outstanding`).
   * What the part of the sweep that ran freed is what the count went down
   * by: it goes to the freed total as a completed sweep's would.
   */
  recount(v: HeapViews, topGranule: number, outstanding: { objects: number; bytes: number }): void {
    let objects = 0;
    let bytes = 0;
    const spans = Math.ceil(topGranule * GRANULE_BYTES / SPAN_BYTES);
    for (let s = 1; s < spans; s++) {
      const e = s * SPAN_WORDS;
      const state = Atomics.load(v.spans, e + SW_STATE);
      if (state !== SPAN_IN_USE && state !== SPAN_UNSWEPT && state !== SPAN_SWEEPING) continue;
      const cls = v.spans[e + SW_CLASS];
      if (cls === LARGE_CLASS) {
        objects++;
        bytes += v.spans[e + SW_AUX] * SPAN_BYTES;
        continue;
      }
      let n = 0;
      for (let w = s * SPAN_BITMAP_WORDS; w < (s + 1) * SPAN_BITMAP_WORDS; w++) n += popcount(v.allocBits[w]);
      objects += n;
      bytes += n * CLASS_GRANULES[cls] * GRANULE_BYTES;
    }
    objects += outstanding.objects;
    bytes += outstanding.bytes;
    if (this.liveBytes > bytes) this.freedTotal += this.liveBytes - bytes;
    this.objects = objects;
    this.liveBytes = bytes;
  }

  cycleCompleted(s: CycleStats): void {
    this.cycles++;
    if (s.fallback) this.fallback++;
    if (s.marker === 'in-process') this.inProcess++;
    this.returnedTotal += s.bytesReturned;
    this.pauseUs += s.pauseUs;
    this.maxPauseUs = Math.max(this.maxPauseUs, s.pauseUs);
    this.markMs += s.markMs;
    this.sweepMs += s.sweepMs;
  }
}
