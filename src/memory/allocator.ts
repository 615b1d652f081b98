// The allocator: spans of one size class each, allocation bits per granule,
// large objects in runs of whole spans. It runs on the main thread only.
//
// Where a slot comes from, in order:
//   1. the current span of its class, from a cached word of free slot bits
//      (the fast path below);
//   2. a swept span of the class that has free slots (`partial`);
//   3. during a sweep: an unswept span of the class, swept right here (lazy
//      sweeping) rather than waiting for the background sweeper;
//   4. a free span (zeroed first unless its pages are known zero), or a new
//      one above `topSpan`.
// While a forked child marks (`childLives`), step 3 is skipped and step 4
// comes first and prefers spans the child does not share (released, never
// used, or released on the spot): the first write to a page the child
// shares copies it. A new span is taken only while the heap is below what
// the pacer plans for; past it, step 2 comes before growing.
// When none is left the caller (the heap) decides: finish the sweep, wait for
// the pending cycle, or throw HeapExhaustedError.
//
// The fast path (Go's allocCache). Per class, the allocator holds one 32-bit
// word of the current span's allocation bitmap as the set of slot starts not
// yet handed out (~alloc & slotMask). A slot is one count-leading-zeros away;
// when the word is used up, `refill` moves to the next word with a free slot
// start, 32 granules at a time. No loop runs per slot.
//
// Zeroing (Go's needzero). The sweep frees slots by clearing bits only, so a
// freed slot keeps its old bytes. A span's SW_AUX says whether its free slots
// may hold such bytes (SPAN_NEEDZERO, set by the sweep before it clears a bit,
// or by prepareFreeRun for a free span taken again for the class it held)
// or are all zero (SPAN_ZEROED: a span fresh from the free list, zeroed
// there, or whose pages went back to the OS). When a word of a NEEDZERO span
// is cached, its free slots are zeroed (prepareWord), so the fast path is
// the same for both kinds and a new object always reads as all zero.
//
// Generations (src/api/refs.ts says why). A slot's generation lives in its
// header's second half-word and survives the sweep (which does not touch the
// slot). Handing a slot out again gives it generation + 1 (written when its
// bitmap word is cached, prepareWord; the fast path keeps it). A slot that reads
// as zero (typeId 0: never used since its span was last zeroed) gets its
// span's base generation. When a span's memory is zeroed (filled, or
// released to the OS) every slot generation in it is lost, so the base
// moves past every generation the span handed out since the last zeroing
// (`genBase + genSpread + 1`); both live here, on the main thread, in memory
// that never goes back to the OS. A span is zeroed only when it must be: a
// free span taken again for the class it held keeps its slots' headers, and
// so their generations (prepareFreeRun). And a slot made ready but not
// handed out gives its generation back when its word is dropped (unprepare):
// a Ref carries only a few low bits of it.
//
// | per span   | type   | meaning                                             |
// |------------|--------|-----------------------------------------------------|
// | genBase    | u16    | generation of a slot handed out from zeroed memory  |
// | genSpread  | u16    | highest (generation - genBase) mod 2^16 handed out  |
//
// The mutator never allocates from a span that is not IN_USE: spans become
// UNSWEPT at the start of a sweep, and `current`/`partial` are dropped then.
// Sweeper threads may sweep any UNSWEPT span meanwhile (src/memory/sweeper.ts
// says how the two sides agree); the lists are rebuilt from the span table
// when the sweep ends.
import {
  CLASS_GRANULES, CLASS_SLOTS, FREE_CLEAN, FREE_DIRTY, FREE_RELEASED, LARGE_CLASS, SPAN_BITMAP_WORDS, SPAN_BYTES,
  SPAN_FREE, SPAN_GRANULES, SPAN_IN_USE, SPAN_LARGE_TAIL, SPAN_NEEDZERO, SPAN_RESERVED, SPAN_SWEEPING, SPAN_SWEPT, SPAN_UNSWEPT,
  SPAN_WORDS, SPAN_ZEROED, SW_AUX, SW_CLASS, SW_LIVE, SW_STATE,
} from './layout.js';
import { SweepTally, claimSpan, popcount, sweepClaimedSpan } from './sweeper.js';
import type { HeapViews } from './views.js';
import { codeGenerationAllowed } from '../platform/code-generation.js';
import type { StallSink } from '../collector/stalls.js';

/** Spans one allocation may sweep lazily before it takes a free or new span instead. */
export const LAZY_SWEEP_BUDGET = 4;

/** Per class and word of a span: the bits that are slot starts (within the span's slot count). */
const SLOT_MASK = (() => {
  const m = new Int32Array(LARGE_CLASS * SPAN_BITMAP_WORDS);
  for (let c = 0; c < LARGE_CLASS; c++) {
    for (let i = 0; i < CLASS_SLOTS[c]; i++) {
      const g = i * CLASS_GRANULES[c];
      m[c * SPAN_BITMAP_WORDS + (g >>> 5)] |= 1 << (g & 31);
    }
  }
  return m;
})();
/**
 * prepareWord zeroes a run of free slots with one fill() from this many u32
 * words up; below it, a store per word is cheaper than the call (measured on
 * the project's VM: a fill of a 32-slot run of 16-byte slots takes about half
 * the time of the stores, a lone 16-byte slot about three times as long).
 */
const FILL_MIN_WORDS = 32;
/**
 * The header a freed slot of a NEEDZERO span is made ready with
 * (prepareWord): its old typeId kept, its generation the old one + 1, or
 * the span's base for a typeId-0 slot (never handed out since the span was
 * zeroed).
 */
