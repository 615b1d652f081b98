// The pacer as pure policy (src/collector/policy.ts, paceTrigger): inputs ->
// goal and trigger. With a real heap: test/progress.test.ts.
import { describe, expect, it } from 'vitest';
import { MAX_TRIGGER_RATIO, MIN_TRIGGER_RATIO, Policy, paceTrigger, type PacerInputs } from '../src/collector/policy.js';
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

  it('near maxHeap the soft limit pulls the trigger earlier, never below a quarter of minTriggerBytes', () => {
    const near = { ...base, maxHeap: 256 * MiB, heapBytes: 200 * MiB, expectedCycleAllocBytes: 10 * MiB };
    expect(paceTrigger(near).trigger).toBeCloseTo(256 * MiB * 0.9 - 200 * MiB - 10 * MiB, 0);
    expect(paceTrigger({ ...near, heapBytes: 250 * MiB }).trigger).toBe(MiB);
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
