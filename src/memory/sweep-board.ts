// The sweep board: the one piece of shared memory through which the main
// thread and the sweeper threads divide one cycle's sweep, without a message
// per span or per batch. Each sweeper thread runs ONE task per cycle; it
// claims batches of spans from a shared cursor (Atomics.add) until the
// cursor passes the top, sweeps each span it wins (the UNSWEPT -> SWEEPING
// CAS in src/memory/sweeper.ts still arbitrates every span, against the
// mutator's lazy sweeping too), and writes its tally into its own slot. The
// main thread claims from the same cursor when it sweeps in slices (no
// threads, or threads that could not start), and learns that the sweep is
// over by reading the board (Atomics.load), at any safepoint, without
// waiting for the event loop to deliver a result message.
//
// Int32 words (control):
//
// | word      | what                                                        |
// |-----------|-------------------------------------------------------------|
// | 0         | cursor: the next span to claim (Atomics.add by BATCH)       |
// | 1         | top: one past the last span of this sweep                   |
// | 2 + i     | slot i's state: POSTED, RUNNING, DONE, FAILED               |
//
// Float64 words, TALLY_WORDS per slot (written by the slot's thread before
// it stores DONE with Atomics.store, so a reader that loads DONE sees them):
//
// | word | what            |
// |------|-----------------|
// | 0    | freed objects   |
// | 1    | freed bytes     |
// | 2    | live objects    |
// | 3    | spans swept     |
// | 4    | start (epoch ms)|
// | 5    | end (epoch ms)  |
// | 6    | threadId        |
//
// A task that starts late (after the sweep was completed without it) finds
// the cursor past the top and claims nothing: a board belongs to one cycle.

import { type SweepTally, claimSpan, sweepClaimedSpan } from './sweeper.js';
import type { HeapViews } from './views.js';

/** Spans claimed per Atomics.add: 1 MiB of arena. */
export const BATCH = 16;

export const SLOT_POSTED = 0;
export const SLOT_RUNNING = 1;
export const SLOT_DONE = 2;
export const SLOT_FAILED = 3;

const CONTROL = 2;
const TALLY_WORDS = 7;

export interface SlotTally {
  freedObjects: number;
  freedBytes: number;
  liveObjects: number;
  spans: number;
  startEpochMs: number;
  endEpochMs: number;
  threadId: number;
}

export class SweepBoard {
  readonly control: Int32Array;
  readonly tallies: Float64Array;

  constructor(readonly slots: number, top: number, shared?: { control: Int32Array; tallies: Float64Array }) {
    if (shared) {
      this.control = shared.control;
      this.tallies = shared.tallies;
      return;
    }
    this.control = new Int32Array(new SharedArrayBuffer(4 * (CONTROL + slots)));
    this.tallies = new Float64Array(new SharedArrayBuffer(8 * TALLY_WORDS * Math.max(1, slots)));
    this.control[0] = 1;
    this.control[1] = top;
  }

  /** The same board in another thread (from the task's structured-cloned arrays). */
  static attach(control: Int32Array, tallies: Float64Array): SweepBoard {
    return new SweepBoard(control.length - CONTROL, 0, { control, tallies });
  }

  get top(): number { return this.control[1]; }

  /** Claims the next batch: its first span, or -1 when the cursor has passed the top. */
  claimBatch(batch = BATCH): number {
    const from = Atomics.add(this.control, 0, batch);
    return from < this.control[1] ? from : -1;
  }

  /** Whether every span has been handed out (some may still be being swept). */
  get exhausted(): boolean { return Atomics.load(this.control, 0) >= this.control[1]; }

  state(slot: number): number { return Atomics.load(this.control, CONTROL + slot); }

  /** Stops every later claim (close, or a failed sweep): the cursor jumps past the top. */
  drain(): void { Atomics.store(this.control, 0, this.control[1]); }

  running(slot: number): void { Atomics.store(this.control, CONTROL + slot, SLOT_RUNNING); }

  /** The slot's thread is done: its tally first, then the state (the publishing store). */
  finish(slot: number, t: SlotTally, failed: boolean): void {
    const o = slot * TALLY_WORDS;
    const f = this.tallies;
    f[o] = t.freedObjects;
    f[o + 1] = t.freedBytes;
    f[o + 2] = t.liveObjects;
    f[o + 3] = t.spans;
    f[o + 4] = t.startEpochMs;
    f[o + 5] = t.endEpochMs;
    f[o + 6] = t.threadId;
    Atomics.store(this.control, CONTROL + slot, failed ? SLOT_FAILED : SLOT_DONE);
  }

  /** A DONE or FAILED slot's tally (read after state() said so). */
  tally(slot: number): SlotTally {
    const o = slot * TALLY_WORDS;
    const f = this.tallies;
    return {
      freedObjects: f[o], freedBytes: f[o + 1], liveObjects: f[o + 2], spans: f[o + 3],
      startEpochMs: f[o + 4], endEpochMs: f[o + 5], threadId: f[o + 6],
    };
  }

  /** No slot's thread has started on this sweep yet. */
  get noneStarted(): boolean {
    for (let i = 0; i < this.slots; i++) if (this.state(i) !== SLOT_POSTED) return false;
    return true;
  }

  /**
   * Whether a slot still says RUNNING other than those in `settled`: slots
   * whose task was rejected while it ran (its thread died, and says
   * RUNNING for good).
   */
  runningBut(settled: ReadonlySet<number>): boolean {
    for (let i = 0; i < this.slots; i++) if (this.state(i) === SLOT_RUNNING && !settled.has(i)) return true;
    return false;
  }
}

/**
 * Claims batches from the board's cursor and sweeps every span of them this
 * thread wins, until the cursor passes the top (or the heap closes). The
 * same loop runs on the main thread (src/collector/sweep-driver.ts) with a
 * time bound.
 */
export function sweepFromCursor(
  v: HeapViews, board: SweepBoard, tally: SweepTally, cancelled: Int32Array, failAfter = 0, deadlineNs = 0n,
): boolean {
  let claimed = 0;
  for (;;) {
    if (Atomics.load(cancelled, 0) !== 0) return true;
    const from = board.claimBatch();
    if (from < 0) return true;
    const to = Math.min(board.top, from + BATCH);
    for (let s = from; s < to; s++) {
      if (!claimSpan(v, s)) continue;
      if (++claimed === failAfter) throw new Error(`injected sweeper failure at span ${s}`);
      sweepClaimedSpan(v, s, tally);
    }
    if (deadlineNs !== 0n && process.hrtime.bigint() > deadlineNs) return false;
  }
}