function nextHeader(old: number, base: number): number {
  const type = old & 0xffff;
  const gen = type === 0 ? base : ((old >>> 16) + 1) & 0xffff;
  return type | (gen << 16);
}
/** Slot size in u32 words, per class. */
const SLOT_WORDS = Int32Array.from(CLASS_GRANULES, (g) => g * 4);

/**
 * prepareWord's work on a NEEDZERO word, for one slot size: every free slot
 * of `free` (bits of bitmap word w) gets nextHeader() of its old header and
 * a zero body. Returns the highest (generation - base) mod 2^16 it wrote.
 */
type PrepareFreed = (u32: Uint32Array, w: number, free: number, base: number) => number;
/**
 * Slots of up to this many u32 words (64 bytes: the classes of list and
 * tree nodes) get a preparer compiled for their size: the body's zero
 * stores written out, and a run of free slots walked by a constant stride
 * with no bit search per slot. Measured on the project's VM, cache-cold
 * memory, ns per slot against the generic code below (the run: one fill()
 * between a pass that reads the headers and one that writes them; single
 * slots: a store loop per slot): 16-byte slots 5.9 against 9.5 in a run,
 * 6.6 against 14.6 one by one; 32-byte 8.2 / 11.5 and 9.7 / 18.5; 64-byte
 * 9.8 / 10.9 and 16.3 / 24.3 (bench/prepare-micro.mjs). Above 64 bytes
 * the loop's overhead is small next to the zeroing, and the generic code
 * stays.
 */
const COMPILED_PREPARE_MAX_WORDS = 16;
/**
 * The preparer of each class, made when the module loads: compiled where the
 * process allows code generation from strings (src/platform/code-generation.ts),
 * the generic one otherwise.
 */
const PREPARE_FREED: readonly PrepareFreed[] = Array.from(CLASS_GRANULES, (g) =>
  g * 4 <= COMPILED_PREPARE_MAX_WORDS && codeGenerationAllowed() ? compilePrepareFreed(g * 4)
    : (u32: Uint32Array, w: number, free: number, base: number) => prepareFreedGeneric(u32, w, free, base, g * 4));

/** A run's new headers, before the run is zeroed (at most 32 slots per word; the main thread only). */
const runHeads = new Uint32Array(32);

/**
 * The preparer of any slot size (prepareWord uses it above 64 bytes). When
 * the free slots are one run (every slot start from the lowest free one to
 * the highest is free: the common case after a sweep of mostly dead objects)
 * and the run is long enough for one fill() to beat a store per word, the
 * new headers are computed first (from the old ones), the run is zeroed at
 * once, and the headers written back; otherwise a slot at a time.
 */
export function prepareFreedGeneric(u32: Uint32Array, w: number, free: number, base: number, slotWords: number): number {
  let spread = 0;
  const lo = 31 - Math.clz32(free & -free);
  const hi = 31 - Math.clz32(free);
  const count = popcount(free);
  const start = ((w << 5) | lo) << 2;
  const end = (((w << 5) | hi) << 2) + slotWords;
  if ((count - 1) * (slotWords >>> 2) === hi - lo && end - start >= FILL_MIN_WORDS) {
    for (let k = 0, h = start; k < count; k++, h += slotWords) {
      const head = nextHeader(u32[h], base);
      const d = ((head >>> 16) - base) & 0xffff;
      if (d > spread) spread = d;
      runHeads[k] = head;
    }
    u32.fill(0, start, end);
    for (let k = 0, h = start; k < count; k++, h += slotWords) u32[h] = runHeads[k];
    return spread;
  }
  for (let bits = free; bits !== 0; bits &= bits - 1) {
    const h = ((w << 5) | (31 - Math.clz32(bits & -bits))) << 2;
    const head = nextHeader(u32[h], base);
    const d = ((head >>> 16) - base) & 0xffff;
    if (d > spread) spread = d;
    for (let i = h + 1, e = h + slotWords; i < e; i++) u32[i] = 0;
    u32[h] = head;
  }
  return spread;
}

/**
 * One preparer, for slots of `slotWords` u32 words (a number made here, the
 * only thing that reaches the source). nextHeader() is written out in it.
 */
export function compilePrepareFreed(slotWords: number): PrepareFreed {
  if (!Number.isInteger(slotWords) || slotWords < 4 || slotWords % 4 !== 0) {
    throw new Error(`internal: slot of ${slotWords} words`);
  }
  const granules = slotWords >>> 2;
  const zeroBody = Array.from({ length: slotWords - 1 }, (_, i) => `u32[h + ${i + 1}] = 0;`).join(' ');
  const slot = `const old = u32[h];
        const type = old & 0xffff;
        const gen = type === 0 ? base : ((old >>> 16) + 1) & 0xffff;
        const d = (gen - base) & 0xffff;
        if (d > spread) spread = d;
        u32[h] = type | (gen << 16);
        ${zeroBody}`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function('popcount', `'use strict'; return function prepareFreed${slotWords * 4}(u32, w, free, base) {
    let spread = 0;
    const lo = 31 - Math.clz32(free & -free);
    const hi = 31 - Math.clz32(free);
    if ((popcount(free) - 1) * ${granules} === hi - lo) {
      for (let h = ((w << 5) | lo) << 2, end = ((w << 5) | hi) << 2; h <= end; h += ${slotWords}) {
        ${slot}
      }
      return spread;
    }
    for (let bits = free; bits !== 0; bits &= bits - 1) {
      const h = ((w << 5) | (31 - Math.clz32(bits & -bits))) << 2;
      ${slot}
    }
    return spread;
  };`)(popcount) as PrepareFreed;
}

