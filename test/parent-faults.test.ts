/**
 * CycleStats.parentMinorFaults read in the order that cannot go low
 * (src/collector/parent-faults.ts): the heap's threads (restore,
 * prefault) may take faults
 * between any two reads, and the figure must still count every fault of
 * the application's, and never go below 0. With the reads the other way
 * round it went below the application's own count (-13k in a review).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { faultsSince, markFaults, type FaultReaders } from '../src/collector/parent-faults.js';

/** Counters where the heap's threads take `step` faults before every read of either. */
function counters(step: () => number): FaultReaders & { app: number; thread: number } {
  const c = {
    app: 0,
    thread: 0,
    process: () => {
      c.thread += step();
      return c.app + c.thread;
    },
    threads: () => {
      c.thread += step();
      return c.thread;
    },
  };
  return c;
}

describe('the parent\'s faults over a cycle, less the heap\'s own threads\'', () => {
  it('counts every fault of the application\'s however the thread works between the reads, and never more than it took in between', () => {
    fc.assert(fc.property(
      fc.nat(100_000), fc.array(fc.nat(5000), { minLength: 4, maxLength: 4 }), fc.nat(1_000_000),
      (appFaults, steps, before) => {
        let i = 0;
        const c = counters(() => steps[i++ % steps.length]);
        c.app = before;
        const start = markFaults(c);
        c.app += appFaults;
        const figure = faultsSince(start, c);
        expect(figure).toBeGreaterThanOrEqual(appFaults);
        // What it may add: the thread's faults between the two reads at each end.
        expect(figure).toBeLessThanOrEqual(appFaults + steps[1] + steps[3]);
      },
    ));
  });

  it('a thread that does nothing leaves the application\'s count exactly', () => {
    const c = counters(() => 0);
    const start = markFaults(c);
    c.app += 1234;
    expect(faultsSince(start, c)).toBe(1234);
  });
});
