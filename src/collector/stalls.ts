// Every wait of the main thread on the collector, timed. Each place the
// mutator can be held by GC work - the fork call, stop-the-world marking, reading and staging the
// child's stream, synchronous reads (at maxHeap, or at a safepoint past the soft limit), starting and ending a sweep,
// sweeping on the main thread (slices, lazy sweeping in an allocation,
// finishing a sweep synchronously), finalization callbacks, the weak read
// barrier's marking from a target read while the marks are taken - brackets itself
// with begin(kind)/end(start). Nested brackets count once, as the outermost's kind.
// The collector takes the window's figures into each cycle's CycleStats
// (stallUs, maxStallUs, stalls per kind); stalls between two cycles (e.g.
// finalization callbacks run after a cycle's figures were published) go to
// the next cycle. A wait during which a cycle completes (an allocation at
// maxHeap that finishes the marking and the sweep, say) is split where the
// cycle's figures are taken: the part before goes to that cycle, the rest
// to the next.

export type StallKind =
  | 'fork' | 'stwMark' | 'intake' | 'syncRead' | 'sweepStart' | 'sweepSlice' | 'lazySweep' | 'finishSync' | 'sweepEnd'
  | 'finalizers' | 'weakBarrier';

export const STALL_KINDS: readonly StallKind[] = [
  'fork', 'stwMark', 'intake', 'syncRead', 'sweepStart', 'sweepSlice', 'lazySweep', 'finishSync', 'sweepEnd', 'finalizers',
  'weakBarrier',
];

export interface StallFigure { us: number; maxUs: number; count: number }
export type StallBreakdown = Record<StallKind, StallFigure>;

export interface StallWindow { stallUs: number; maxStallUs: number; stalls: StallBreakdown }

/** Where lower layers (the allocator) report a stall without knowing the collector. */
export interface StallSink {
  begin(kind: StallKind): number;
  end(startMs: number): void;
}

export function emptyBreakdown(): StallBreakdown {
  const b = {} as StallBreakdown;
  for (const k of STALL_KINDS) b[k] = { us: 0, maxUs: 0, count: 0 };
  return b;
}

export class StallClock implements StallSink {
  private depth = 0;
  /** The outermost open wait: its kind, and where its part not yet counted starts. */
  private openKind: StallKind = 'fork';
  private openFrom = 0;
  private window: StallWindow = { stallUs: 0, maxStallUs: 0, stalls: emptyBreakdown() };

  /** Called for each outermost stall (the trace draws them); set only while someone listens. */
  onStall: ((kind: StallKind, startMs: number, endMs: number) => void) | undefined;

  /** Start of a wait: returns its start time (performance.now() ms). */
  begin(kind: StallKind): number {
    const now = performance.now();
    if (this.depth++ === 0) {
      this.openKind = kind;
      this.openFrom = now;
    }
    return now;
  }

  /** End of the wait begin() returned `startMs` for; the outermost counts, under its kind. */
  end(startMs: number): void {
    if (--this.depth > 0) return;
    this.depth = 0;
    // Counted from where take() split it, if a cycle completed inside.
    this.count(this.openKind, Math.max(startMs, this.openFrom), performance.now());
  }

  private count(kind: StallKind, startMs: number, endMs: number): void {
    const us = (endMs - startMs) * 1000;
    const w = this.window;
    const f = w.stalls[kind];
    f.us += us;
    f.count++;
    if (us > f.maxUs) f.maxUs = us;
    w.stallUs += us;
    if (us > w.maxStallUs) w.maxStallUs = us;
    this.onStall?.(kind, startMs, endMs);
  }

  /**
   * The figures since the last take(), and a fresh window. Inside a wait
   * (a cycle completing within it), the wait so far is counted in the
   * window taken, under the kind it began with, and the rest goes to the next.
   */
  take(): StallWindow {
    if (this.depth > 0) {
      const now = performance.now();
      this.count(this.openKind, this.openFrom, now);
      this.openFrom = now;
    }
    const w = this.window;
    this.window = { stallUs: 0, maxStallUs: 0, stalls: emptyBreakdown() };
    return w;
  }
}
