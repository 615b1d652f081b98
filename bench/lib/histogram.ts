/**
 * Log-bucketed latency histogram (HdrHistogram-like, ~1.1% relative precision).
 * Values are recorded in nanoseconds; memory is fixed (64 buckets per power of two
 * up to 2^44 ns ≈ 4.9 hours), so millions of samples cost nothing extra.
 */
const SUB = 64;
const POW = 45;

export class LogHistogram {
  private readonly counts = new Float64Array(SUB * POW);
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
    let idx = Math.floor(Math.log2(ns) * SUB);
    if (idx >= this.counts.length) idx = this.counts.length - 1;
    this.counts[idx]++;
  }

  /** p in [0, 100]. Returns ns (bucket midpoint, clamped to the exact min/max). */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    if (p >= 100) return this.max;
    if (p <= 0) return this.min;
    const target = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= target) {
        const v = Math.pow(2, (i + 0.5) / SUB);
        return Math.min(this.max, Math.max(this.min, v));
      }
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
