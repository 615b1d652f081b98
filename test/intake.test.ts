/**
 * The parent's intake of the child's bitmap (src/collector/intake.ts): the
 * addon's stageChunk (native/stage_marks.cc) against the JavaScript
 * reference (stream.ts: checkThenStage over stageMarks). Property: for any
 * allocation bitmap, any chunk (some words corrupted, some marks on
 * granules without an object) and any offset, both give the same verdict
 * (staged n marks / bad checksum / zombie) and, when they stage, leave the
 * same mark bitmap. The real child's corrupt and zombie streams are in
 * failure-child.test.ts. And PacedIntake: a turn's slice, the queue's
 * order, the end passed on last, stop(), queued pieces copied out of the
 * caller's reused buffer. And the pipe's reads: one buffer for all of them.
 */
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../src/platform/native.js';
import {
  CHUNK_BYTES, STAGE_BAD_CHECKSUM, STAGE_OUT_OF_RANGE, STAGE_ZOMBIE, StreamError, checkThenStage, checksumWords, stageMarks,
} from '../src/collector/stream.js';
import { INTAKE_SLICE_NS, PacedIntake, SPARE_BUFFERS, nativeChunkSink } from '../src/collector/intake.js';
import { StallClock } from '../src/collector/stalls.js';
import { ChildSession } from '../src/collector/child-session.js';
import type { NativeAddon } from '../src/platform/native.js';

const addon = native();
const regions = (() => {
  const r = addon.createHeap(2 ** 22, false, 1024, 1024);  // 4 MiB: 8192 bitmap words
  if ('errno' in r) throw new Error(r.message);
  return r;
})();
const alloc = new Uint32Array(regions.allocBits);
const mark = new Uint32Array(regions.markBits);
const bitmapWords = Math.min(alloc.length, mark.length);
afterAll(() => addon.destroyHeap(regions));

/** The first index where two bitmaps differ, or -1. */
function firstDifference(a: Uint32Array, b: Uint32Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}

type Verdict = { staged: number } | { error: 'BAD_CHECKSUM' | 'ZOMBIE_MARK' };

function reference(markCopy: Uint32Array, words: Uint32Array, seed: number, sum: number, offset: number): Verdict {
  let staged = 0;
  try {
    const ok = checkThenStage((w, o) => { staged += stageMarks(alloc, markCopy, w, o); })(words, seed, sum, offset);
    return ok ? { staged } : { error: 'BAD_CHECKSUM' };
  } catch (e) {
    if (e instanceof StreamError && e.reason === 'ZOMBIE_MARK') return { error: 'ZOMBIE_MARK' };
    throw e;
  }
}

function viaAddon(words: Uint32Array, seed: number, sum: number, offset: number): Verdict {
  const n = addon.stageChunk(regions.id, words, seed, sum, offset);
  if (n >= 0) return { staged: n };
  if (n === STAGE_BAD_CHECKSUM) return { error: 'BAD_CHECKSUM' };
  if (n === STAGE_ZOMBIE) return { error: 'ZOMBIE_MARK' };
  throw new Error(`unexpected stageChunk result ${n}`);
}

