// The parent's intake of the child's stream, on the main thread:
//   - nativeChunkSink: each chunk of the bitmap is checked and staged by the
//     addon (native/stage_marks.cc; 0.2-0.4 ms a chunk in JavaScript, whose
//     reference stageMarks still names a zombie);
//   - PacedIntake: at most a millisecond of it per event-loop turn or
//     safepoint, so the end of a big heap's marking no longer stops the
//     application for the whole stream.
import type { NativeAddon } from '../platform/native.js';
import type { StallClock } from './stalls.js';
import {
  CHUNK_BYTES, STAGE_BAD_CHECKSUM, STAGE_OUT_OF_RANGE, StreamError, stageMarks, type ChunkSink,
} from './stream.js';

export function nativeChunkSink(
  addon: NativeAddon, heapId: number, allocBits: Uint32Array, markBits: Uint32Array, staged: (marks: number) => void,
): ChunkSink {
  return (words, seed, sum, wordOffset) => {
    const n = addon.stageChunk(heapId, words, seed, sum, wordOffset);
    if (n >= 0) {
      staged(n);
      return true;
    }
    if (n === STAGE_BAD_CHECKSUM) return false;
    if (n === STAGE_OUT_OF_RANGE) {
      // The header's geometry check makes this unreachable from a stream.
      throw new StreamError('BAD_GEOMETRY', `a chunk at word ${wordOffset} runs past the heap's bitmaps`);
    }
    // STAGE_ZOMBIE: the reference finds the same mark and says which granule.
    stageMarks(allocBits, markBits, words, wordOffset);
    throw new StreamError('ZOMBIE_MARK', 'a mark on a granule that holds no object (found by the addon)');
  };
}

/** Spare buffers the thread keeps for queued pieces (64 KiB each: at most 2 MiB, a turn's worth of libuv's reads). */
export const SPARE_BUFFERS = 32;

/**
 * The buffers queued pieces are copied into, free again once taken, shared
 * by every heap's intake on this thread and kept from cycle to cycle: a
 * piece from the socket lives in a buffer the next read reuses
 * (child-session.ts, readBuffer), and a new buffer for each copy would
 * bring the fresh pages that reuse is there to avoid.
 */
const spareBuffers: Uint8Array[] = [];

/** Gives a taken or dropped piece's buffer back to the spares, if it is one of theirs and there is room. */
function keepSpare(piece: Uint8Array): void {
  if (piece.buffer.byteLength === CHUNK_BYTES && spareBuffers.length < SPARE_BUFFERS) {
    spareBuffers.push(new Uint8Array(piece.buffer, 0, CHUNK_BYTES));
  }
}

/** How long one event-loop turn or one safepoint may spend staging the child's stream. */
export const INTAKE_SLICE_NS = 1_000_000n;

/**
 * Paces the intake of the child's stream on the main thread: at most
 * INTAKE_SLICE_NS of it per event-loop turn, the rest queued (in order) for
 * the next turn or safepoint. libuv hands a readable pipe up to 32 reads in
 * one turn, and the child refills the pipe as fast as it is read, so at the
 * end of an 800 MiB heap's marking one turn took in ~50 chunks, 12 ms with
 * the application waiting (CPU profile of the main thread, splay 100k).
 * Nothing is dropped or reordered: a chunk the turn has no time for is
 * queued, and every later chunk goes behind it, socket or safepoint; the end
 * of the stream is passed on only once the queue is empty.
 */
export class PacedIntake {
  private readonly queue: Uint8Array[] = [];
  private turnStart = 0n;
  private drainScheduled = false;
  private endQueued = false;
  private stopped = false;

  /**
   * `take` stages one piece of the stream (it handles its own errors; the
   * piece is valid only during the call); `ended` is told once the stream
   * has ended and everything before the end was taken.
   */
  constructor(
    private readonly take: (data: Uint8Array) => void,
    private readonly ended: () => void,
    private readonly stalls?: StallClock,
  ) {}

  /** Whether pieces wait to be taken (then new data goes behind them). */
  get queued(): boolean { return this.queue.length > 0; }

  /**
   * A piece from the socket, valid only during this call: taken now if this
   * turn has time, else copied and queued.
   */
  data(piece: Uint8Array): void {
    if (this.stopped) return;
    if (this.queue.length === 0 && !this.turnSpent()) {
      this.take(piece);
      return;
    }
    // The copy is the application's wait too (a few µs per 64 KiB, more
    // when a new buffer's pages fault in): counted as intake, as the take is.
    const stall = this.stalls?.begin('intake') ?? 0;
    try {
      this.queue.push(this.copy(piece));
    } finally {
      this.stalls?.end(stall);
    }
    this.scheduleDrain();
  }

  /**
   * A copy of a piece to queue: a read of a whole buffer goes into one of
   * the thread's spare buffers (spareBuffers), a short one (a chunk's
   * 16-byte head, the end of a write) into a buffer of its own size.
   */
  private copy(piece: Uint8Array): Uint8Array {
    if (piece.length < CHUNK_BYTES / 4) return piece.slice();
    const into = piece.length <= CHUNK_BYTES ? spareBuffers.pop() ?? new Uint8Array(CHUNK_BYTES) : new Uint8Array(piece.length);
    into.set(piece);
    return into.subarray(0, piece.length);
  }

  /** Takes the first queued piece; its buffer goes back to the spares. */
  private takeQueued(): void {
    const piece = this.queue.shift()!;
    this.take(piece);
    keepSpare(piece);
  }

  /** The socket ended. */
  end(): void {
    if (this.stopped) return;
    if (this.queue.length === 0) {
      this.ended();
      return;
    }
    this.endQueued = true;
    this.scheduleDrain();
  }

  /** Takes queued pieces for up to `budgetNs`; true if none is left (and a queued end was passed on). */
  drain(budgetNs: bigint): boolean {
    const deadline = process.hrtime.bigint() + budgetNs;
    // One stall for the whole drain (the takes' own brackets nest in it).
    const stall = this.stalls?.begin('intake') ?? 0;
    try {
      while (this.queue.length > 0 && !this.stopped) {
        this.takeQueued();
        if (process.hrtime.bigint() >= deadline) break;
      }
    } finally {
      this.stalls?.end(stall);
    }
    if (this.stopped) return true;  // (stop() emptied the queue)
    if (this.queue.length > 0) return false;
    if (this.endQueued) {
      this.endQueued = false;
      this.ended();
    }
    return true;
  }

  /** The cycle is over (or aborted): drop what is queued, take nothing more. */
  stop(): void {
    this.stopped = true;
    for (const piece of this.queue) keepSpare(piece);
    this.queue.length = 0;
  }

  /** Whether this event-loop turn's time for the intake is spent (the first piece of a turn opens it). */
  private turnSpent(): boolean {
    const now = process.hrtime.bigint();
    if (this.turnStart === 0n) {
      this.turnStart = now;
      setImmediate(() => { this.turnStart = 0n; });
      return false;
    }
    return now - this.turnStart >= INTAKE_SLICE_NS;
  }

  private scheduleDrain(): void {
    if (this.drainScheduled || this.stopped) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      if (!this.drain(INTAKE_SLICE_NS)) this.scheduleDrain();
    });
  }
}
