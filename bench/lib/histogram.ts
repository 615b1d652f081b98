/**
 * Latency histogram: values in nanoseconds, 3 significant digits (0.1%
 * relative precision), from 1 ns to 2^44 ns (~4.9 hours); memory is fixed
 * (36,864 counts), so millions of samples cost nothing extra. The exact
 * count, sum, min and max are kept beside it.
 *
 * HdrHistogram's layout and percentile rule (Gil Tene's, as hdr-histogram-js
 * has them), written here in plain JavaScript over one Float64Array, for two
 * reasons. It must be cheap: lru-cache and splay record one value per
 * operation (about 6 ns a record here, against ~150 for hdr-histogram-js's
 * WebAssembly build and ~5x that for its JavaScript one). And it must not
 * disturb the heap it measures: building the WebAssembly histogram grows a
 * WebAssembly memory, which detaches its old buffer, and the first detach
 * in a process invalidates V8's ArrayBufferDetaching protector for good.
 * Without it, every typed-array access in optimized code checks its
 * buffer's detached bit, and forkgc's accessors are typed-array accesses
 * (binary-trees, gcbench and splay 6-7% slower in fork mode; docs/performance-log.md,
 * "The benchmark's histogram no longer detaches a buffer"). V8's own objects
 * do not care, so the old histogram slowed one side of the comparison only.
 */

/** Sub-buckets per bucket: 2^11, the power of two >= 2 x 10^3 (3 significant digits). */
const SUB_BUCKET_HALF_MAGNITUDE = 10;
const SUB_BUCKET_HALF = 1 << SUB_BUCKET_HALF_MAGNITUDE;
const SUB_BUCKET_COUNT = SUB_BUCKET_HALF * 2;
/** The highest value recorded; larger values are recorded as this. */
export const HISTOGRAM_MAX_NS = 2 ** 44;
/** Buckets to cover HISTOGRAM_MAX_NS: bucket b holds values below SUB_BUCKET_COUNT x 2^b. */
const BUCKETS = (() => {
  let b = 1;
  for (let v = SUB_BUCKET_COUNT; v <= HISTOGRAM_MAX_NS; v *= 2) b++;
  return b;
})();
const COUNTS = (BUCKETS + 1) * SUB_BUCKET_HALF;
const TWO_32 = 2 ** 32;

/** floor(log2(v)) for an integer 1 <= v < 2^53. */
function log2Floor(v: number): number {
  return v < TWO_32 ? 31 - Math.clz32(v) : 63 - Math.clz32(Math.floor(v / TWO_32));
}

/** The bucket of an integer value >= 1 (bucket 0 holds 0..2047 one by one). */
function bucketOf(v: number): number {
  const b = log2Floor(v) - SUB_BUCKET_HALF_MAGNITUDE;
  return b > 0 ? b : 0;
}

/** The counts index of an integer value >= 1 (below 2^31, in int32 arithmetic: the common case). */
export function histogramIndex(v: number): number {
  if (v < 0x8000_0000) {
    const b = Math.max(0, 31 - SUB_BUCKET_HALF_MAGNITUDE - Math.clz32(v));
    return ((b + 1) << SUB_BUCKET_HALF_MAGNITUDE) + (v >>> b) - SUB_BUCKET_HALF;
  }
  const b = bucketOf(v);
  return (b + 1) * SUB_BUCKET_HALF + Math.floor(v / 2 ** b) - SUB_BUCKET_HALF;
}

/** The highest value that falls in counts index i (HdrHistogram's highestEquivalentValue). */
export function histogramIndexHighest(i: number): number {
  let b = Math.floor(i / SUB_BUCKET_HALF) - 1;
  let sub = (i % SUB_BUCKET_HALF) + SUB_BUCKET_HALF;
  if (b < 0) {
    sub -= SUB_BUCKET_HALF;
    b = 0;
  }
  return (sub + 1) * 2 ** b - 1;
}

export class LogHistogram {
  private readonly counts = new Float64Array(COUNTS);
  count = 0;
  sum = 0;
  min = Infinity;
  max = 0;

  record(ns: number): void {
    if (!(ns >= 1)) ns = 1;
    this.count++;
    this.sum += ns;
    if (ns < this.min) this.min = ns;
    if (ns > this.max) this.max = ns;
    this.counts[histogramIndex(Math.min(HISTOGRAM_MAX_NS, Math.round(ns)))]++;
  }

  /**
   * p in [0, 100]. Returns ns: the highest value of the bucket that holds the
   * ceil(p% x count)-th value (HdrHistogram's rule), clamped to the exact
   * min and max.
   */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    if (p >= 100) return this.max;
    if (p <= 0) return this.min;
    const fp = (p / 100) * this.count;
    // Rounded up, less one ulp of fp: its floating-point error must not skip a count.
    const rank = Math.max(1, Math.ceil(fp - 2 ** (Math.floor(Math.log2(fp)) - 52)));
    let seen = 0;
    const counts = this.counts;
    for (let i = 0; i < COUNTS; i++) {
      seen += counts[i];
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, histogramIndexHighest(i)));
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? NaN : this.sum / this.count;
  }
}

/** Exact percentile of a small sample array (nearest-rank). */
export function percentileOf(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  if (p >= 100) return sorted[sorted.length - 1];
  if (p <= 0) return sorted[0];
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.max(0, Math.min(sorted.length - 1, rank))];
}

export const PERCENTILES = [50, 90, 99, 99.9, 99.99, 100] as const;

/** { "50": v, "90": v, ... } of a sample array or histogram, in the unit given by `scale`. */
export function percentileTable(
  src: readonly number[] | LogHistogram,
  scale = 1,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of PERCENTILES) {
    const v = src instanceof LogHistogram ? src.percentile(p) : percentileOf(src, p);
    out[String(p)] = round(v * scale, 4);
  }
  return out;
}

export function round(v: number, digits = 3): number {
  if (!Number.isFinite(v)) return v;
  const f = Math.pow(10, digits);
  return Math.round(v * f) / f;
}