describe('stageChunk (native) = checksumWords + stageMarks (JavaScript)', () => {
  it('same verdict and the same mark bitmap, for random bitmaps and chunks', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),           // allocation bitmap seed
        fc.integer({ min: 1, max: 600 }),                   // chunk words
        fc.integer({ min: 0, max: bitmapWords }),           // offset (clamped below)
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),           // checksum seed
        fc.constantFrom('valid', 'zombie', 'corrupt', 'empty'),
        (allocSeed, count, rawOffset, seed, kind) => {
          const offset = Math.min(rawOffset, bitmapWords - count);
          let x = allocSeed | 1;
          const next = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
          for (let i = 0; i < bitmapWords; i++) { alloc[i] = next(); mark[i] = next() & alloc[i] & 0x0f0f0f0f; }
          const words = new Uint32Array(count);
          if (kind !== 'empty') for (let i = 0; i < count; i++) words[i] = next() & alloc[offset + i];
          if (kind === 'zombie') {
            const i = next() % count;
            const free = ~alloc[offset + i] >>> 0;
            words[i] |= free !== 0 ? free & -free : 0;
          }
          const sum = checksumWords(words, seed);
          if (kind === 'corrupt') words[next() % count] ^= 1 << (next() % 32);
          const markCopy = mark.slice();
          const expected = reference(markCopy, words, seed, sum, offset);
          const got = viaAddon(words, seed, sum, offset);
          expect(got).toEqual(expected);
          if ('staged' in expected) expect(firstDifference(mark, markCopy)).toBe(-1);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a chunk past the bitmaps is refused whole: nothing is read or written', () => {
    mark.fill(0);
    const words = new Uint32Array(16).fill(0xffffffff);
    const sum = checksumWords(words, 7);
    expect(addon.stageChunk(regions.id, words, 7, sum, bitmapWords - 8)).toBe(STAGE_OUT_OF_RANGE);
    expect(addon.stageChunk(regions.id, words, 7, sum, -1)).toBe(STAGE_OUT_OF_RANGE);
    expect(mark.every((w) => w === 0)).toBe(true);
  });

  it("the heap's sink: staged marks counted, a bad checksum refused, a zombie named by granule", () => {
    alloc.fill(0);
    mark.fill(0);
    alloc[10] = 0b1011;
    let staged = 0;
    const sink = nativeChunkSink(addon, regions.id, alloc, mark, (n) => { staged += n; });
    const good = new Uint32Array([0b0011]);
    expect(sink(good, 1, checksumWords(good, 1), 10)).toBe(true);
    expect(staged).toBe(2);
    expect(mark[10]).toBe(0b0011);
    expect(sink(good, 1, checksumWords(good, 1) ^ 1, 10)).toBe(false);
    const zombie = new Uint32Array([0b0100]);
    expect(() => sink(zombie, 1, checksumWords(zombie, 1), 10)).toThrow(/granule 322 is marked but holds no object/);
  });
});

describe('PacedIntake: at most a slice of intake per event-loop turn, nothing reordered or lost', () => {
  const busy = (ms: number) => { const until = performance.now() + ms; while (performance.now() < until); };
  const turn = () => new Promise((r) => setImmediate(r));
  const piece = (i: number) => new Uint8Array([i]);

  it('a turn takes pieces until its slice is spent, queues the rest in order, and passes the end on last', async () => {
    const taken: number[] = [];
    const events: string[] = [];
    const intake = new PacedIntake((d) => { busy(0.6); taken.push(d[0]); }, () => events.push(`end after ${taken.length}`));
    for (let i = 0; i < 10; i++) intake.data(piece(i));
    intake.end();
    // 0.6 ms each against a 1 ms slice: the first opens the turn, the second
    // still fits (a preempted one may not), the third is over.
    expect(taken.length).toBeGreaterThanOrEqual(1);
    expect(taken.length).toBeLessThanOrEqual(2);
    expect(intake.queued).toBe(true);
    expect(events).toEqual([]);
    for (let t = 0; t < 50 && events.length === 0; t++) await turn();
    expect(taken).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(events).toEqual(['end after 10']);
  });

  it('a new turn has a new slice; data behind a queue waits its turn; drain() takes it at a safepoint', async () => {
    const taken: number[] = [];
    const intake = new PacedIntake((d) => { busy(0.6); taken.push(d[0]); }, () => {});
    intake.data(piece(0));
    intake.data(piece(1));
    intake.data(piece(2));
    const first = taken.length;
    intake.data(piece(3));  // behind the queue, whatever the time
    expect(taken.length).toBe(first);
    expect(intake.drain(10_000_000_000n)).toBe(true);
    expect(taken).toEqual([0, 1, 2, 3]);
    await turn();
    await turn();
    intake.data(piece(4));  // a fresh turn: taken at once
    expect(taken).toEqual([0, 1, 2, 3, 4]);
  });

  it('stop() drops what is queued and takes nothing more', async () => {
    const taken: number[] = [];
    let ended = false;
    const intake = new PacedIntake((d) => { busy(1.1); taken.push(d[0]); }, () => { ended = true; });
    intake.data(piece(0));
    intake.data(piece(1));
    intake.stop();
    intake.data(piece(2));
    intake.end();
    await turn();
    await turn();
    expect(taken).toEqual([0]);
    expect(ended).toBe(false);
    expect(intake.queued).toBe(false);
  });
});

