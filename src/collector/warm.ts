// Warms the main thread's code once per thread, at heap creation: the
// stream intake (warmIntake) and the sweep (warmSweep).
//
// Warms the stream intake (StreamReader, the checksum, stageMarks) once per
// thread, at heap creation: the first cycle's intake otherwise runs cold,
// unoptimized code over a whole bitmap while the mutator waits (perf
// findings: up to 116 ms on a first cycle, against <= 11 ms later). A
// synthetic one-chunk stream (64 KiB of bitmap) goes through the same code a
// child's stream does, into scratch bitmaps; nothing of the heap is touched.
// Since the heap stages chunks in the addon (src/collector/intake.ts), the
// per-word checksum and stageMarks loops warmed here run only to name an
// error; the framing around them is still the heap's path.
import {
  CHUNK_BYTES, CHUNK_HEAD_BYTES, CHUNK_MAGIC, HEADER_BYTES, HEADER_MAGIC, HEADER_SEED, STREAM_SEED, StreamReader, TRAILER_BYTES,
  TRAILER_MAGIC, VERSION, checkThenStage, checksumWords, chunkSeed, mix, stageMarks,
} from './stream.js';
import {
  GRANULE_BYTES, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_BYTES, SPAN_IN_USE, SPAN_UNSWEPT, SPAN_WORDS, SW_AUX, SW_CLASS, SW_STATE,
} from '../memory/layout.js';
import { SweepBoard, sweepFromCursor } from '../memory/sweep-board.js';
import { SweepTally } from '../memory/sweeper.js';
import { HeapViews } from '../memory/views.js';

let warmed = false;
let sweepWarmed = false;

/**
 * Warms the sweep (sweepFromCursor, sweepClaimedSpan) on this thread: the
 * driver sweeps a small heap inline (src/collector/sweep-driver.ts) and
 * decides so from its measured speed; cold code sweeps ~10x slower, which
 * would both stall the first inline sweep and teach the driver a speed it
 * never has again. Scratch views over a few spans of scratch memory, swept
 * the way a heap's are; nothing of a heap is touched. A few ms, once.
 */
export function warmSweep(): void {
  if (sweepWarmed) return;
  sweepWarmed = true;
  try {
    const spans = 8;
    const bitmapBytes = spans * SPAN_BITMAP_WORDS * 4;
    const v = new HeapViews({
      id: -1, arenaAddress: 0n, arena: new ArrayBuffer(spans * SPAN_BYTES), allocBits: new ArrayBuffer(bitmapBytes),
      markBits: new ArrayBuffer(bitmapBytes), spans: new ArrayBuffer(spans * SPAN_WORDS * 4), descriptors: new ArrayBuffer(4),
      roots: new ArrayBuffer(4), hugePages: false, wipeOnFork: false,
    });
    const tally = new SweepTally();
    const cancelled = new Int32Array(1);
    // Every path of the sweep, so no real sweep meets one the compiled code
    // has no feedback for: spans with survivors, spans swept empty, large
    // objects dead and alive, spans not to be swept.
    for (let round = 0; round < 60; round++) {
      for (let s = 1; s < spans; s++) {
        const e = s * SPAN_WORDS;
        const kind = (s + round) % 6;
        v.spans[e + SW_CLASS] = kind === 4 ? LARGE_CLASS : (s + round) % 8;
        v.spans[e + SW_AUX] = kind === 4 ? 1 : 0;
        v.spans[e + SW_STATE] = kind === 5 ? SPAN_IN_USE : SPAN_UNSWEPT;
        const w0 = s * SPAN_BITMAP_WORDS;
        for (let w = w0; w < w0 + SPAN_BITMAP_WORDS; w++) {
          v.allocBits[w] = kind === 4 ? (w === w0 ? 1 : 0) : (Math.imul(w + round, 0x9e3779b1) >>> 0) | 1;
          v.markBits[w] = kind === 0 || (kind === 4 && round % 2 === 0) ? 0 : v.allocBits[w] & 0x5555_5555;
        }
      }
      sweepFromCursor(v, new SweepBoard(0, spans), tally, cancelled, 0, round % 2 === 0 ? 0n : process.hrtime.bigint() + 1_000_000_000n);
    }
  } catch {
    // Only a warm-up: the real sweep runs on its own.
  }
}

export function warmIntake(): void {
  if (warmed) return;
  warmed = true;
  try {
    const words = 16384;
    const cycleId = 0x7fffffff;
    const payload = new Uint32Array(words);
    for (let i = 0; i < words; i++) payload[i] = (i * 0x9e3779b1) >>> 7;
    const alloc = new Uint32Array(words).fill(0xffffffff);
    const mark = new Uint32Array(words);

    const header = new Uint32Array(HEADER_BYTES / 4);
    const hv = new DataView(header.buffer);
    hv.setUint32(0, HEADER_MAGIC, true);
    hv.setUint16(4, VERSION, true);
    hv.setUint16(6, HEADER_BYTES, true);
    header.set([cycleId, GRANULE_BYTES, words * 32, words * 4, CHUNK_BYTES, 1, 0], 2);
    const headerSum = checksumWords(header, HEADER_SEED, 0, 9);
    header[9] = headerSum;

    const chunkSum = checksumWords(payload, chunkSeed(cycleId, 0));
    const chunkHead = new Uint32Array([CHUNK_MAGIC, 0, words * 4, chunkSum]);

    const trailer = new Uint32Array(TRAILER_BYTES / 4);
    trailer[0] = TRAILER_MAGIC;
    const fold = mix(mix(STREAM_SEED, headerSum), chunkSum);
    trailer[15] = checksumWords(trailer, fold, 0, 15);

    const stream = new Uint8Array(HEADER_BYTES + CHUNK_HEAD_BYTES + words * 4 + TRAILER_BYTES);
    let at = 0;
    for (const part of [header, chunkHead, payload, trailer]) {
      stream.set(new Uint8Array(part.buffer, part.byteOffset, part.byteLength), at);
      at += part.byteLength;
    }
    const reader = new StreamReader({ cycleId, topGranule: words * 32, granuleBytes: GRANULE_BYTES },
      checkThenStage((w, offset) => { stageMarks(alloc, mark, w, offset); }));
    // In pieces, as a pipe delivers it.
    for (let i = 0; i < stream.length; i += 16384) reader.push(stream.subarray(i, Math.min(stream.length, i + 16384)));
    reader.end();
  } catch {
    // Only a warm-up: the real stream is checked on its own.
  }
}
