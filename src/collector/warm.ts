// Warms the stream intake (StreamReader, the checksum, stageMarks) once per
// thread, at heap creation: the first cycle's intake otherwise runs cold,
// unoptimized code over a whole bitmap while the mutator waits (perf
// findings: up to 116 ms on a first cycle, against <= 11 ms later). A
// synthetic one-chunk stream (64 KiB of bitmap) goes through the same code a
// child's stream does, into scratch bitmaps; nothing of the heap is touched.
import {
  CHUNK_BYTES, CHUNK_HEAD_BYTES, CHUNK_MAGIC, HEADER_BYTES, HEADER_MAGIC, HEADER_SEED, STREAM_SEED, StreamReader, TRAILER_BYTES,
  TRAILER_MAGIC, VERSION, checksumWords, chunkSeed, mix, stageMarks,
} from './stream.js';
import { GRANULE_BYTES } from '../memory/layout.js';

let warmed = false;

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
      (w, offset) => { stageMarks(alloc, mark, w, offset); });
    // In pieces, as a pipe delivers it.
    for (let i = 0; i < stream.length; i += 16384) reader.push(stream.subarray(i, Math.min(stream.length, i + 16384)));
    reader.end();
  } catch {
    // Only a warm-up: the real stream is checked on its own.
  }
}
