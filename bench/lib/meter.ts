/**
 * Mutator-side pause measurement, identical for every system:
 *
 *  - `tick()`: the workload calls it after each unit of work (a request, a splay
 *    operation, 1024 tree-node allocations). The gap since the previous tick is
 *    recorded, so it includes everything the mutator had to wait for between two
 *    units: collector pauses inside allocation, safepoints, and event-loop turns in
 *    which the collector ran callbacks (forkgc pipe reads and sweeps). Baseline
 *    (no GC) is the unit's own cost; the tail is the pauses.
 *  - heartbeat: a 1 ms setInterval whose callback gaps are measured with
 *    process.hrtime.bigint(); it sees how long the event loop was held.
 *  - V8's own 'gc' PerformanceObserver entries.
 *  - forkgc's CycleStats (recorded by the harness).
 *
 * The workloads yield to the event loop every `yieldEveryMs` (both variants at
 * the same points), which is what lets the heartbeat and forkgc's asynchronous
 * cycle machinery run at all.
 */
import { PerformanceObserver, performance, constants as perfConstants } from 'node:perf_hooks';
import { setImmediate as setImmediateP } from 'node:timers/promises';
import { LogHistogram } from './histogram.js';
import { ThreadClock } from './thread-clock.js';

const TOP_GAPS = 8;

/** How much of [start, end] the intervals [s, e] cover, summed (ms; overlapping intervals count twice). */
export function coveredMs(start: number, end: number, intervals: readonly (readonly [number, number])[]): number {
  let ms = 0;
  for (const [s, e] of intervals) ms += Math.max(0, Math.min(end, e) - Math.max(start, s));
  return ms;
}

export class Meter {
  readonly ticks = new LogHistogram();
  private last = 0;
  private lastYield = 0;
  private sampledAt = 0;
  /** Set by tick() when the workload should yield to the event loop. */
  yieldDue = false;
  /** Set by tick(): a good moment for a forkgc safepoint. */
  safepointDue = false;
  yields = 0;
  /** When false, tick() keeps pacing (yield/safepoint flags) but records nothing (setup phases). */
  recording = true;
  /** performance.now() intervals outside the measured phase (setup, forced collections). */
  readonly excluded: [number, number][] = [];
  private setupStart = -1;

  /** The main thread's run and run-queue time, sampled in tick() and around each yield (lib/thread-clock.ts), to attribute the top gaps. */
  readonly clock = new ThreadClock();

  constructor(readonly unit: string, readonly yieldEveryMs = 2) {}

  start(): void {
    this.clock.open();
    this.clock.sample();
    this.last = performance.now();
    this.lastYield = this.last;
  }

  /** The last sample of the thread clock (call when the run is over). */
  stop(): void {
    this.clock.sample();
    this.clock.close();
  }

  /** The largest gaps seen: [gap ms, performance.now() at the gap's end], largest first. */
  readonly topGaps: [number, number][] = [];

  private noteGap(gapMs: number, at: number): void {
    const g = this.topGaps;
    if (g.length === TOP_GAPS && gapMs <= g[g.length - 1][0]) return;
    g.push([gapMs, at]);
    g.sort((a, b) => b[0] - a[0]);
    if (g.length > TOP_GAPS) g.pop();
  }

  tick(): void {
    const now = performance.now();
    if (this.recording) {
      const gap = now - this.last;
      this.ticks.record(gap * 1e6);
      if (gap > 1) this.noteGap(gap, now);
      // A sample at the end of every gap over 1 ms, and at most one a
      // millisecond otherwise (a read costs ~1.5 µs): a gap's window starts
      // at most ~1 ms before it and ends with it.
      if (gap > 1 || now - this.sampledAt >= 1) {
        this.clock.sample(now);
        this.sampledAt = now;
      }
    }
    this.last = now;
    this.safepointDue = true;
    if (now - this.lastYield >= this.yieldEveryMs) this.yieldDue = true;
  }

