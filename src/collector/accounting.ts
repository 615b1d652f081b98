// What the heap holds and what cycles did to it: live objects and bytes
// (up at each allocation, down by each sweep, recounted after a failed
// sweep), bytes allocated since the last cycle (the policy's trigger), and
// the cumulative figures of heap.stats(). The collector owns one; the
// allocation path in src/api/core.ts adds to it directly (no call per
// allocation).
import { objectBytes } from '../memory/header.js';
import type { HeapViews } from '../memory/views.js';
import type { CycleStats } from '../api/stats.js';

export class Accounting {
  liveBytes = 0;
  objects = 0;
  allocatedSinceCycle = 0;
  allocatedTotal = 0;
  cycles = 0;
  aborted = 0;
  fallback = 0;
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

  /** After a failed sweep: count live objects and bytes again from the allocation bits. */
  recount(v: HeapViews, topGranule: number): void {
    let objects = 0;
    let bytes = 0;
    const words = Math.ceil(topGranule / 32);
    for (let w = 0; w < words; w++) {
      let bits = v.allocBits[w];
      while (bits !== 0) {
        const bit = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        objects++;
        bytes += objectBytes(v, w * 32 + bit);
      }
    }
    this.objects = objects;
    this.liveBytes = bytes;
  }

  cycleCompleted(s: CycleStats): void {
    this.cycles++;
    if (s.fallback) this.fallback++;
    this.returnedTotal += s.bytesReturned;
    this.pauseUs += s.pauseUs;
    this.maxPauseUs = Math.max(this.maxPauseUs, s.pauseUs);
    this.markMs += s.markMs;
    this.sweepMs += s.sweepMs;
  }
}
