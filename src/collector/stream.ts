// Mirror of native/wire.h (the tables are there), and the parent's side of
// the pipe: a StreamReader consumes the bytes as they arrive, validates each
// chunk against its own checksum and hands it to a stage callback at once, so
// that little is left to do when the trailer arrives. test/binding.test.ts
// binds this file to the native definitions.
import type { AbortReason } from '../api/errors.js';
import { popcount } from '../memory/sweeper.js';

export const HEADER_MAGIC = 0x43474b46;
export const CHUNK_MAGIC = 0x4b4e4843;
export const TRAILER_MAGIC = 0x45474b46;
export const VERSION = 2;
export const HEADER_BYTES = 40;
export const CHUNK_HEAD_BYTES = 16;
export const TRAILER_BYTES = 64;
export const CHUNK_BYTES = 64 * 1024;
export const HEADER_SEED = 0x464b4743;
export const STREAM_SEED = 0x53545245;

/** The native intake's results below zero (native/stage_marks.h); 0 and up: marks staged. */
export const STAGE_BAD_CHECKSUM = -1;
export const STAGE_ZOMBIE = -2;
export const STAGE_OUT_OF_RANGE = -3;

export const EXIT_ORPHANED = 70;
export const EXIT_HEAP_CORRUPT = 71;
export const EXIT_WRITE_FAILED = 72;
export const EXIT_FAULT = 73;

export function mix(h: number, w: number): number {
  const x = (h ^ w) >>> 0;
  const r = ((x << 5) | (x >>> 27)) >>> 0;
  return (Math.imul(r, 0x85ebca6b) + 0x6b43a9b5) >>> 0;
}

export function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

/**
 * The wire checksum of words [start, end) (native/wire.h, checksumWords, says
 * why four lanes): the first (end - start) % 4 words one each into lanes 0,
 * 1, 2, then every group of four one into each lane, each lane a chain of
 * mix(), the lanes mixed together in order at the end.
 */
export function checksumWords(words: Uint32Array, seed: number, start = 0, end = words.length): number {
  const h0 = mixLanes(words, seed >>> 0, start, end);
  return finish(mix(mix(mix(h0, lanes[1]), lanes[2]), lanes[3]));
}

/** Lanes 1-3 of mixLanes' result (lane 0 is its return value). */
const lanes = new Uint32Array(4);

// The loop with nothing after it but the return: lanes 1-3 are stored in
// the loop (and before it, for a call with no group of four). A long first
// call (warmIntake's 64 KiB chunk) gets the loop compiled on the spot (OSR),
// and V8 enters that code again from every later call; code after the loop,
// never reached when it was compiled, had no feedback there and deoptimized
// it on every call: twice a cycle (the header and the trailer), about 1 ms
// each (binary-trees 16: 135 deoptimizations, 1.4% of the main thread;
// test/deopt-loops.test.ts, which caught it again for a first version of
// these lanes).
function mixLanes(words: Uint32Array, seed: number, start: number, end: number): number {
  let h0 = seed;
  let h1 = (seed ^ 0x9e3779b9) >>> 0;
  let h2 = (seed ^ 0x7f4a7c15) >>> 0;
  let h3 = (seed ^ 0xf39cc060) >>> 0;
  let i = start;
  const head = (end - start) & 3;
  if (head > 0) h0 = mix(h0, words[i++]);
  if (head > 1) h1 = mix(h1, words[i++]);
  if (head > 2) h2 = mix(h2, words[i++]);
  lanes[1] = h1;
  lanes[2] = h2;
  lanes[3] = h3;
  for (; i < end; i += 4) {
    let x = (h0 ^ words[i]) >>> 0;
    h0 = (Math.imul(((x << 5) | (x >>> 27)) >>> 0, 0x85ebca6b) + 0x6b43a9b5) >>> 0;
    x = (h1 ^ words[i + 1]) >>> 0;
    h1 = (Math.imul(((x << 5) | (x >>> 27)) >>> 0, 0x85ebca6b) + 0x6b43a9b5) >>> 0;
    x = (h2 ^ words[i + 2]) >>> 0;
    h2 = (Math.imul(((x << 5) | (x >>> 27)) >>> 0, 0x85ebca6b) + 0x6b43a9b5) >>> 0;
    x = (h3 ^ words[i + 3]) >>> 0;
    h3 = (Math.imul(((x << 5) | (x >>> 27)) >>> 0, 0x85ebca6b) + 0x6b43a9b5) >>> 0;
    lanes[1] = h1;
    lanes[2] = h2;
    lanes[3] = h3;
  }
  return h0;
}

export function chunkSeed(cycleId: number, index: number): number {
  return (Math.imul(cycleId, 0x9e3779b1) + index) >>> 0;
}

export interface StreamHeader {
  cycleId: number;
  granuleBytes: number;
  topGranule: number;
  bitmapBytes: number;
  chunkBytes: number;
  chunkCount: number;
  childPid: number;
}

