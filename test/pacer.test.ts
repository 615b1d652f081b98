// The pacer as pure policy (src/collector/policy.ts, paceTrigger): inputs ->
// goal and trigger; and what a sweep keeps resident (retainTarget). With a
// real heap: test/progress.test.ts, test/retention.test.ts.
import { describe, expect, it } from 'vitest';
import {
  MAX_TRIGGER_RATIO, MIN_TRIGGER_RATIO, Policy, RETAIN_OVER_GOAL, paceTrigger, retainTarget, type PacerInputs,
} from '../src/collector/policy.js';
import { resolveOptions } from '../src/api/options.js';

const MiB = 2 ** 20;
const base: PacerInputs = {
  liveBytes: 100 * MiB, heapBytes: 120 * MiB, gcPercent: 100, minTriggerBytes: 4 * MiB, maxHeap: 4096 * MiB,
  expectedCycleAllocBytes: 0,
};

describe('paceTrigger', () => {
  it('the goal is gcPercent of the live bytes, at least minTriggerBytes', () => {
    expect(paceTrigger(base).goal).toBe(100 * MiB);
    expect(paceTrigger({ ...base, gcPercent: 50 }).goal).toBe(50 * MiB);
    expect(paceTrigger({ ...base, liveBytes: MiB }).goal).toBe(4 * MiB);
  });

  it('starts a cycle early by the allocation expected while it runs', () => {
    expect(paceTrigger({ ...base, expectedCycleAllocBytes: 30 * MiB }).trigger).toBe(70 * MiB);
    expect(paceTrigger({ ...base, expectedCycleAllocBytes: 10 * MiB }).trigger).toBe(90 * MiB);
  });

  it('stays within [MIN, MAX] of the goal: no allocation measured still leaves room; a slow cycle runs back to back', () => {
    expect(paceTrigger(base).trigger).toBe(100 * MiB * MAX_TRIGGER_RATIO);
    expect(paceTrigger({ ...base, expectedCycleAllocBytes: 500 * MiB }).trigger).toBe(100 * MiB * MIN_TRIGGER_RATIO);
  });

  it('near maxHeap the soft limit pulls the trigger earlier, never below a quarter of minTriggerBytes, nor past half the room left', () => {
    const near = { ...base, maxHeap: 256 * MiB, heapBytes: 200 * MiB, expectedCycleAllocBytes: 10 * MiB };
    expect(paceTrigger(near).trigger).toBeCloseTo(256 * MiB * 0.9 - 200 * MiB - 10 * MiB, 0);
    expect(paceTrigger({ ...near, heapBytes: 250 * MiB }).trigger).toBe(MiB);
    // Regression (found in review): with 16 MiB of minTriggerBytes the floor
    // (4 MiB) was above the 3 MiB left under a 20 MiB maxHeap: the heap was
    // full before the next cycle could start.
    const small = { ...base, minTriggerBytes: 16 * MiB, maxHeap: 20 * MiB, liveBytes: 17 * MiB, heapBytes: 17 * MiB };
    expect(paceTrigger(small).trigger).toBeLessThanOrEqual(1.5 * MiB);
    expect(paceTrigger({ ...small, heapBytes: 20 * MiB }).trigger).toBe(1);
  });

  it('a heap smaller than minTriggerBytes starts its first cycle at half of maxHeap, not after it is full', () => {
    const p = new Policy(resolveOptions({ maxHeap: '8MiB' }));
    expect(p.shouldCollect(4 * MiB - 1)).toBe(false);
    expect(p.shouldCollect(4 * MiB)).toBe(true);
    expect(new Policy(resolveOptions({ maxHeap: '1GiB' })).shouldCollect(16 * MiB - 1)).toBe(false);
  });

  it('Policy smooths the allocation during cycles (EWMA) into the trigger', () => {
    const p = new Policy(resolveOptions({ maxHeap: '4GiB', minTriggerBytes: '4MiB' }));
    p.cycleCompleted(100 * MiB, 120 * MiB, { markMs: 50, sweepMs: 20, allocatedBytes: 40 * MiB });
    expect(p.expectedCycleAllocBytes).toBe(40 * MiB);
    expect(p.nextTriggerBytes).toBe(60 * MiB);
    p.cycleCompleted(100 * MiB, 120 * MiB, { markMs: 50, sweepMs: 20, allocatedBytes: 20 * MiB });
    expect(p.expectedCycleAllocBytes).toBe(30 * MiB);
    expect(p.nextTriggerBytes).toBe(70 * MiB);
    expect(p.shouldCollect(69 * MiB)).toBe(false);
    expect(p.shouldCollect(70 * MiB)).toBe(true);
  });
});

describe('retainTarget (free span bytes a sweep keeps resident)', () => {
  const r = { liveBytes: 100 * MiB, gcPercent: 100, minTriggerBytes: 4 * MiB, maxHeap: 4096 * MiB };

  it('keeps the pacer\'s goal and 10% over it: what the mutator takes again before the next cycle', () => {
    expect(retainTarget(r)).toBeCloseTo(100 * MiB * RETAIN_OVER_GOAL, 0);
    expect(retainTarget({ ...r, gcPercent: 50 })).toBeCloseTo(50 * MiB * RETAIN_OVER_GOAL, 0);
    expect(retainTarget(r)).toBeCloseTo(paceTrigger({ ...base, ...r }).goal * RETAIN_OVER_GOAL, 0);
  });

  it('a small or empty live set keeps minTriggerBytes (and 10%), not more', () => {
    expect(retainTarget({ ...r, liveBytes: 0 })).toBeCloseTo(4 * MiB * RETAIN_OVER_GOAL, 0);
    expect(retainTarget({ ...r, liveBytes: MiB })).toBeCloseTo(4 * MiB * RETAIN_OVER_GOAL, 0);
  });

  it('follows the live set down at once: a shrunk heap keeps only the new goal', () => {
    expect(retainTarget({ ...r, liveBytes: 10 * MiB })).toBeCloseTo(10 * MiB * RETAIN_OVER_GOAL, 0);
  });

  it('never keeps more than fits under maxHeap next to the live bytes', () => {
    expect(retainTarget({ ...r, maxHeap: 150 * MiB })).toBe(50 * MiB);
    expect(retainTarget({ ...r, maxHeap: 90 * MiB })).toBe(0);
  });

  it('Policy.retainFreeBytes answers from the heap\'s options', () => {
    const p = new Policy(resolveOptions({ maxHeap: '4GiB', minTriggerBytes: '4MiB', gcPercent: 200 }));
    expect(p.retainFreeBytes(100 * MiB)).toBeCloseTo(200 * MiB * RETAIN_OVER_GOAL, 0);
    expect(p.retainFreeBytes(0)).toBeCloseTo(4 * MiB * RETAIN_OVER_GOAL, 0);
  });
});
