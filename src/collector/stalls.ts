// Every wait of the main thread on the collector, timed. Each place the
// mutator can be held by GC work - the fork call, stop-the-world marking, reading and staging the
// child's stream, synchronous reads at maxHeap, starting and ending a sweep,
// sweeping on the main thread (slices, lazy sweeping in an allocation,
// finishing a sweep synchronously), finalization callbacks - brackets itself
// with begin()/end(kind). Nested brackets count once, as the outermost kind.
// The collector takes the window's figures into each cycle's CycleStats
// (stallUs, maxStallUs, stalls per kind); stalls between two cycles (e.g.
// finalization callbacks run after a cycle's figures were published) go to
// the next cycle.

export type StallKind =
  | 'fork' | 'stwMark' | 'intake' | 'syncRead' | 'sweepStart' | 'sweepSlice' | 'lazySweep' | 'finishSync' | 'sweepEnd'
  | 'finalizers';

export const STALL_KINDS: readonly StallKind[] = [
  'fork', 'stwMark', 'intake', 'syncRead', 'sweepStart', 'sweepSlice', 'lazySweep', 'finishSync', 'sweepEnd', 'finalizers',
];

export interface StallFigure { us: number; maxUs: number; count: number }
export type StallBreakdown = Record<StallKind, StallFigure>;

export interface StallWindow { stallUs: number; maxStallUs: number; stalls: StallBreakdown }

/** Where lower layers (the allocator) report a stall without knowing the collector. */
export interface StallSink {
  begin(): number;
  end(kind: StallKind, startMs: number): void;
}

export function emptyBreakdown(): StallBreakdown {
  const b = {} as StallBreakdown;
  for (const k of STALL_KINDS) b[k] = { us: 0, maxUs: 0, count: 0 };
  return b;
}

export class StallClock implements StallSink {
  private depth = 0;
  private window: StallWindow = { stallUs: 0, maxStallUs: 0, stalls: emptyBreakdown() };

  /** Called for each outermost stall (the trace draws them); set only while someone listens. */
  onStall: ((kind: StallKind, startMs: number, endMs: number) => void) | undefined;

  /** Start of a wait: returns its start time (performance.now() ms). */
  begin(): number {
    this.depth++;
    return performance.now();
  }

  end(kind: StallKind, startMs: number): void {
    if (--this.depth > 0) return;
    this.depth = 0;
    const endMs = performance.now();
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

  /** The figures since the last take(), and a fresh window. */
  take(): StallWindow {
    const w = this.window;
    this.window = { stallUs: 0, maxStallUs: 0, stalls: emptyBreakdown() };
    return w;
  }
}
