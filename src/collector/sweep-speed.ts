// The main thread's sweep speed, as the inline-sweep decision sees it
// (src/collector/sweep-driver.ts): ns per span, the lowest of the last
// eight measured sweeps (recent-samples.ts). On a shared machine a sweep
// that the scheduler preempts measures milliseconds it did not spend sweeping; the lowest
// recent figure is what a sweep costs when it runs, and an average would
// keep a few preempted ones for many cycles and send small heaps to the
// threads for nothing. The other way round - the machine really is slower
// now - an inline sweep overruns its deadline, and an overrun replaces
// every sample: the next sweeps go to the threads, whose own measured
// sweeps (the same code on the same machine) bring the figure back down.

import { RecentSamples } from './recent-samples.js';

export class SweepSpeed {
  private readonly samples: RecentSamples;

  constructor(firstGuessNs: number) {
    this.samples = new RecentSamples(firstGuessNs);
  }

  /** The figure the decision uses: ns per span. */
  get nsPerSpan(): number {
    return this.samples.lowest;
  }

  /** Forgets every sample: the speed is `ns` per span from now on (a test's lever, and what an overrun does). */
  reset(ns: number): void {
    this.samples.fill(ns);
  }

  /** A sweep that went through `spans` spans in `ns`. */
  measured(ns: number, spans: number): void {
    this.samples.add(ns / spans);
  }

  /** An inline sweep ran past its deadline after `spans` spans in `ns`: no earlier sample counts. */
  overran(ns: number, spans: number): void {
    this.reset(Math.max(ns / spans, this.nsPerSpan * 2));
  }
}