export class Allocator {
  /** One past the highest span ever handed out and still counted; the child marks [0, topSpan). */
  topSpan = 1;
  /** The highest topSpan ever: spans below it once held objects. */
  highWaterSpan = 1;
  inUseSpans = 0;
  private readonly current: Int32Array;
  // The fast path's state, per class (see the top of the file).
  /**
   * Free slot starts of the cached bitmap word, not yet handed out. Read and
   * written by allocSmall and by each struct type's compiled alloc()
   * (src/api/accessors.ts, compileAlloc), which inlines the same steps.
   */
  readonly cacheBits: Int32Array;
  /** Index of the cached word in the allocation bitmap (read by compiled alloc() too). */
  readonly cacheWord: Int32Array;
  /** Where the next refill looks, a bitmap word index within the current span. */
  private readonly scanWord: Int32Array;
  /** 1 when the current span is SPAN_NEEDZERO (prepareWord zeroes the slots of each word it caches). */
  private readonly needZero: Uint8Array;
  private readonly genBase: Uint16Array;
  private readonly genSpread: Uint16Array;
  /** A child shares the arena's pages (set at fork, cleared when the sweep starts or the cycle aborts). */
  childLives = false;
  /**
   * Allocate black (docs/design.md, invariant 2): the cycle's marks are
   * taken (the fork, or stop-the-world marking) and its sweep has not
   * started, so every new object is born marked. Cleared when the sweep
   * starts or the cycle aborts. Small objects are made black a word at a
   * time, when the word is cached (refill): every free slot of the word
   * gets its mark bit, so the fast path has nothing to do for it. A slot
   * marked so but never handed out stays free: the sweep keeps only
   * allocated and marked slots (alloc & mark) and then clears the span's
   * marks, and an abort clears every mark bit.
   */
  black = false;
  /**
   * Objects a failed sweep left in place (src/collector/sweep-driver.ts,
   * sweepFailed): one bit per granule, set for each object that was
   * allocated and unmarked in a span put back unswept. They are garbage
   * that keeps its allocation bit, and nothing else tells them from live
   * objects once the marks are cleared (a heap map's pass asks:
   * src/collections/heap-maps.ts, identityAt). Their slots cannot be reused
   * before a sweep frees them, so the record holds until the next sweep
   * begins, whose marks say it again.
   */
  garbageLeft: Uint32Array | undefined = undefined;
  /** While the child lives, new spans are taken to avoid its pages only while heapBytes is below this (childForked). */
  private unsharedLimitBytes = 0;
  private closed = false;
  private readonly partial: number[][];
  private readonly unswept: number[][];
  private freeSpans: number[] = [];
  /** Whether a sweep is in progress (spans may be UNSWEPT). */
  sweeping = false;
  /** What lazy sweeping on the main thread did in the current sweep. */
  readonly lazyTally = new SweepTally();
  lazySweepNs = 0;
  /** The longest single lazy sweep (one allocation's worth) in the current sweep. */
  lazySweepMaxNs = 0;
  /** Where main-thread waits on sweeping are reported (src/collector/stalls.ts). */
  stalls: StallSink | undefined;
  /** harvestFreed(): the next span to look at, the sweep's top, the spans already listed this sweep. */
  private harvestFrom = 1;
  private sweepTop = 1;
  private known = new Uint8Array(0);

  /**
   * `grown` hears of every rise of topGranule (the heap keeps a copy for
   * checked mode's reference checks and refs.diagnose()). `counted` hears
   * of small objects a word at a time: when a word is cached, its free slots
   * are counted as allocated (objects, slot bytes); when a cached word is
   * dropped, the slots it did not hand out are taken back (negative
   * figures). So the heap's accounting costs nothing per object, and is
   * over by outstanding() between the two. `release` gives the parent's
   * pages of an arena range back to the OS (false if it could not).
   */
  constructor(
    private readonly v: HeapViews,
    private readonly grown: (topGranule: number) => void = () => {},
    private readonly counted: (objects: number, bytes: number) => void = () => {},
    private readonly release: (offset: number, bytes: number) => boolean = () => false,
  ) {
    this.current = new Int32Array(LARGE_CLASS).fill(-1);
    this.cacheBits = new Int32Array(LARGE_CLASS);
    this.cacheWord = new Int32Array(LARGE_CLASS);
    this.scanWord = new Int32Array(LARGE_CLASS);
    this.needZero = new Uint8Array(LARGE_CLASS);
    this.genBase = new Uint16Array(v.spanCount);
    this.genSpread = new Uint16Array(v.spanCount);
    this.partial = Array.from({ length: LARGE_CLASS }, () => []);
    this.unswept = Array.from({ length: LARGE_CLASS + 1 }, () => []);
    Atomics.store(v.spans, SW_STATE, SPAN_RESERVED);
  }

  get topGranule(): number { return this.topSpan * SPAN_GRANULES; }

  /**
   * A zeroed slot of class `cls` with its header written (`typeId`, the
   * slot's generation, length 0), its allocation bit not yet set; 0 if none
   * is left. Small enough for V8 to inline into the caller: the cached
   * word's slots were made ready when it was cached (prepareWord), so this
   * is the same few instructions for a fresh span and a swept one.
   */
  allocSmall(cls: number, typeId: number): number {
    const bits = this.cacheBits[cls];
    if (bits === 0) return this.allocSmallSlow(cls, typeId);
    this.cacheBits[cls] = bits & (bits - 1);
    const g = (this.cacheWord[cls] << 5) | (31 - Math.clz32(bits & -bits));
    // The generation is already in the upper half-word (prepareWord): only
    // the typeId's half-word is written, and nothing read first. (A read
    // first made a fresh page's first touch a read, which maps the shared
    // zero page, and the write then a second fault: 2.03 minor faults per
    // fresh 4 KiB page of small objects against 1.00; the compiled alloc()
    // writes the same half-word, src/api/accessors.ts.)
    this.v.u16[g << 3] = typeId;
    return g;
  }

