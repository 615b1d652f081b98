// A function V8 deoptimizes on every call runs at interpreter speed plus
// the deoptimizer's cost each time: a deopt loop. The collector's
// checksumWords was one (its loop compiled on the spot during warmIntake's
// long first call, then re-entered from every later call and deoptimized
// at the call after the loop, which had no feedback there): twice a cycle,
// about 1 ms each, on the main thread, during the stream's intake. This
// test reads V8's own deoptimization trace over forty cycles: not a timing,
// a property of the compiled code.
import { describe, expect, it } from 'vitest';
import { traceFixture } from './helpers/v8-trace.js';

describe('no deopt loops in the collector', () => {
  it('over forty fork cycles, no function is deoptimized more than a few times', () => {
    const trace = traceFixture('deopt-loops.mjs', '--trace-deopt', 90_000).join('\n');
    const counts = new Map<string, number>();
    for (const m of trace.matchAll(/deoptimizing 0x[0-9a-f]+ <JSFunction (\S*) \(sfi/g)) {
      counts.set(m[1], (counts.get(m[1]) ?? 0) + 1);
    }
    expect(counts.size, 'the trace was read').toBeGreaterThan(0);
    const looping = [...counts].filter(([, n]) => n > 10);
    expect(looping).toEqual([]);
  }, 120_000);
});