export interface StreamTrailer {
  status: number;
  objectsMarked: number;
  bytesMarked: number;
  markNs: number;
  childNs: number;
  childMaxRssKb: number;
  markStackHighWater: number;
  overflowRescans: number;
  /** Arena pages the parent copied while the child lived; -1 if the child could not tell. */
  cowPages: number;
}

export class StreamError extends Error {
  constructor(readonly reason: AbortReason, message: string) { super(message); }
}

export interface StreamExpectations {
  cycleId: number;
  topGranule: number;
  granuleBytes: number;
}

type Phase = 'header' | 'chunkHead' | 'payload' | 'trailer' | 'done';

/**
 * Where a chunk's payload goes once the framing has found it: checks it
 * against the checksum its head carries (seeded with `seed`) and stages it
 * at `wordOffset` of the mark bitmap; false if the checksum does not hold
 * (then nothing was staged). May throw a StreamError (a zombie mark). The
 * words view is only valid during the call.
 */
export type ChunkSink = (words: Uint32Array, seed: number, sum: number, wordOffset: number) => boolean;

/**
 * The reference sink, in JavaScript: checksumWords, then `stage`. The heap
 * stages through the addon (native/stage_marks.cc), which makes the same
 * checks in the same order and comes back here for the precise error.
 */
export function checkThenStage(stage: (words: Uint32Array, wordOffset: number) => void): ChunkSink {
  return (words, seed, sum, wordOffset) => {
    if (checksumWords(words, seed) !== sum) return false;
    stage(words, wordOffset);
    return true;
  };
}

/** Where a reader assembles what it parses: a chunk and its head, or the header or trailer. */
interface Scratch { bytes: Uint8Array; words: Uint32Array; view: DataView }

/**
 * Scratch of readers that finished their stream, for the next ones on this
 * thread: a new one each cycle was 64 KiB allocated and zeroed on the main
 * thread right after the fork, 0.08-0.38 ms (a few of its pages faulting in
 * again) of the 0.4-1 ms the cycle's set-up took there after the pause.
 * A reader takes one at its first bytes and gives it back at its trailer;
 * one that fails leaves its own to the garbage collector.
 */
const scratchPool: Scratch[] = [];
const SCRATCH_POOL = 4;

function takeScratch(): Scratch {
  const kept = scratchPool.pop();
  if (kept) return kept;
  const bytes = new Uint8Array(CHUNK_BYTES + 64);
  return { bytes, words: new Uint32Array(bytes.buffer), view: new DataView(bytes.buffer) };
}

/** Parses one stream, handing each chunk's payload to a ChunkSink as soon as it is whole. */
export class StreamReader {
  private phase: Phase = 'header';
  /** Taken at the first bytes, given back once the trailer is read (nothing is read into it after). */
  private scratch: Scratch | undefined;
  private filled = 0;
  private need = HEADER_BYTES;
  private fold = 0;
  private chunkIndex = 0;
  private chunkPayload = 0;
  private chunkSum = 0;
  header: StreamHeader | undefined;
  trailer: StreamTrailer | undefined;
  bytesReceived = 0;

  constructor(
    private readonly expect: StreamExpectations,
    private readonly sink: ChunkSink,
  ) {}

  get done(): boolean { return this.phase === 'done'; }

  /** Consumes bytes; throws StreamError on the first thing that is wrong. */
  push(data: Uint8Array): void {
    let at = 0;
    this.bytesReceived += data.length;
    while (at < data.length) {
      if (this.phase === 'done') throw new StreamError('BAD_FRAMING', 'bytes after the trailer');
      const take = Math.min(this.need - this.filled, data.length - at);
      (this.scratch ??= takeScratch()).bytes.set(data.subarray(at, at + take), this.filled);
      this.filled += take;
      at += take;
      if (this.filled === this.need) {
        this.filled = 0;
        this.step();
      }
    }
  }

  /** The stream ended (EOF): anything but a complete stream is short. */
  end(): void {
    if (this.phase !== 'done') {
      throw new StreamError('STREAM_SHORT', `the stream ended in its ${this.phase} after ${this.bytesReceived} bytes`);
    }
  }

