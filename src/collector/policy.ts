// Policy: when to start a cycle, what to keep resident, when to give up on
// forking. Mechanism (allocator, marker, sweeper) asks; policy answers. Kept
// apart from mechanism as MMTk's GCTriggerPolicy and cppgc's heap-growing are.
//
// The goal is Go's GOGC: the next cycle should be over by the time the bytes
// allocated since the last cycle began reach gcPercent% of the live bytes
// that cycle left (but at least minTriggerBytes). The pacer (Go's
// mgcpacer.go, in its simplest form) starts the cycle early enough for that:
// a cycle's marking and sweeping take time, and the mutator allocates
// meanwhile, so
//
//   trigger = goal - (bytes the mutator is expected to allocate during a cycle)
//
// where the expectation is a moving average (EWMA, weight 1/2 on the newest
// cycle) of what it allocated during past cycles (the measured allocation
// rate times the measured mark+sweep duration). The trigger stays within
// [MIN_TRIGGER_RATIO, MAX_TRIGGER_RATIO] of the goal, as Go bounds its own
// (a cycle that cannot keep up runs back to back rather than never). A soft
// limit at 90% of maxHeap pulls the trigger earlier still so a cycle has room
// to finish before the heap is full. maxHeap itself stays a hard limit; below
// it, allocation never waits for the collector. Past the soft limit a
// safepoint does (Policy.safepointWaits): a cycle that cannot keep up has
// the mutator wait at a place where waiting is safe, before the heap fills.
import type { ResolvedOptions } from '../api/options.js';

/** The trigger never falls below this share of the goal (Go: ~0.7 of the runway; lower here, forked marking is slow to start). */
export const MIN_TRIGGER_RATIO = 0.25;
/** ...nor rises above this share: some room is always left for the cycle itself. */
export const MAX_TRIGGER_RATIO = 0.95;
/** The soft limit's share of maxHeap: the trigger stays under it, and past it a safepoint waits for the child. */
export const SOFT_LIMIT_RATIO = 0.9;
/** Weight of the newest cycle in the expected allocation per cycle. */
export const PACER_SMOOTHING = 0.5;

/** What the pacer knows after a cycle. */
export interface PacerInputs {
  liveBytes: number;
  heapBytes: number;
  gcPercent: number;
  minTriggerBytes: number;
  maxHeap: number;
  /** Bytes the mutator is expected to allocate while a cycle runs (smoothed); 0 before any was measured. */
  expectedCycleAllocBytes: number;
}

/** The goal (bytes allocated since a cycle's start by which the next should be done), and the trigger that meets it. */
export function paceTrigger(p: PacerInputs): { goal: number; trigger: number } {
  const goal = Math.max(p.minTriggerBytes, p.liveBytes * (p.gcPercent / 100));
  let trigger = goal - p.expectedCycleAllocBytes;
  trigger = Math.min(goal * MAX_TRIGGER_RATIO, Math.max(goal * MIN_TRIGGER_RATIO, trigger));
  const softLimit = p.maxHeap * SOFT_LIMIT_RATIO;
  const used = Math.max(p.heapBytes, p.liveBytes);
  // The floor keeps cycles from coming back to back on a nearly full heap,
  // but never past half the room left: a trigger beyond it would let the
  // heap reach maxHeap before any cycle could start.
  const floor = Math.min(p.minTriggerBytes / 4, Math.max(0, p.maxHeap - used) / 2);
  const headroom = Math.max(floor, softLimit - used - p.expectedCycleAllocBytes);
  return { goal, trigger: Math.max(1, Math.min(trigger, headroom)) };
}

/** Free memory kept over the pacer's goal, as Go's scavenger keeps ~10% over its heap goal. */
export const RETAIN_OVER_GOAL = 1.1;

/** What the retention policy knows after a sweep. */
export interface RetainInputs {
  liveBytes: number;
  gcPercent: number;
  minTriggerBytes: number;
  maxHeap: number;
}

/**
 * Free span bytes a sweep keeps resident; the free spans beyond it go back to
 * the OS (Allocator.releaseFreeSpans). Until the next cycle the mutator
 * allocates up to the pacer's goal (gcPercent% of what is live, at least
 * minTriggerBytes), so that much free memory, and 10% over it, is about to be
 * taken again: giving it back only has the allocator fault it in again, a
 * page at a time, every cycle (binary-trees and GCBench free nearly all they
 * allocate each cycle). What is beyond the goal is the excess of a live set
 * that shrank, and goes back at once; it is never more than fits under
 * maxHeap next to the live bytes. Kept apart from paceTrigger: the sweep asks
 * before the pacer has heard of the cycle, so this takes the goal from the
 * same inputs rather than from the last one set.
 */
export function retainTarget(p: RetainInputs): number {
  const goal = Math.max(p.minTriggerBytes, p.liveBytes * (p.gcPercent / 100));
  return Math.max(0, Math.min(goal * RETAIN_OVER_GOAL, p.maxHeap - p.liveBytes));
}

