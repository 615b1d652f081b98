// Policy: when to start a cycle, what to keep resident, when to give up on
// forking. Mechanism (allocator, marker, sweeper) asks; policy answers. Kept
// apart from mechanism as MMTk's GCTriggerPolicy and cppgc's heap-growing are.
//
// The trigger is Go's GOGC: a cycle starts once the bytes allocated since the
// last cycle reach gcPercent% of the live bytes that cycle left (but at least
// minTriggerBytes). A soft limit at 90% of maxHeap pulls the trigger earlier
// so a cycle has room to finish before the heap is full.
import type { ResolvedOptions } from '../api/options.js';

export class Policy {
  /** Bytes allocated since the last cycle that start the next. */
  private triggerBytes: number;
  private consecutiveAborts = 0;

  constructor(private readonly o: ResolvedOptions) {
    this.triggerBytes = o.minTriggerBytes;
  }

  /** After a cycle has swept: sets the next trigger from what survived. */
  cycleCompleted(liveBytes: number, heapBytes: number): void {
    this.consecutiveAborts = 0;
    const goal = Math.max(this.o.minTriggerBytes, liveBytes * (this.o.gcPercent / 100));
    const softLimit = this.o.maxHeap * 0.9;
    const headroom = Math.max(this.o.minTriggerBytes / 4, softLimit - Math.max(heapBytes, liveBytes));
    this.triggerBytes = Math.min(goal, headroom);
  }

  cycleAborted(): void {
    this.consecutiveAborts++;
  }

  shouldCollect(allocatedSinceCycle: number): boolean {
    return allocatedSinceCycle >= this.triggerBytes;
  }

  /** After too many failed children in a row, collect stop-the-world once. */
  useStopTheWorld(mode: 'fork' | 'stw'): boolean {
    return mode === 'stw' || this.consecutiveAborts >= this.o.maxConsecutiveAborts;
  }

  /** Free spans to keep resident after a sweep (the rest go back to the OS). */
  retainFreeBytes(liveBytes: number): number {
    return Math.min(8 * 2 ** 20, liveBytes / 4);
  }

  /** How long the child may take before the watchdog kills it. */
  childTimeoutMs(heapBytesInUse: number): number {
    return this.o.childTimeoutMs ?? 10_000 + Math.ceil(heapBytesInUse / 2 ** 20) * 20;
  }

  get nextTriggerBytes(): number { return this.triggerBytes; }
}