  private allocSmallSlow(cls: number, typeId: number): number {
    const bits = this.refill(cls);
    if (bits === 0) return 0;
    this.cacheBits[cls] = bits;
    return this.allocSmall(cls, typeId);  // the cached word is not empty now
  }

  /**
   * Makes the free slots of bitmap word w (span s, class cls) ready to hand
   * out, all at once when the word is cached rather than one by one on the
   * fast path: each slot's body is zero and its header holds the generation
   * it will be handed out with (in the upper half-word).
   *   - ZEROED span: the memory is zero; the generation is the span's base
   *     (nothing to write when the base is 0, as in a span never used).
   *   - NEEDZERO span: a freed slot keeps its old bytes. Its generation is
   *     the old one + 1 (or the base, for a typeId-0 slot: never handed out
   *     since the span was zeroed); the body is zeroed; the old typeId is
   *     kept, so that a slot made ready but not handed out (dropCurrent)
   *     moves on by one more generation when it is made ready again, and
   *     never goes back to one a stale Ref may carry.
   * The span's genSpread covers every generation written here, handed out
   * or not (a superset is safe: the base only moves further on).
   */
  private prepareWord(cls: number, s: number, w: number, free: number): void {
    const u32 = this.v.u32;
    const base = this.genBase[s];
    if (this.needZero[cls] === 0) {
      if (base === 0) return;
      const high = base << 16;
      for (let bits = free; bits !== 0; bits &= bits - 1) {
        u32[((w << 5) | (31 - Math.clz32(bits & -bits))) << 2] = high;
      }
      return;
    }
    const d = PREPARE_FREED[cls](u32, w, free, base);
    if (d > this.genSpread[s]) this.genSpread[s] = d;
  }

  /**
   * Caches the next word of the current span (or a new span) with a free
   * slot start, makes its slots ready (prepareWord) and counts them as live
   * in the span table; returns its free bits, 0 when no span is left.
   */
  private refill(cls: number): number {
    const v = this.v;
    const alloc = v.allocBits;
    for (;;) {
      const s = this.current[cls];
      if (s >= 0) {
        const w0 = s * SPAN_BITMAP_WORDS;
        const m0 = cls * SPAN_BITMAP_WORDS - w0;
        for (let w = this.scanWord[cls]; w < w0 + SPAN_BITMAP_WORDS; w++) {
          const free = ~alloc[w] & SLOT_MASK[m0 + w];
          if (free !== 0) {
            this.scanWord[cls] = w + 1;
            this.cacheWord[cls] = w;
            this.prepareWord(cls, s, w, free);
            if (this.black) v.markBits[w] |= free;
            // Counted live now; dropCurrent() takes back what was not handed out.
            const n = popcount(free);
            v.spans[s * SPAN_WORDS + SW_LIVE] += n;
            this.counted(n, n * SLOT_WORDS[cls] * 4);
            return free;
          }
        }
        this.current[cls] = -1;
      }
      const next = this.closed ? -1 : this.nextSpanFor(cls);
      if (next < 0) return 0;
      this.current[cls] = next;
      this.scanWord[cls] = next * SPAN_BITMAP_WORDS;
      this.needZero[cls] = v.spans[next * SPAN_WORDS + SW_AUX] === SPAN_NEEDZERO ? 1 : 0;
    }
  }

  /** Stops allocating from the current spans (their slots not handed out are free again). */
  private dropCurrent(): void {
    const spans = this.v.spans;
    for (let c = 0; c < LARGE_CLASS; c++) {
      const s = this.current[c];
      if (s >= 0) {
        const n = popcount(this.cacheBits[c]);
        if (n !== 0 && this.needZero[c] === 1) this.unprepare(c, this.cacheWord[c], this.cacheBits[c]);
        spans[s * SPAN_WORDS + SW_LIVE] -= n;
        if (n !== 0) this.counted(-n, -n * SLOT_WORDS[c] * 4);
        if (!this.sweeping && spans[s * SPAN_WORDS + SW_STATE] === SPAN_IN_USE) this.partial[c].push(s);
      }
      this.current[c] = -1;
      this.cacheBits[c] = 0;
    }
  }

  /**
   * Slots of a NEEDZERO word made ready (prepareWord) but not handed out
   * take back the generation they were given, so that caching a word and
   * dropping it at every cycle start spends none: a Ref carries only the
   * low bits of a generation, and a slot that moved on one generation per
   * cycle without being reused would wrap in as few cycles (8 at 4 GiB) and
   * accept a Ref of the object it held before. The old header is back as it
   * was (type and generation of the freed object; its allocation bit is
   * clear, so no accessor takes it), the body stays zero, and the next
   * prepareWord gives the same generation again, one no Ref carries. A
   * typeId-0 slot (never handed out since its span was zeroed) keeps the
   * span's base, which prepareWord gives it again.
   */
  private unprepare(cls: number, w: number, bits: number): void {
    const u32 = this.v.u32;
    for (; bits !== 0; bits &= bits - 1) {
      const h = ((w << 5) | (31 - Math.clz32(bits & -bits))) << 2;
      const head = u32[h];
      const type = head & 0xffff;
      if (type !== 0) u32[h] = type | ((((head >>> 16) - 1) & 0xffff) << 16);
    }
  }

