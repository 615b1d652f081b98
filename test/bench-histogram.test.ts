// bench/lib/histogram.ts: the benchmarks' latency histogram (HdrHistogram's
// layout, 3 significant digits), against exact percentiles of the samples.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HISTOGRAM_MAX_NS, LogHistogram, histogramIndex, histogramIndexHighest } from '../bench/lib/histogram.js';

/** The value a sample is recorded as: at least 1, rounded, at most the histogram's top. */
const recorded = (ns: number) => Math.min(HISTOGRAM_MAX_NS, Math.round(ns >= 1 ? ns : 1));

describe('LogHistogram', () => {
  it('has contiguous buckets, each at most 1/1024 of its values wide, one by one up to 2047', () => {
    let lo = 1;
    for (let i = histogramIndex(1); lo <= HISTOGRAM_MAX_NS; i++) {
      const hi = histogramIndexHighest(i);
      expect(histogramIndex(lo)).toBe(i);
      expect(histogramIndex(hi)).toBe(i);
      if (lo < 2048) expect(hi).toBe(lo);
      expect(hi - lo + 1).toBeLessThanOrEqual(Math.max(1, lo / 1024));
      lo = hi + 1;
    }
    // The top value's bucket, and the int32 fast path's edge.
    expect(histogramIndexHighest(histogramIndex(HISTOGRAM_MAX_NS))).toBeGreaterThanOrEqual(HISTOGRAM_MAX_NS);
    expect(histogramIndex(0x8000_0000)).toBe(histogramIndex(0x7fff_ffff) + 1);
  });

  it('gives the highest value of the bucket of the exact nearest-rank percentile, within the exact min and max', () => {
    const sample = fc.oneof(
      fc.double({ min: -10, max: 3000, noNaN: true }),
      fc.double({ min: 1, max: 2 ** 46, noNaN: true }),
      fc.integer({ min: 0, max: 64 }).map((k) => k * 1024),
    );
    fc.assert(fc.property(fc.array(sample, { minLength: 1, maxLength: 400 }),
      fc.array(fc.double({ min: 0.001, max: 99.999, noNaN: true }), { minLength: 1, maxLength: 8 }), (values, ps) => {
        const h = new LogHistogram();
        for (const v of values) h.record(v);
        const clamped = values.map((v) => (v >= 1 ? v : 1));
        const exact = values.map(recorded);
        expect(h.count).toBe(values.length);
        expect(h.min).toBe(Math.min(...clamped));
        expect(h.max).toBe(Math.max(...clamped));
        expect(h.percentile(0)).toBe(h.min);
        expect(h.percentile(100)).toBe(h.max);
        for (const p of ps) {
          // HdrHistogram's rank: ceil(p% of the count), less one ulp of it first.
          const fp = (p / 100) * exact.length;
          const rank = Math.max(1, Math.ceil(fp - 2 ** (Math.floor(Math.log2(fp)) - 52)));
          const x = [...exact].sort((a, b) => a - b)[rank - 1];
          const want = Math.min(h.max, Math.max(h.min, histogramIndexHighest(histogramIndex(x))));
          expect(h.percentile(p)).toBe(want);
        }
      }), { numRuns: 300 });
  });

  it('is empty until a value is recorded', () => {
    const h = new LogHistogram();
    expect(h.percentile(50)).toBeNaN();
    expect(h.mean()).toBeNaN();
    h.record(5);
    h.record(15);
    expect(h.percentile(50)).toBe(5);
    expect(h.mean()).toBe(10);
  });
});
