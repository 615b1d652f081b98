// How far ahead of the allocator the heap's prefault thread faults the arena
// in (native/growth_prefault.cc says why it exists).
//
// When the top grows to within half a window of what was asked last, the
// thread is asked for [top, top + window): an eighth of the heap in use,
// at least 4 MiB and at most 64 MiB, so that a heap growing by 2 MiB huge
// pages keeps a few ahead, and what stays resident unused when the heap stops
// growing is at most an eighth more than it holds. Asking again costs the
// thread a page-table look over what is already there.
//
// Pages given back to the OS above the top (the sweep's release, which also
// lowers the top) read as not asked for any more, so the next growth asks
// for them again.
//
// A fork waits for a chunk the thread is faulting in (milliseconds on a
// VM), so a cycle the pacer starts is put off while one is in flight
// (`quiesce` says so, and stops the thread taking another) and goes ahead
// at the next safepoint or turn of the event loop; the fork lets the
// thread go on (`resume`).
export const MIN_WINDOW_BYTES = 4 * 2 ** 20;
export const MAX_WINDOW_BYTES = 64 * 2 ** 20;

/** The window ahead of a top for a heap holding `heapBytes` in spans. */
export function prefaultWindow(heapBytes: number): number {
  return Math.min(MAX_WINDOW_BYTES, Math.max(MIN_WINDOW_BYTES, Math.floor(heapBytes / 8)));
}

/** What the heap's prefault thread is asked through (the addon, bound to the heap). */
export interface PrefaultThread {
  ask(from: number, to: number): boolean;
  quiesce(): boolean;
  resume(): void;
}

export class GrowthPrefault {
  /** Arena bytes asked for so far: [0, askedTo) is faulted in or on its way. */
  private askedTo = 0;
  /** Off for good (the kernel cannot, or the heap stopped asking). */
  private off = false;

  /** Whether the thread was quiesced and not resumed since. */
  private quiesced = false;

  /** `thread.ask(from, to)` hands the range to the thread; false when it cannot be done. */
  constructor(private readonly thread: PrefaultThread, private readonly arenaBytes: number) {}

  /** Whether it still asks (not stopped, never refused). */
  get on(): boolean {
    return !this.off;
  }

  /** The top grew to `topBytes` (arena offset) with `heapBytes` in use. */
  grown(topBytes: number, heapBytes: number): void {
    if (this.off) return;
    const window = prefaultWindow(heapBytes);
    if (topBytes + window / 2 <= this.askedTo) return;
    const to = Math.min(this.arenaBytes, topBytes + window);
    if (to <= topBytes) return;
    if (!this.thread.ask(topBytes, to)) {
      this.off = true;
      return;
    }
    this.askedTo = to;
  }

  /** Arena bytes from `offset` up went back to the OS. */
  released(offset: number): void {
    if (offset < this.askedTo) this.askedTo = offset;
  }

  /**
   * A cycle is due: stops the thread before its next chunk; true while a
   * chunk is in flight (the fork would wait for it: put the cycle off).
   */
  busy(): boolean {
    if (this.off && !this.quiesced) return false;
    this.quiesced = true;
    return this.thread.quiesce();
  }

  /** The cycle forked (or will not): the thread goes on. */
  resume(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.thread.resume();
  }

  /** No more asking, and the thread drops what it was asked (a child may share the arena above the top now). */
  stop(): void {
    if (!this.off) this.thread.ask(0, 0);
    this.off = true;
  }
}
