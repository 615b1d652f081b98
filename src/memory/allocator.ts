// The allocator: spans of one size class each, allocation bits per granule,
// large objects in runs of whole spans. It runs on the main thread only.
//
// Where a slot comes from, in order:
//   1. the current span of its class, from a cursor;
//   2. a swept span of the class that has free slots (`partial`);
//   3. during a sweep: an unswept span of the class, swept right here (lazy
//      sweeping) rather than waiting for the background sweeper;
//   4. a free span (zeroed first if it is dirty), or a new one above `topSpan`.
// When none is left the caller (the heap) decides: finish the sweep, wait for
// the pending cycle, or throw HeapExhaustedError.
//
// The mutator never allocates from a span that is not IN_USE: spans become
// UNSWEPT at the start of a sweep, and `current`/`partial` are dropped then.
// Sweeper threads may sweep any UNSWEPT span meanwhile (src/memory/sweeper.ts says
// how the two sides agree); the lists are rebuilt from the span table when
// the sweep ends.
import {
  CLASS_GRANULES, CLASS_SLOTS, FREE_CLEAN, FREE_DIRTY, FREE_RELEASED, LARGE_CLASS, SPAN_BYTES,
  SPAN_FREE, SPAN_GRANULES, SPAN_IN_USE, SPAN_LARGE_TAIL, SPAN_RESERVED, SPAN_SWEEPING, SPAN_UNSWEPT, SPAN_WORDS,
  SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from './layout.js';
import { SweepTally, claimSpan, sweepClaimedSpan } from './sweeper.js';
import type { HeapViews } from './views.js';
import type { StallSink } from '../collector/stalls.js';

/** Spans one allocation may sweep lazily before it takes a free or new span instead. */
export const LAZY_SWEEP_BUDGET = 4;

export class Allocator {
  /** One past the highest span ever handed out and still counted; the child marks [0, topSpan). */
  topSpan = 1;
  /** The highest topSpan ever: spans below it once held objects. */
  highWaterSpan = 1;
  inUseSpans = 0;
  private readonly current: Int32Array;
  private readonly cursor: Int32Array;
  private readonly partial: number[][];
  private readonly unswept: number[][];
  private freeSpans: number[] = [];
  /** Whether a sweep is in progress (spans may be UNSWEPT). */
  sweeping = false;
  /** What lazy sweeping on the main thread did in the current sweep. */
  readonly lazyTally = new SweepTally();
  lazySweepNs = 0;
  /** The longest single lazy sweep (one allocation's worth) in the current sweep. */
  lazySweepMaxNs = 0;
  /** Where main-thread waits on sweeping are reported (src/collector/stalls.ts). */
  stalls: StallSink | undefined;
  /** harvestFreed(): the next span to look at, the sweep's top, the spans already listed this sweep. */
  private harvestFrom = 1;
  private sweepTop = 1;
  private known = new Uint8Array(0);

  constructor(private readonly v: HeapViews) {
    this.current = new Int32Array(LARGE_CLASS).fill(-1);
    this.cursor = new Int32Array(LARGE_CLASS);
    this.partial = Array.from({ length: LARGE_CLASS }, () => []);
    this.unswept = Array.from({ length: LARGE_CLASS + 1 }, () => []);
    Atomics.store(v.spans, SW_STATE, SPAN_RESERVED);
  }

  get topGranule(): number { return this.topSpan * SPAN_GRANULES; }

  /** A free slot of class `cls` (its alloc bit not yet set), or 0 if none is left. */
  allocSmall(cls: number): number {
    const v = this.v;
    const alloc = v.allocBits;
    for (;;) {
      const s = this.current[cls];
      if (s >= 0) {
        const e = s * SPAN_WORDS;
        const slots = CLASS_SLOTS[cls];
        if (v.spans[e + SW_LIVE] < slots) {
          const sg = CLASS_GRANULES[cls];
          const base = s * SPAN_GRANULES;
          for (let i = this.cursor[cls]; i < slots; i++) {
            const g = base + i * sg;
            if ((alloc[g >>> 5] & (1 << (g & 31))) === 0) {
              this.cursor[cls] = i + 1;
              v.spans[e + SW_LIVE]++;
              return g;
            }
          }
        }
        this.current[cls] = -1;
      }
      const next = this.nextSpanFor(cls);
      if (next < 0) return 0;
      this.current[cls] = next;
      this.cursor[cls] = 0;
    }
  }

  private nextSpanFor(cls: number): number {
    const partial = this.partial[cls];
    while (partial.length > 0) {
      const s = partial.pop()!;
      if (this.v.spans[s * SPAN_WORDS + SW_STATE] === SPAN_IN_USE && this.v.spans[s * SPAN_WORDS + SW_CLASS] === cls) return s;
    }
    // A span already free below the top costs nothing; sweeping one costs the
    // mutator time (that is the sweeper threads' work); a new span grows the
    // heap. In that order.
    let s = this.takeFreeSpans(1, false);
    if (s < 0 && this.sweeping) {
      const swept = this.lazySweep(cls);
      if (swept >= 0) return swept;
    }
    if (s < 0) s = this.takeFreeSpans(1, true);
    if (s < 0) return -1;
    const e = s * SPAN_WORDS;
    this.v.spans[e + SW_CLASS] = cls;
    this.v.spans[e + SW_LIVE] = 0;
    this.v.spans[e + SW_AUX] = 0;
    Atomics.store(this.v.spans, e + SW_STATE, SPAN_IN_USE);
    this.inUseSpans++;
    return s;
  }

  /**
   * Lazy sweeping, bounded (Go's mcentral: sweep a little, then go on). Picks
   * up spans sweeper threads have freed meanwhile (harvestFreed), then sweeps
   * unswept spans of the class until one has a free slot, stopping early:
   * at the first span swept empty (it is on the free list now, and the
   * caller allocates from it next) and after LAZY_SWEEP_BUDGET spans
   * swept (the caller then takes a free or new span; the rest is the sweeper
   * threads' work). Timed as a stall ('lazySweep').
   */
  private lazySweep(cls: number): number {
    const list = this.unswept[cls];
    const slots = CLASS_SLOTS[cls];
    const stall = this.stalls?.begin() ?? 0;
    const start = process.hrtime.bigint();
    try {
      if (this.harvestFreed() > 0) return -1;
      let budget = LAZY_SWEEP_BUDGET;
      while (list.length > 0 && budget > 0) {
        const s = list.pop()!;
        if (!claimSpan(this.v, s)) {
          // A sweeper got it first. If it is done, its store of the state
          // (read here with Atomics.load) orders all its writes before ours:
          // the span is ready to allocate from - if it still holds this
          // class. It may have been swept empty and reused for another one
          // since it was listed here.
          const e = s * SPAN_WORDS;
          if (Atomics.load(this.v.spans, e + SW_STATE) === SPAN_IN_USE && this.v.spans[e + SW_CLASS] === cls &&
              this.v.spans[e + SW_LIVE] < slots) return s;
          continue;
        }
        budget--;
        const freed = sweepClaimedSpan(this.v, s, this.lazyTally);
        if (freed === 0 && this.v.spans[s * SPAN_WORDS + SW_LIVE] < slots) return s;
        this.afterSweep(s, freed);
        if (freed > 0) return -1;  // swept empty: the caller takes it from the free list
      }
      return -1;
    } finally {
      const ns = Number(process.hrtime.bigint() - start);
      this.lazySweepNs += ns;
      if (ns > this.lazySweepMaxNs) this.lazySweepMaxNs = ns;
      this.stalls?.end('lazySweep', stall);
    }
  }

  /**
   * During a sweep: puts spans that other threads have swept free since the
   * last look on the free list (a walk of the span table from where the last
   * one stopped to the first span not yet swept: O(spans) per sweep in all).
   * Returns how many it found.
   */
  harvestFreed(): number {
    const spans = this.v.spans;
    let found = 0;
    let s = this.harvestFrom;
    for (; s < this.sweepTop; s++) {
      const state = Atomics.load(spans, s * SPAN_WORDS + SW_STATE);
      if (state === SPAN_UNSWEPT || state === SPAN_SWEEPING) break;
      if (state === SPAN_FREE && !this.known[s]) {
        this.known[s] = 1;
        this.freeSpans.push(s);
        found++;
      }
    }
    this.harvestFrom = s;
    return found;
  }

  /** Bookkeeping after any sweeper finished span s, freeing `freedSpans` spans from s on. */
  afterSweep(s: number, freedSpans: number): void {
    if (freedSpans > 0) {
      this.inUseSpans -= freedSpans;
      for (let t = s; t < s + freedSpans; t++) {
        this.freeSpans.push(t);
        if (this.sweeping) this.known[t] = 1;
      }
      return;
    }
    const cls = this.v.spans[s * SPAN_WORDS + SW_CLASS];
    if (cls !== LARGE_CLASS && this.v.spans[s * SPAN_WORDS + SW_LIVE] < CLASS_SLOTS[cls]) this.partial[cls].push(s);
  }

  /** Start of a sweep: every span in use becomes UNSWEPT. */
  beginSweep(): void {
    const v = this.v;
    for (let c = 0; c < LARGE_CLASS; c++) {
      this.current[c] = -1;
      this.partial[c].length = 0;
    }
    for (const list of this.unswept) list.length = 0;
    for (let s = 1; s < this.topSpan; s++) {
      const e = s * SPAN_WORDS;
      if (v.spans[e + SW_STATE] === SPAN_IN_USE) {
        Atomics.store(v.spans, e + SW_STATE, SPAN_UNSWEPT);
        this.unswept[v.spans[e + SW_CLASS]].push(s);
      }
    }
    this.lazyTally.freedObjects = this.lazyTally.freedBytes = this.lazyTally.liveObjects = 0;
    this.lazyTally.spans = this.lazyTally.emptiedSpans = 0;
    this.lazySweepNs = 0;
    this.lazySweepMaxNs = 0;
    if (this.known.length < this.topSpan) this.known = new Uint8Array(this.v.spanCount);
    else this.known.fill(0, 0, this.topSpan);
    this.harvestFrom = 1;
    this.sweepTop = this.topSpan;
    this.sweeping = true;
  }

  endSweep(): void {
    this.sweeping = false;
    for (const list of this.unswept) list.length = 0;
    this.rebuildFromTable();
  }

  /**
   * Recomputes the free list, the partial lists and the span count from the
   * span table: after a sweep, spans swept by worker threads are known only
   * there. O(spans), once per cycle.
   */
  rebuildFromTable(): void {
    const spans = this.v.spans;
    let inUse = 0;
    this.freeSpans = [];
    for (let c = 0; c < LARGE_CLASS; c++) this.partial[c].length = 0;
    for (let s = 1; s < this.topSpan; s++) {
      const e = s * SPAN_WORDS;
      const state = Atomics.load(spans, e + SW_STATE);
      if (state === SPAN_FREE) {
        this.freeSpans.push(s);
        continue;
      }
      inUse++;
      if (state !== SPAN_IN_USE) continue;
      const cls = spans[e + SW_CLASS];
      if (cls !== LARGE_CLASS && s !== this.current[cls] && spans[e + SW_LIVE] < CLASS_SLOTS[cls]) this.partial[cls].push(s);
    }
    this.inUseSpans = inUse;
  }

  /** Whether any span is being swept by some thread right now. */
  anySweeping(): boolean {
    for (let s = 1; s < this.topSpan; s++) {
      if (Atomics.load(this.v.spans, s * SPAN_WORDS + SW_STATE) === SPAN_SWEEPING) return true;
    }
    return false;
  }

  /** First span of a run of n free spans, made IN_USE-ready, or -1. Zeroes dirty spans. */
  private takeFreeSpans(n: number, grow = true): number {
    const v = this.v;
    let s = -1;
    if (n === 1) {
      while (this.freeSpans.length > 0) {
        const t = this.freeSpans.pop()!;
        if (v.spans[t * SPAN_WORDS + SW_STATE] === SPAN_FREE) { s = t; break; }
      }
      if (s < 0 && grow && this.topSpan < v.spanCount) s = this.topSpan;
    } else {
      s = this.findFreeRun(n);
    }
    if (s < 0) return -1;
    for (let t = s; t < s + n; t++) {
      const e = t * SPAN_WORDS;
      if (v.spans[e + SW_AUX] === FREE_DIRTY) v.u32.fill(0, t * (SPAN_BYTES / 4), (t + 1) * (SPAN_BYTES / 4));
      v.spans[e + SW_AUX] = FREE_CLEAN;
    }
    if (s + n > this.topSpan) this.topSpan = s + n;
    if (this.topSpan > this.highWaterSpan) this.highWaterSpan = this.topSpan;
    return s;
  }

  private findFreeRun(n: number): number {
    const v = this.v;
    let runStart = 1;
    let runLength = 0;
    for (let s = 1; s < v.spanCount; s++) {
      if (v.spans[s * SPAN_WORDS + SW_STATE] === SPAN_FREE) {
        if (runLength === 0) runStart = s;
        if (++runLength === n) return runStart;
      } else {
        runLength = 0;
      }
    }
    return -1;
  }

  /** A run of spans for one large object; returns its granule or 0. */
  allocLarge(bytes: number): number {
    const n = Math.ceil(bytes / SPAN_BYTES);
    let s = this.takeFreeSpans(n);
    if (s < 0 && this.sweeping) {
      this.sweepAllLazily();
      s = this.takeFreeSpans(n);
    }
    if (s < 0) return 0;
    const v = this.v;
    for (let t = s; t < s + n; t++) {
      const e = t * SPAN_WORDS;
      v.spans[e + SW_CLASS] = t === s ? LARGE_CLASS : 0;
      v.spans[e + SW_LIVE] = t === s ? 1 : 0;
      v.spans[e + SW_AUX] = t === s ? n : s;
      Atomics.store(v.spans, e + SW_STATE, t === s ? SPAN_IN_USE : SPAN_LARGE_TAIL);
    }
    this.inUseSpans += n;
    return s * SPAN_GRANULES;
  }

  /** Sweeps every remaining unswept span on this thread (heap nearly full). */
  sweepAllLazily(): void {
    const stall = this.stalls?.begin() ?? 0;
    const start = process.hrtime.bigint();
    try {
      for (let s = 1; s < this.topSpan; s++) {
        if (claimSpan(this.v, s)) this.afterSweep(s, sweepClaimedSpan(this.v, s, this.lazyTally));
      }
    } finally {
      this.lazySweepNs += Number(process.hrtime.bigint() - start);
      this.stalls?.end('lazySweep', stall);
    }
  }

  /**
   * After a sweep: gives free resident spans beyond `retainBytes` back to the
   * OS, highest first, in runs (whole 2 MiB groups when huge pages back the
   * arena, so no huge page is split), zeroes dirty spans that stay, and lowers
   * topSpan over trailing free spans. Returns the bytes given back.
   */
  releaseFreeSpans(retainBytes: number, hugePages: boolean, release: (offset: number, bytes: number) => boolean): number {
    const v = this.v;
    const spans = v.spans;
    const state = (s: number) => spans[s * SPAN_WORDS + SW_STATE];
    const resident = (s: number) => state(s) === SPAN_FREE && spans[s * SPAN_WORDS + SW_AUX] !== FREE_RELEASED;
    let residentFree = 0;
    for (let s = 1; s < this.topSpan; s++) if (resident(s)) residentFree++;
    let toRelease = residentFree - Math.floor(retainBytes / SPAN_BYTES);
    let returned = 0;
    const unit = hugePages ? 32 : 1;
    let runLo = -1;
    let runHi = -1;
    const flush = () => {
      if (runLo < 0) return;
      if (release(runLo * SPAN_BYTES, (runHi - runLo) * SPAN_BYTES)) {
        for (let s = runLo; s < runHi; s++) {
          if (resident(s)) returned += SPAN_BYTES;
          spans[s * SPAN_WORDS + SW_AUX] = FREE_RELEASED;
        }
      }
      runLo = runHi = -1;
    };
    for (let hi = this.topSpan; hi > 1 && toRelease > 0;) {
      const lo = Math.max(1, Math.floor((hi - 1) / unit) * unit);
      let allFree = true;
      let count = 0;
      for (let s = lo; s < hi; s++) {
        if (state(s) !== SPAN_FREE) allFree = false;
        else if (resident(s)) count++;
      }
      if (allFree && count > 0) {
        if (runLo !== hi) flush();
        if (runHi < 0) runHi = hi;
        runLo = lo;
        toRelease -= count;
      } else {
        flush();
      }
      hi = lo;
    }
    flush();
    // Dirty spans that stay resident must read as zero before reuse: zero
    // them now, off the allocation path.
    for (let s = 1; s < this.topSpan; s++) {
      const e = s * SPAN_WORDS;
      if (spans[e + SW_STATE] === SPAN_FREE && spans[e + SW_AUX] === FREE_DIRTY) {
        v.u32.fill(0, s * (SPAN_BYTES / 4), (s + 1) * (SPAN_BYTES / 4));
        spans[e + SW_AUX] = FREE_CLEAN;
      }
    }
    while (this.topSpan > 1 && state(this.topSpan - 1) === SPAN_FREE) this.topSpan--;
    this.freeSpans = this.freeSpans.filter((s) => s < this.topSpan && state(s) === SPAN_FREE);
    return returned;
  }

  get heapBytes(): number { return this.inUseSpans * SPAN_BYTES; }
}