  private step(): void {
    const { words: scratchWords, view: v } = this.scratch!;
    switch (this.phase) {
      case 'header': {
        if (v.getUint32(0, true) !== HEADER_MAGIC) throw new StreamError('BAD_MAGIC', 'bad header magic');
        if (v.getUint16(4, true) !== VERSION) throw new StreamError('BAD_VERSION', `wire version ${v.getUint16(4, true)}, expected ${VERSION}`);
        if (v.getUint16(6, true) !== HEADER_BYTES) throw new StreamError('BAD_VERSION', 'bad header size');
        const sum = checksumWords(scratchWords, HEADER_SEED, 0, 9);
        if (sum !== v.getUint32(36, true)) throw new StreamError('BAD_CHECKSUM', 'header checksum');
        const h: StreamHeader = {
          cycleId: v.getUint32(8, true),
          granuleBytes: v.getUint32(12, true),
          topGranule: v.getUint32(16, true),
          bitmapBytes: v.getUint32(20, true),
          chunkBytes: v.getUint32(24, true),
          chunkCount: v.getUint32(28, true),
          childPid: v.getUint32(32, true),
        };
        if (h.cycleId !== this.expect.cycleId) {
          throw new StreamError('WRONG_CYCLE', `stream of cycle ${h.cycleId}, expected ${this.expect.cycleId}`);
        }
        const words = Math.ceil(this.expect.topGranule / 32);
        if (h.granuleBytes !== this.expect.granuleBytes || h.topGranule !== this.expect.topGranule ||
            h.bitmapBytes !== words * 4 || h.chunkBytes !== CHUNK_BYTES ||
            h.chunkCount !== Math.ceil(h.bitmapBytes / CHUNK_BYTES)) {
          throw new StreamError('BAD_GEOMETRY', 'geometry does not match the heap at fork');
        }
        this.header = h;
        this.fold = mix(STREAM_SEED, sum);
        this.enterChunkOrTrailer();
        return;
      }
      case 'chunkHead': {
        const index = v.getUint32(4, true);
        const bytes = v.getUint32(8, true);
        const h = this.header!;
        const expected = Math.min(CHUNK_BYTES, h.bitmapBytes - this.chunkIndex * CHUNK_BYTES);
        if (v.getUint32(0, true) !== CHUNK_MAGIC || index !== this.chunkIndex || bytes !== expected) {
          throw new StreamError('BAD_FRAMING', `bad head of chunk ${this.chunkIndex}`);
        }
        this.chunkPayload = bytes;
        this.chunkSum = v.getUint32(12, true);
        this.phase = 'payload';
        this.need = bytes;
        return;
      }
      case 'payload': {
        const words = scratchWords.subarray(0, this.chunkPayload / 4);
        const seed = chunkSeed(this.expect.cycleId, this.chunkIndex);
        if (!this.sink(words, seed, this.chunkSum, this.chunkIndex * (CHUNK_BYTES / 4))) {
          throw new StreamError('BAD_CHECKSUM', `chunk ${this.chunkIndex}`);
        }
        this.fold = mix(this.fold, this.chunkSum);
        this.chunkIndex++;
        this.enterChunkOrTrailer();
        return;
      }
      case 'trailer': {
        if (v.getUint32(0, true) !== TRAILER_MAGIC) throw new StreamError('BAD_MAGIC', 'bad trailer magic');
        const sum = checksumWords(scratchWords, this.fold, 0, 15);
        if (sum !== v.getUint32(60, true)) throw new StreamError('BAD_CHECKSUM', 'trailer (whole stream)');
        this.trailer = {
          status: v.getUint32(4, true),
          objectsMarked: Number(v.getBigUint64(8, true)),
          bytesMarked: Number(v.getBigUint64(16, true)),
          markNs: Number(v.getBigUint64(24, true)),
          childNs: Number(v.getBigUint64(32, true)),
          childMaxRssKb: Number(v.getBigUint64(40, true)),
          markStackHighWater: v.getUint32(48, true),
          overflowRescans: v.getUint32(52, true),
          cowPages: v.getUint32(56, true) === 0xffffffff ? -1 : v.getUint32(56, true),
        };
        this.phase = 'done';
        this.need = 1;
        if (scratchPool.length < SCRATCH_POOL) scratchPool.push(this.scratch!);
        this.scratch = undefined;
        return;
      }
      default:
        throw new StreamError('BAD_FRAMING', 'bytes after the trailer');
    }
  }

  private enterChunkOrTrailer(): void {
    if (this.chunkIndex < this.header!.chunkCount) {
      this.phase = 'chunkHead';
      this.need = CHUNK_HEAD_BYTES;
    } else {
      this.phase = 'trailer';
      this.need = TRAILER_BYTES;
    }
  }
}

// ---- checks on what the child claims ----------------------------------------
//
// The checksums above prove the bytes arrived as the child wrote them; these
// prove the child's claims are consistent with the parent's heap. Together
// they are every check made on the child's output (docs/design.md, invariant 3).

/**
 * A validated chunk: rejects a mark on a granule that holds no object (a
 * zombie: the child's snapshot and the parent disagree, or the child lies),
 * then ORs the chunk into the parent's mark bitmap. Returns the marks added.
 */
export function stageMarks(alloc: Uint32Array, mark: Uint32Array, words: Uint32Array, offset: number): number {
  let count = 0;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === 0) continue;
    const zombies = w & ~alloc[offset + i];
    if (zombies !== 0) {
      const g = (offset + i) * 32 + (31 - Math.clz32(zombies & -zombies));
      throw new StreamError('ZOMBIE_MARK', `granule ${g} is marked but holds no object`);
    }
    mark[offset + i] |= w;
    count += popcount(w);
  }
  return count;
}

/** The trailer's claims: the marker succeeded, and its object count is the bits received. */
export function checkTrailerClaims(t: StreamTrailer, stagedObjects: number): void {
  if (t.status !== 0) throw new StreamError('HEAP_CORRUPT', `marker status ${t.status}`);
  if (t.objectsMarked !== stagedObjects) {
    throw new StreamError('COUNT_MISMATCH', `the trailer claims ${t.objectsMarked} objects, the bitmap holds ${stagedObjects}`);
  }
}