/** A finished cycle's timing, as the pacer measures it. */
export interface CycleTiming {
  /** From the cycle's start to the start of its sweep (fork, marking, stream). */
  markMs: number;
  sweepMs: number;
  /** Bytes the mutator allocated from the cycle's start to its end. */
  allocatedBytes: number;
}

export class Policy {
  /** Bytes allocated since the last cycle that start the next. */
  private triggerBytes: number;
  private consecutiveAborts = 0;

  constructor(private readonly o: ResolvedOptions) {
    // (Half of maxHeap at most: a heap smaller than minTriggerBytes, 16 MiB
    // by default, would otherwise be full before its first cycle.)
    this.triggerBytes = Math.max(1, Math.min(o.minTriggerBytes, o.maxHeap / 2));
    this.goalBytes = o.minTriggerBytes;
  }

  /** Smoothed bytes allocated during a cycle, and the last goal. */
  private expectedCycleAlloc = 0;
  private goalBytes: number;

  /** After a cycle has swept: sets the next trigger from what survived and how the cycle went. */
  cycleCompleted(liveBytes: number, heapBytes: number, timing?: CycleTiming): void {
    this.consecutiveAborts = 0;
    this.lastLiveBytes = liveBytes;
    if (timing) {
      const a = Math.max(0, timing.allocatedBytes);
      this.expectedCycleAlloc = this.expectedCycleAlloc === 0 ? a : this.expectedCycleAlloc * (1 - PACER_SMOOTHING) + a * PACER_SMOOTHING;
    }
    this.pace(liveBytes, heapBytes);
  }

  /**
   * After an aborted cycle (nothing freed): the next trigger is paced again
   * from the heap as it is now, with the live bytes the last completed
   * cycle left (an abort tells nothing new about them), so the soft limit
   * and the floor near maxHeap hold. Kept at its old value, counted from
   * the aborted cycle's start, the trigger let a program that only reaches
   * safepoints fill the heap with garbage and get HeapExhaustedError
   * (found in review).
   */
  cycleAborted(heapBytes: number): void {
    this.consecutiveAborts++;
    this.pace(this.lastLiveBytes, heapBytes);
  }
  private lastLiveBytes = 0;

  /** Sets the goal and the next trigger (paceTrigger) from the live bytes and the heap's size now. */
  private pace(liveBytes: number, heapBytes: number): void {
    const o = this.o;
    const { goal, trigger } = paceTrigger({
      liveBytes, heapBytes, gcPercent: o.gcPercent, minTriggerBytes: o.minTriggerBytes, maxHeap: o.maxHeap,
      expectedCycleAllocBytes: this.expectedCycleAlloc,
    });
    this.goalBytes = goal;
    this.triggerBytes = trigger;
  }

  shouldCollect(allocatedSinceCycle: number): boolean {
    return allocatedSinceCycle >= this.triggerBytes;
  }

  /**
   * Whether a safepoint that finds the child still marking waits for it
   * (Collector.finishMarkingSync, bounded by the watchdog): when the heap's
   * counted bytes are past the soft limit. Below it the mutator runs on, as
   * forked marking is meant to let it; past it, the heap may fill before the
   * cycle ends, and an allocation at maxHeap cannot start the next cycle
   * after an abort (it is no safepoint), only fail. A synchronous program
   * whose child was slow to run or aborted late filled a 30 MiB heap with
   * garbage that way (a flaky test, 2026-12).
   */
  safepointWaits(countedBytes: number): boolean {
    return countedBytes >= this.o.maxHeap * SOFT_LIMIT_RATIO;
  }

  /** After too many failed children in a row, collect stop-the-world once. */
  useStopTheWorld(mode: 'fork' | 'stw'): boolean {
    return mode === 'stw' || this.consecutiveAborts >= this.o.maxConsecutiveAborts;
  }

  /** Free span bytes to keep resident after a sweep (the rest go back to the OS): see retainTarget. */
  retainFreeBytes(liveBytes: number): number {
    const o = this.o;
    return retainTarget({ liveBytes, gcPercent: o.gcPercent, minTriggerBytes: o.minTriggerBytes, maxHeap: o.maxHeap });
  }

  /** How long the child may take before the watchdog kills it. */
  childTimeoutMs(heapBytesInUse: number): number {
    return this.o.childTimeoutMs ?? 10_000 + Math.ceil(heapBytesInUse / 2 ** 20) * 20;
  }

  get nextTriggerBytes(): number { return this.triggerBytes; }
  /** Bytes allocated since the last cycle's start by which the next cycle should be over. */
  get goal(): number { return this.goalBytes; }
  /** The pacer's expectation of the bytes allocated while a cycle runs. */
  get expectedCycleAllocBytes(): number { return this.expectedCycleAlloc; }
}