  /** Slots counted (`counted`) but not handed out yet: the cached words' free slots. */
  outstanding(): { objects: number; bytes: number } {
    let objects = 0;
    let bytes = 0;
    for (let c = 0; c < LARGE_CLASS; c++) {
      const n = popcount(this.cacheBits[c]);
      objects += n;
      bytes += n * SLOT_WORDS[c] * 4;
    }
    return { objects, bytes };
  }

  /**
   * A cycle is starting: drops the cached words, so that the heap's counts
   * are exact when it takes them (their slots are free again).
   */
  cycleStarting(): void {
    this.dropCurrent();
  }

  /**
   * A child was forked and shares every resident page: from now on new
   * objects go to spans it does not share (the collector calls this right
   * after a successful fork). Costs the fast path nothing: the current spans are
   * dropped, so the next allocation of each class refills.
   */
  childForked(unsharedLimitBytes: number): void {
    this.childLives = true;
    this.unsharedLimitBytes = unsharedLimitBytes;
    this.allocateBlack();
  }

  /**
   * Stop-the-world marking is done: what is allocated before the sweep
   * starts (listeners) is black. The cached words are dropped, as at a
   * fork, so that every word handed out from now on was made black.
   */
  allocateBlack(): void {
    this.black = true;
    this.dropCurrent();
  }

  /**
   * The heap is closing: nothing is handed out any more (the fast path finds
   * no cached slot, the slow path no span), before the arena is unmapped.
   */
  close(): void {
    this.dropCurrent();
    this.closed = true;
  }

  /** The child is gone: the cycle was aborted (beginSweep clears it too). */
  childGone(): void {
    this.childLives = false;
    this.black = false;
  }

  /** A partly free span of class `cls` that still holds it, from the partial list; or -1. */
  private takePartial(cls: number): number {
    const partial = this.partial[cls];
    while (partial.length > 0) {
      const t = partial.pop()!;
      const e = t * SPAN_WORDS;
      if (this.v.spans[e + SW_STATE] === SPAN_IN_USE && this.v.spans[e + SW_CLASS] === cls &&
          this.v.spans[e + SW_LIVE] < CLASS_SLOTS[cls]) return t;
    }
    return -1;
  }

  private nextSpanFor(cls: number): number {
    let s = -1;
    if (this.childLives) {
      // Free slots of spans in use lie on pages the child shares; a span the
      // child does not share (released, new, or released now) costs no copy.
      // But a new span grows the heap, and what is allocated while the child
      // lives is most of what the next cycle frees, scattered: under random
      // replacement few spans come out whole, and a heap that took new spans
      // at every cycle grew towards maxHeap (a cache of 115 MiB live: 118 ->
      // 717 MiB over 19 cycles; 112 in stw mode). So the heap grows only up
      // to what the pacer plans for (`unsharedLimitBytes`, set at the fork);
      // past it, a free span is released and reused, and then the free slots
      // of spans in use come first, copy-on-write and all.
      s = this.takeUnsharedSpan(this.heapBytes < this.unsharedLimitBytes);
    }
    if (s < 0) {
      const t = this.takePartial(cls);
      if (t >= 0) return t;
    }
    // A span already free below the top costs nothing; sweeping one costs the
    // mutator time (that is the sweeper threads' work); a new span grows the
    // heap. In that order.
    if (s < 0) s = this.takeFreeSpans(1, false, cls);
    if (s < 0 && this.sweeping) {
      const swept = this.lazySweep(cls);
      if (swept >= 0) return swept;
      s = this.takeFreeSpans(1, false, cls);  // lazy sweeping may have emptied one
    }
    if (s < 0) s = this.takeFreeSpans(1, true, cls);
    if (s < 0) return -1;
    const e = s * SPAN_WORDS;
    // prepareFreeRun marks every span it zeroes FREE_CLEAN; one still
    // FREE_DIRTY was kept as it is, its old bytes in its free slots.
    const kept = this.v.spans[e + SW_AUX] === FREE_DIRTY;
    this.v.spans[e + SW_CLASS] = cls;
    this.v.spans[e + SW_LIVE] = 0;
    this.v.spans[e + SW_AUX] = kept ? SPAN_NEEDZERO : SPAN_ZEROED;
    Atomics.store(this.v.spans, e + SW_STATE, SPAN_IN_USE);
    this.inUseSpans++;
    return s;
  }

  /**
   * A free span whose pages the child does not share, ready to use; or -1.
   * In order: a span whose pages went back to the OS; a new span above the
   * top, if `mayGrow`; a free span still resident, whose pages are given back
   * first (the parent's only: the child keeps its copy), so that it reads as
   * zero as a released one does. The last costs a system call and splits a
   * huge page, where a new span is fresh memory, so it comes after growing;
   * but when the heap may not grow it beats the free slots of a span in use,
   * whose pages the first writes would copy.
   */
  private takeUnsharedSpan(mayGrow: boolean): number {
    const spans = this.v.spans;
    const free = this.freeSpans;
    for (let i = free.length - 1; i >= 0; i--) {
      const t = free[i];
      if (spans[t * SPAN_WORDS + SW_STATE] === SPAN_FREE && spans[t * SPAN_WORDS + SW_AUX] === FREE_RELEASED) {
        free[i] = free[free.length - 1];
        free.pop();
        return this.prepareFreeRun(t, 1);
      }
    }
    if (mayGrow && this.topSpan < this.v.spanCount) return this.prepareFreeRun(this.topSpan, 1);
    while (free.length > 0) {
      const t = free.pop()!;
      if (spans[t * SPAN_WORDS + SW_STATE] !== SPAN_FREE) continue;
      if (this.release(t * SPAN_BYTES, SPAN_BYTES)) {
        spans[t * SPAN_WORDS + SW_AUX] = FREE_RELEASED;
        return this.prepareFreeRun(t, 1);
      }
      free.push(t);  // (not released: it stays free for after the cycle)
      break;
    }
    return -1;
  }