  /** Yield to the event loop (setImmediate), then resume. */
  async yield(): Promise<void> {
    this.yieldDue = false;
    this.yields++;
    this.clock.sample();
    await setImmediateP();
    this.clock.sample();
    this.lastYield = performance.now();
  }

  /** Forget the time spent outside the measured phase (setup, verification). */
  resetClock(): void {
    this.last = performance.now();
  }

  /** Stop recording (setup), then `begin()` to record the measured phase. */
  setup(): void {
    this.recording = false;
    this.setupStart = performance.now();
  }

  begin(): void {
    if (this.setupStart >= 0) this.excluded.push([this.setupStart, performance.now()]);
    this.setupStart = -1;
    this.recording = true;
    this.resetClock();
  }

  /** End of the measured phase: nothing after this point counts. */
  end(): void {
    this.recording = false;
    this.setupStart = performance.now();
  }

  /** Closes an open unmeasured interval (at the end of the run). */
  closeIntervals(): void {
    if (this.setupStart >= 0) this.excluded.push([this.setupStart, Infinity]);
    this.setupStart = -1;
  }

  isExcluded(t: number): boolean {
    return this.excluded.some(([s, e]) => t >= s && t <= e);
  }
}

export class Heartbeat {
  readonly gaps = new LogHistogram();
  private timer: NodeJS.Timeout | null = null;
  private last = 0n;
  paused = false;

  /** Records only while gate() is true (the measured phase), e.g. () => meter.recording. */
  constructor(private readonly gate: () => boolean = () => true) {}

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.last = process.hrtime.bigint();
  }

  start(periodMs = 1): void {
    this.last = process.hrtime.bigint();
    this.timer = setInterval(() => {
      const now = process.hrtime.bigint();
      if (!this.paused && this.gate()) this.gaps.record(Number(now - this.last));
      this.last = now;
    }, periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

const GC_KIND: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

export class V8GcObserver {
  readonly pausesMs: number[] = [];
  readonly byKind: Record<string, { count: number; totalMs: number; maxMs: number }> = {};
  private obs: PerformanceObserver | null = null;
  private readonly raw: { start: number; duration: number; kind: string }[] = [];
  /** performance.now() intervals whose gc entries are not counted (forced collections). */
  private readonly excluded: [number, number][] = [];
  excludedCount = 0;

  exclude(start: number, end: number): void {
    this.excluded.push([start, end]);
  }

  start(): void {
    this.obs = new PerformanceObserver((list) => this.take(list.getEntries()));
    this.obs.observe({ entryTypes: ['gc'] });
  }

  private take(entries: readonly PerformanceEntry[]): void {
    for (const e of entries) {
      const detail = (e as PerformanceEntry & { detail?: { kind?: number } }).detail;
      this.raw.push({ start: e.startTime, duration: e.duration, kind: GC_KIND[detail?.kind ?? -1] ?? 'other' });
    }
  }

  private summarize(): void {
    for (const e of this.raw) {
      if (this.excluded.some(([s, t]) => e.start >= s && e.start <= t)) {
        this.excludedCount++;
        continue;
      }
      this.pausesMs.push(e.duration);
      const k = (this.byKind[e.kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
      k.count++;
      k.totalMs += e.duration;
      if (e.duration > k.maxMs) k.maxMs = e.duration;
    }
  }

  /** How much of [start, end] (performance.now() ms) V8's collections covered, all kinds together. */
  overlapMs(start: number, end: number): number {
    return coveredMs(start, end, this.raw.map((e): [number, number] => [e.start, e.start + e.duration]));
  }

  /** Entries are delivered asynchronously: give them a turn, then stop. */
  async stop(): Promise<void> {
    await new Promise((r) => setTimeout(r, 5));
    if (this.obs) {
      this.take(this.obs.takeRecords());
      this.obs.disconnect();
    }
    this.obs = null;
    this.summarize();
  }
}