describe('queued pieces and the reused read buffer', () => {
  const busy = (ms: number) => { const until = performance.now() + ms; while (performance.now() < until); };
  const turn = () => new Promise((r) => setImmediate(r));

  it('a piece queued from a buffer the caller reuses keeps its bytes; the copies reuse their buffers', async () => {
    const taken: string[] = [];
    const used: ArrayBufferLike[] = [];
    const intake = new PacedIntake((d) => {
      busy(0.3);
      taken.push(`${d.length}:${d[0]}:${d.every((b) => b === d[0])}`);
      if (d.length === CHUNK_BYTES) used.push(d.buffer);
    }, () => {});
    // As the socket does: every piece is a view of one buffer, rewritten
    // for the next read as soon as data() returns; most reads fill it, some
    // are short (a chunk's head).
    const reused = new Uint8Array(CHUNK_BYTES);
    const size = (i: number) => (i % 3 === 0 ? 1 + (i % 7) : CHUNK_BYTES);
    const round = (from: number, count: number) => {
      for (let i = from; i < from + count; i++) {
        reused.fill(i);
        intake.data(reused.subarray(0, size(i)));
      }
    };
    // 0.3 ms a piece against a 1 ms slice: the first round (24 pieces)
    // queues at least 20, the second (12, in a fresh turn) at most 11, so
    // the second's copies fit in the buffers the first one's gave back.
    round(0, 24);
    expect(intake.queued).toBe(true);
    for (let t = 0; t < 100 && intake.queued; t++) await turn();
    const firstRound = new Set(used);
    used.length = 0;
    await turn();
    await turn();
    round(24, 12);
    for (let t = 0; t < 100 && intake.queued; t++) await turn();
    expect(taken).toEqual(Array.from({ length: 36 }, (_, i) => `${size(i)}:${i}:true`));
    const secondRound = used.filter((b) => b !== reused.buffer);
    expect(secondRound.length).toBeGreaterThan(0);
    for (const b of secondRound) expect(firstRound.has(b)).toBe(true);
    expect(SPARE_BUFFERS).toBeGreaterThanOrEqual(12);
  });

  it('copying a piece to queue it counts as an intake stall, as taking one does', async () => {
    const clock = new StallClock();
    const slowTake = () => busy(Number(INTAKE_SLICE_NS) / 1e6 + 0.2);
    const intake = new PacedIntake(slowTake, () => {}, clock);
    await turn();  // a fresh turn
    intake.data(new Uint8Array(CHUNK_BYTES));  // taken at once (the take's own bracket is the caller's)
    clock.take();
    intake.data(new Uint8Array(CHUNK_BYTES));  // the turn is spent: copied and queued
    const queuing = clock.take().stalls.intake;
    expect(intake.queued).toBe(true);
    expect(queuing.count).toBe(1);
    expect(queuing.us).toBeGreaterThan(0);
    intake.stop();
  });

  it("every read of the child's pipe comes in a view of one buffer, in order, whole", async () => {
    // A FIFO stands in for the child's pipe (a real one: reads as small as
    // the writer's pieces, up to the buffer's size).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkgc-pipe-'));
    let session: ChildSession | undefined;
    let writeFd: number | undefined;
    let writeOpen = false;
    try {
      const fifo = path.join(dir, 'pipe');
      execFileSync('mkfifo', [fifo]);
      const readFd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      writeFd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      writeOpen = true;
      const stubAddon = { adoptChildPipe() {} } as unknown as NativeAddon;
      session = new ChildSession(stubAddon, 0, readFd);
      const s = session;
      const views = new Set<ArrayBufferLike>();
      const got: number[] = [];
      let reads = 0;
      const ended = new Promise<void>((resolve, reject) => {
        const socket = s.open(false, 10_000, () => reject(new Error('watchdog')), (data) => {
          reads++;
          views.add(data.buffer);
          for (const b of data) got.push(b);
        });
        socket.on('end', () => resolve());
      });
      const total = 300_000;
      const bytes = Uint8Array.from({ length: total }, (_, i) => (i * 7) & 0xff);
      const deadline = performance.now() + 10_000;
      for (let at = 0; at < total;) {
        if (performance.now() > deadline) throw new Error('the pipe was not read within 10 s');
        try {
          at += fs.writeSync(writeFd, bytes, at, Math.min(20_000, total - at));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        }
        await turn();
      }
      fs.closeSync(writeFd);
      writeOpen = false;
      await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error('no end within 10 s')), 10_000))]);
      expect(got.length).toBe(total);
      expect(Buffer.from(got).equals(Buffer.from(bytes))).toBe(true);
      expect(reads).toBeGreaterThan(1);
      expect(views.size).toBe(1);
    } finally {
      // (Also on a failure: the watchdog's timer stops, the FIFO goes.)
      session?.closeChannel();
      if (writeOpen) fs.closeSync(writeFd!);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