  /**
   * Lazy sweeping, bounded (Go's mcentral: sweep a little, then go on). Picks
   * up spans sweeper threads have freed meanwhile (harvestFreed), then sweeps
   * unswept spans of the class until one has a free slot, stopping early:
   * at the first span swept empty (it is on the free list now, and the
   * caller allocates from it next) and after LAZY_SWEEP_BUDGET spans
   * swept (the caller then takes a free or new span; the rest is the sweeper
   * threads' work). Timed as a stall ('lazySweep').
   */
  private lazySweep(cls: number): number {
    const list = this.unswept[cls];
    const slots = CLASS_SLOTS[cls];
    const stall = this.stalls?.begin('lazySweep') ?? 0;
    const start = process.hrtime.bigint();
    try {
      if (this.harvestFreed() > 0) return -1;
      let budget = LAZY_SWEEP_BUDGET;
      while (list.length > 0 && budget > 0) {
        const s = list.pop()!;
        if (!claimSpan(this.v, s)) {
          // A sweeper got it first. If it is done, its store of the state
          // (read here with Atomics.load) orders all its writes before ours:
          // the span is ready to allocate from - if it still holds this
          // class. It may have been swept empty and reused for another one
          // since it was listed here.
          const e = s * SPAN_WORDS;
          if (Atomics.load(this.v.spans, e + SW_STATE) === SPAN_IN_USE && this.v.spans[e + SW_CLASS] === cls &&
              this.v.spans[e + SW_LIVE] < slots) return s;
          continue;
        }
        budget--;
        const freed = sweepClaimedSpan(this.v, s, this.lazyTally);
        if (freed === 0 && this.v.spans[s * SPAN_WORDS + SW_LIVE] < slots) return s;
        this.afterSweep(s, freed);
        // A span swept empty is free now: the caller takes it from the free list.
        if (freed > 0) return -1;
      }
      return -1;
    } finally {
      const ns = Number(process.hrtime.bigint() - start);
      this.lazySweepNs += ns;
      if (ns > this.lazySweepMaxNs) this.lazySweepMaxNs = ns;
      this.stalls?.end(stall);
    }
  }

  /**
   * During a sweep: puts spans that other threads have swept free since the
   * last look on the free list (a walk of the span table from where the last
   * one stopped to the first span not yet swept: O(spans) per sweep in all).
   * Returns how many it found.
   */
  harvestFreed(): number {
    const spans = this.v.spans;
    let found = 0;
    let s = this.harvestFrom;
    for (; s < this.sweepTop; s++) {
      const state = Atomics.load(spans, s * SPAN_WORDS + SW_STATE);
      if (state === SPAN_UNSWEPT || state === SPAN_SWEEPING || state === SPAN_SWEPT) break;
      if (state === SPAN_FREE && !this.known[s]) {
        // Freed by a sweeper thread or a main-thread slice, which do not
        // call afterSweep: no longer in use (counted once more when taken
        // again; it was counted twice, heapBytes up to 2x maxHeap mid-sweep,
        // in review).
        this.known[s] = 1;
        this.freeSpans.push(s);
        this.inUseSpans--;
        found++;
      }
    }
    this.harvestFrom = s;
    return found;
  }

  /** Bookkeeping after any sweeper finished span s, freeing `freedSpans` spans from s on. */
  afterSweep(s: number, freedSpans: number): void {
    if (freedSpans > 0) {
      this.inUseSpans -= freedSpans;
      for (let t = s; t < s + freedSpans; t++) {
        this.freeSpans.push(t);
        if (this.sweeping) this.known[t] = 1;
      }
      return;
    }
    const cls = this.v.spans[s * SPAN_WORDS + SW_CLASS];
    if (cls !== LARGE_CLASS && this.v.spans[s * SPAN_WORDS + SW_LIVE] < CLASS_SLOTS[cls]) this.partial[cls].push(s);
  }

  /** Start of a sweep: every span in use becomes UNSWEPT. */
  beginSweep(): void {
    const v = this.v;
    this.childLives = false;
    this.black = false;
    this.garbageLeft = undefined;
    this.sweeping = true;  // (dropCurrent: the partial lists are rebuilt after the sweep)
    this.dropCurrent();
    for (let c = 0; c < LARGE_CLASS; c++) this.partial[c].length = 0;
    for (const list of this.unswept) list.length = 0;
    if (this.known.length < this.topSpan) this.known = new Uint8Array(this.v.spanCount);
    else this.known.fill(0, 0, this.topSpan);
    for (let s = 1; s < this.topSpan; s++) {
      const e = s * SPAN_WORDS;
      const state = v.spans[e + SW_STATE];
      if (state === SPAN_IN_USE) {
        Atomics.store(v.spans, e + SW_STATE, SPAN_UNSWEPT);
        this.unswept[v.spans[e + SW_CLASS]].push(s);
      } else if (state === SPAN_FREE) {
        this.known[s] = 1;  // on the free list and not counted in use already: harvestFreed skips it
      }
    }
    this.lazyTally.freedObjects = this.lazyTally.freedBytes = this.lazyTally.liveObjects = 0;
    this.lazyTally.spans = this.lazyTally.emptiedSpans = 0;
    this.lazySweepNs = 0;
    this.lazySweepMaxNs = 0;
    this.harvestFrom = 1;
    this.sweepTop = this.topSpan;
    this.sweeping = true;
  }

