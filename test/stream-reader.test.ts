/**
 * StreamReader (src/collector/stream.ts) with its scratch reused: readers
 * take their scratch from a pool kept per thread at their first bytes and
 * give it back at their trailer. Property: streams of several heaps read
 * side by side, piece by piece in any interleaving and any piece sizes,
 * some of them cut off by a corrupt chunk, each stage exactly their own
 * chunks (in order, with their own words) and end as their bytes say; a
 * later reader, taking a scratch an earlier one used, is not misled by
 * what it holds.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CHUNK_BYTES, CHUNK_HEAD_BYTES, CHUNK_MAGIC, HEADER_BYTES, HEADER_MAGIC, HEADER_SEED, STREAM_SEED, StreamError, StreamReader,
  TRAILER_BYTES, TRAILER_MAGIC, VERSION, checksumWords, chunkSeed, mix,
} from '../src/collector/stream.js';

const GRANULE_BYTES = 16;

/** A child's stream for `payload` (the whole bitmap); with `corruptChunk`, that chunk's words are changed after its checksum was taken. */
function encode(cycleId: number, payload: Uint32Array, corruptChunk = -1): Uint8Array {
  const chunkWords = CHUNK_BYTES / 4;
  const chunks = Math.ceil(payload.length / chunkWords);
  const header = new Uint32Array(HEADER_BYTES / 4);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, HEADER_MAGIC, true);
  hv.setUint16(4, VERSION, true);
  hv.setUint16(6, HEADER_BYTES, true);
  header.set([cycleId, GRANULE_BYTES, payload.length * 32, payload.length * 4, CHUNK_BYTES, chunks, 0], 2);
  const headerSum = checksumWords(header, HEADER_SEED, 0, 9);
  header[9] = headerSum;
  const parts: Uint32Array[] = [header];
  let fold = mix(STREAM_SEED, headerSum);
  for (let i = 0; i < chunks; i++) {
    const words = payload.slice(i * chunkWords, Math.min(payload.length, (i + 1) * chunkWords));
    const sum = checksumWords(words, chunkSeed(cycleId, i));
    if (i === corruptChunk) words[words.length >> 1] ^= 0x10;
    parts.push(new Uint32Array([CHUNK_MAGIC, i, words.length * 4, sum]), words);
    fold = mix(fold, sum);
  }
  const trailer = new Uint32Array(TRAILER_BYTES / 4);
  trailer[0] = TRAILER_MAGIC;
  trailer[15] = checksumWords(trailer, fold, 0, 15);
  parts.push(trailer);
  const stream = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    stream.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
    at += p.byteLength;
  }
  return stream;
}

interface Reading {
  reader: StreamReader;
  stream: Uint8Array;
  at: number;
  payload: Uint32Array;
  staged: Uint32Array;
  failed?: string;
  corrupt: number;
}

describe('StreamReader with its scratch reused across readers', () => {
  it('readers side by side, in any interleaving and piece sizes, each stage exactly their own stream', () => {
    fc.assert(fc.property(
      fc.array(fc.record({
        words: fc.integer({ min: 1, max: 3 * (CHUNK_BYTES / 4) + 100 }),
        corrupt: fc.integer({ min: -3, max: 3 }),
        seed: fc.integer({ min: 1, max: 0xffff }),
      }), { minLength: 1, maxLength: 4 }),
      fc.array(fc.integer({ min: 1, max: 3 * CHUNK_BYTES }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 1, max: 3 }),
      (specs, sizes, turns, rounds) => {
        for (let round = 0; round < rounds; round++) {
          const readings: Reading[] = specs.map((spec, i) => {
            const cycleId = 1 + round * 10 + i;
            const payload = new Uint32Array(spec.words);
            for (let w = 0; w < payload.length; w++) payload[w] = Math.imul(w + spec.seed + round, 0x9e3779b1) >>> (w % 7);
            const chunks = Math.ceil(spec.words / (CHUNK_BYTES / 4));
            const corrupt = spec.corrupt >= 0 && spec.corrupt < chunks ? spec.corrupt : -1;
            const staged = new Uint32Array(spec.words);
            const reader = new StreamReader({ cycleId, topGranule: spec.words * 32, granuleBytes: GRANULE_BYTES }, (words, seed, sum, offset) => {
              if (checksumWords(words, seed) !== sum) return false;
              staged.set(words, offset);
              return true;
            });
            return { reader, stream: encode(cycleId, payload, corrupt), at: 0, payload, staged, corrupt };
          });
          // Interleave the pushes: at each step one reader (chosen by `turns`) takes its next piece.
          let step = 0;
          for (let left = readings.length; left > 0; step++) {
            const open = readings.filter((r) => r.at < r.stream.length && !r.failed);
            left = open.length;
            if (left === 0) break;
            const r = open[turns[step % turns.length] % open.length];
            const n = Math.min(sizes[step % sizes.length], r.stream.length - r.at);
            try {
              r.reader.push(r.stream.subarray(r.at, r.at + n));
            } catch (e) {
              if (!(e instanceof StreamError)) throw e;
              r.failed = e.reason;
            }
            r.at += n;
          }
          for (const r of readings) {
            if (r.corrupt >= 0) {
              expect(r.failed).toBe('BAD_CHECKSUM');
              // Every chunk before the corrupt one was staged, and nothing after it.
              const upTo = r.corrupt * (CHUNK_BYTES / 4);
              expect(r.staged.subarray(0, upTo)).toEqual(r.payload.subarray(0, upTo));
              expect(r.staged.subarray(upTo).every((w) => w === 0)).toBe(true);
            } else {
              expect(r.failed).toBeUndefined();
              expect(r.reader.done).toBe(true);
              r.reader.end();
              expect(r.staged).toEqual(r.payload);
              expect(r.reader.bytesReceived).toBe(r.stream.length);
            }
          }
        }
      },
    ), { numRuns: 25 });
  });

  it('bytes after the trailer are refused, after the reader gave its scratch back', () => {
    const payload = new Uint32Array(100).fill(7);
    const a = new StreamReader({ cycleId: 5, topGranule: 3200, granuleBytes: GRANULE_BYTES }, () => true);
    a.push(encode(5, payload));
    expect(a.done).toBe(true);
    // Another reader takes the scratch `a` gave back and fills it.
    const b = new StreamReader({ cycleId: 6, topGranule: 3200, granuleBytes: GRANULE_BYTES }, () => true);
    const second = encode(6, payload);
    b.push(second.subarray(0, HEADER_BYTES + CHUNK_HEAD_BYTES + 40));
    expect(() => a.push(new Uint8Array(1))).toThrow(/bytes after the trailer/);
    b.push(second.subarray(HEADER_BYTES + CHUNK_HEAD_BYTES + 40));
    expect(b.done).toBe(true);
    expect(a.trailer).toBeDefined();
  });
});