  endSweep(): void {
    this.sweeping = false;
    // Slots of the words cached during the sweep go back, so that the heap's
    // counts are exact at the end of the cycle (a failed sweep recounts
    // from the allocation bits right after this).
    this.dropCurrent();
    for (const list of this.unswept) list.length = 0;
    this.rebuildFromTable();
  }

  /**
   * Recomputes the free list, the partial lists and the span count from the
   * span table: after a sweep, spans swept by worker threads are known only
   * there. O(spans), once per cycle.
   */
  rebuildFromTable(): void {
    const spans = this.v.spans;
    let inUse = 0;
    this.freeSpans = [];
    for (let c = 0; c < LARGE_CLASS; c++) this.partial[c].length = 0;
    for (let s = 1; s < this.topSpan; s++) {
      const e = s * SPAN_WORDS;
      const state = Atomics.load(spans, e + SW_STATE);
      if (state === SPAN_FREE) {
        this.freeSpans.push(s);
        continue;
      }
      inUse++;
      if (state !== SPAN_IN_USE) continue;
      const cls = spans[e + SW_CLASS];
      if (cls !== LARGE_CLASS && s !== this.current[cls] && spans[e + SW_LIVE] < CLASS_SLOTS[cls]) this.partial[cls].push(s);
    }
    this.inUseSpans = inUse;
  }

  /** Whether any span is being swept by some thread right now. */
  anySweeping(): boolean {
    for (let s = 1; s < this.topSpan; s++) {
      const state = Atomics.load(this.v.spans, s * SPAN_WORDS + SW_STATE);
      if (state === SPAN_SWEEPING || state === SPAN_SWEPT) return true;
    }
    return false;
  }

  /**
   * First span of a run of n free spans, made IN_USE-ready, or -1: all zero,
   * or, for one span taken for class `cls` that last held slots of that
   * class and still holds their bytes, as it is (see prepareFreeRun).
   */
  private takeFreeSpans(n: number, grow = true, cls = -1): number {
    const v = this.v;
    let s = -1;
    if (n === 1) {
      while (this.freeSpans.length > 0) {
        const t = this.freeSpans.pop()!;
        if (v.spans[t * SPAN_WORDS + SW_STATE] === SPAN_FREE) { s = t; break; }
      }
      if (s < 0 && grow && this.topSpan < v.spanCount) s = this.topSpan;
    } else {
      s = this.findFreeRun(n);
    }
    if (s < 0) return -1;
    return this.prepareFreeRun(s, n, cls);
  }

  /**
   * Makes free spans [s, s+n) ready to be taken: all zero, their generation
   * bases moved past every generation they handed out (their slot headers
   * are zero now); or, for one span taken for the class it last held
   * (`cls`), left as it is, still FREE_DIRTY (the caller marks it NEEDZERO).
   */
  private prepareFreeRun(s: number, n: number, cls = -1): number {
    const v = this.v;
    // A run found by findFreeRun during a sweep may hold spans a sweeper
    // thread or slice freed that harvestFreed has not seen: they are still
    // counted in use, and taking them counts them again (found in review:
    // heapBytes 6.25 MiB on a 4 MiB heap until the sweep's end). Counted out here.
    if (this.sweeping) {
      for (let t = s; t < s + n && t < this.sweepTop; t++) {
        if (this.known[t] === 0) {
          this.known[t] = 1;
          this.inUseSpans--;
        }
      }
    }
    // A span taken again for the class whose slots it held (its bytes still
    // there: FREE_DIRTY) is left as it is: its slots keep their headers, and
    // so their own generations, and are made ready a word at a time as a
    // swept span's are (NEEDZERO). Zeroing it would lose every slot's
    // generation and restart them all from a base past the highest one the
    // span gave out: a slot reused once could then land, modulo the few
    // generation bits a Ref carries, on the generation of the object it held
    // before (README, "Generation checks"). (Large objects' spans are freed
    // as LARGE_CLASS, never a small class: src/memory/sweeper.ts.)
    const keep = n === 1 && cls >= 0 && s < this.highWaterSpan &&
      v.spans[s * SPAN_WORDS + SW_AUX] === FREE_DIRTY && v.spans[s * SPAN_WORDS + SW_CLASS] === cls;
    for (let t = s; !keep && t < s + n; t++) {
      const e = t * SPAN_WORDS;
      // Known zero: pages given back to the OS, or never used (at or above
      // the high water). Anything else may hold old bytes - including
      // FREE_CLEAN below the high water, which a failed sweep's reset may
      // write for a span whose freed slots were not zeroed.
      const zero = v.spans[e + SW_AUX] === FREE_RELEASED || (t >= this.highWaterSpan && v.spans[e + SW_AUX] === FREE_CLEAN);
      if (!zero) v.u32.fill(0, t * (SPAN_BYTES / 4), (t + 1) * (SPAN_BYTES / 4));
      v.spans[e + SW_AUX] = FREE_CLEAN;
      // (A span never used keeps base 0: its first objects' Refs are their granules.)
      if (t < this.highWaterSpan) {
        this.genBase[t] = (this.genBase[t] + this.genSpread[t] + 1) & 0xffff;
        this.genSpread[t] = 0;
      }
    }
    if (s + n > this.topSpan) {
      this.topSpan = s + n;
      this.grown(this.topSpan * SPAN_GRANULES);
    }
    if (this.topSpan > this.highWaterSpan) this.highWaterSpan = this.topSpan;
    return s;
  }

  private findFreeRun(n: number): number {
    const v = this.v;
    let runStart = 1;
    let runLength = 0;
    for (let s = 1; s < v.spanCount; s++) {
      if (v.spans[s * SPAN_WORDS + SW_STATE] === SPAN_FREE) {
        if (runLength === 0) runStart = s;
        if (++runLength === n) return runStart;
      } else {
        runLength = 0;
      }
    }
    return -1;
  }

  /**
   * A run of spans for one large object, zero, with its header written
   * (`typeId`, generation, length 0); returns its granule or 0.
   */
  allocLarge(bytes: number, typeId: number): number {
    const n = Math.ceil(bytes / SPAN_BYTES);
    let s = this.takeFreeSpans(n);
    if (s < 0 && this.sweeping) {
      this.sweepAllLazily();
      s = this.takeFreeSpans(n);
    }
    if (s < 0) return 0;
    const v = this.v;
    for (let t = s; t < s + n; t++) {
      const e = t * SPAN_WORDS;
      v.spans[e + SW_CLASS] = t === s ? LARGE_CLASS : 0;
      v.spans[e + SW_LIVE] = t === s ? 1 : 0;
      v.spans[e + SW_AUX] = t === s ? n : s;
      Atomics.store(v.spans, e + SW_STATE, t === s ? SPAN_IN_USE : SPAN_LARGE_TAIL);
    }
    this.inUseSpans += n;
    const g = s * SPAN_GRANULES;
    v.u32[g * 4] = typeId | (this.genBase[s] << 16);
    return g;
  }

  /** Bytes a large object of `bytes` is counted as: its whole spans. */
  static largeBytes(bytes: number): number {
    return Math.ceil(bytes / SPAN_BYTES) * SPAN_BYTES;
  }

  /** Sweeps every remaining unswept span on this thread (heap nearly full). */
  sweepAllLazily(): void {
    const stall = this.stalls?.begin('lazySweep') ?? 0;
    const start = process.hrtime.bigint();
    try {
      for (let s = 1; s < this.topSpan; s++) {
        if (claimSpan(this.v, s)) this.afterSweep(s, sweepClaimedSpan(this.v, s, this.lazyTally));
      }
    } finally {
      this.lazySweepNs += Number(process.hrtime.bigint() - start);
      this.stalls?.end(stall);
    }
  }

  /**
   * After a sweep: gives free resident spans beyond `retainBytes` back to the
   * OS, highest first, in runs (whole 2 MiB groups when huge pages back the
   * arena, so no huge page is split), and lowers topSpan over trailing free
   * spans. Returns the bytes given back.
   */
  releaseFreeSpans(retainBytes: number, hugePages: boolean, release: (offset: number, bytes: number) => boolean): number {
    const v = this.v;
    const spans = v.spans;
    const state = (s: number) => spans[s * SPAN_WORDS + SW_STATE];
    const resident = (s: number) => state(s) === SPAN_FREE && spans[s * SPAN_WORDS + SW_AUX] !== FREE_RELEASED;
    // Up to the high water, not the top: the top is lowered below the free
    // spans at the end of this very call, the resident ones it keeps among
    // them, and a later call that looked only below the top never released
    // them (found in review: 125 MiB resident against a 17 MiB target, for
    // good). Spans above the top are all free.
    let residentFree = 0;
    for (let s = 1; s < this.highWaterSpan; s++) if (resident(s)) residentFree++;
    let toRelease = residentFree - Math.floor(retainBytes / SPAN_BYTES);
    let returned = 0;
    const unit = hugePages ? 32 : 1;
    let runLo = -1;
    let runHi = -1;
    const flush = () => {
      if (runLo < 0) return;
      if (release(runLo * SPAN_BYTES, (runHi - runLo) * SPAN_BYTES)) {
        for (let s = runLo; s < runHi; s++) {
          if (resident(s)) returned += SPAN_BYTES;
          spans[s * SPAN_WORDS + SW_AUX] = FREE_RELEASED;
        }
      }
      runLo = runHi = -1;
    };
    for (let hi = this.highWaterSpan; hi > 1 && toRelease > 0;) {
      const lo = Math.max(1, Math.floor((hi - 1) / unit) * unit);
      let allFree = true;
      let count = 0;
      for (let s = lo; s < hi; s++) {
        if (state(s) !== SPAN_FREE) allFree = false;
        else if (resident(s)) count++;
      }
      if (allFree && count > 0) {
        if (runLo !== hi) flush();
        if (runHi < 0) runHi = hi;
        runLo = lo;
        toRelease -= count;
      } else {
        flush();
      }
      hi = lo;
    }
    flush();
    // Dirty spans that stay resident are zeroed when they are taken again
    // (prepareFreeRun), not here: a page written now would be copied or
    // faulted for nothing if the span is released or not reused soon.
    while (this.topSpan > 1 && state(this.topSpan - 1) === SPAN_FREE) this.topSpan--;
    // Resident spans on top of the stack (takeFreeSpans pops): the ones kept
    // are taken again before a released one is faulted back in (each part
    // keeps the order it had). takeUnsharedSpan, during a fork, still looks
    // for a released one first: the child does not share its pages.
    const kept = this.freeSpans.filter((s) => s < this.topSpan && state(s) === SPAN_FREE);
    this.freeSpans = [...kept.filter((s) => !resident(s)), ...kept.filter(resident)];
    return returned;
  }

  get heapBytes(): number { return this.inUseSpans * SPAN_BYTES; }
}
