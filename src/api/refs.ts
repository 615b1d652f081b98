// References as the mutator sees them, and their validation.
//
// A Ref is a number naming an object (0 = null). Reference fields, roots and
// arrays store bare granule indexes (the marker reads granules); a Ref
// handed to the mutator carries more above the granule bits, and every use
// by an accessor checks on its fast path that it names a live object of the
// accessor's type. Only when a check fails does the slow path work out which
// error to throw.
//
// Default mode: generation-checked references. Every slot has a generation
// in its header's second half-word (src/memory/header.ts), bumped each time
// the slot is handed out again (src/memory/allocator.ts). A Ref carries the
// low bits of its object's generation:
//
// | bits                   | field                                       |
// |------------------------|---------------------------------------------|
// | 0 .. G-1               | granule index; G = bits for maxHeap/16      |
// |                        | granules (26 for 1 GiB, 28 for 4 GiB), at   |
// |                        | least 16                                    |
// | G .. 30                | generation, low 31-G bits (5 for 1 GiB,     |
// |                        | 3 for 4 GiB, at most 15)                    |
// | 31                     | 0                                           |
//
// so that every Ref is a positive 31-bit integer: a Smi in V8, never a boxed
// number when it is stored, returned or passed around (a wider generation
// above bit 31 cost more than it caught, see README: "Generation checks").
// An accessor accepts a Ref only if the object's allocation bit is set, its
// header's typeId is the accessor's type AND the header's generation agrees
// with the Ref's bits (one load, one masked compare). A Ref kept past the
// cycle that freed its object therefore throws StaleReferenceError whether
// or not its slot was handed out again, unless the slot was handed out a
// multiple of 2^(31-G) times since (32 times for a 1 GiB heap, 8 for 4 GiB;
// and then still only if it holds the same type). A span a cycle emptied
// keeps its slots' generations when it is taken again for its size class. A
// span whose pages went back to the OS reads as zero (as does one taken for
// another class, zeroed then); its slots resume from a per-span base
// generation past every generation the span handed out since it was last
// zeroed, which, modulo the Ref's bits, catches every reuse only while no
// slot of the span was handed out 2^(31-G) - 1 times since (the per-slot
// history is gone with the bytes).
//
// Not caught: a Ref of another heap (no room for a heap tag in 31 bits) is
// accepted when this heap happens to have an object of the same type and
// generation at that granule; a number made up by the program is accepted
// when it equals a live object's Ref. Checked mode catches both (below).
//
// Checked mode hands out Refs tagged with an epoch above the granule bits
// instead (granules need only 28). Fields still store bare granules; only the
// mutator's numbers are wider, so the tag can use all of a double's integer
// range:
//
// | bits  | field                                                      |
// |-------|------------------------------------------------------------|
// | 0-27  | granule index                                              |
// | 28-52 | epoch: 1 + cycles started when handed out (mod 2^25 - 1)   |
//
// A cycle starts only at a safepoint, and the rooting contract says a raw Ref
// does not survive a safepoint; so a Ref whose tag is not the current epoch
// was held across a cycle, and its use is reported (StaleReferenceError)
// even when its object happens to be alive or its slot reused. A number whose
// tag is 0 (any number below 2^28) or above the current epoch was never
// handed out by this heap (InvalidReferenceError). Refs handed out within one
// epoch are equal numbers for the same object. (The epoch wraps after
// 2^25 - 1 cycles.)
import {
  HeapClosedError, InvalidReferenceError, StaleReferenceError, WrongTypeError,
} from './errors.js';
import { CLASS_GRANULES, LARGE_CLASS, SPAN_GRANULES, SPAN_FREE, SPAN_WORDS, SW_CLASS, SW_STATE, TYPE_FREE } from '../memory/layout.js';
import type { HeapViews } from '../memory/views.js';
import { typeIdIn } from '../memory/header.js';

const TAG_UNIT = 2 ** 28;
/** Checked mode's epochs run 1 .. EPOCHS (0 is never handed out). */
export const EPOCHS = 2 ** 25 - 1;

export interface RefContext {
  readonly views: HeapViews;
  /** Objects lie below this granule; 0 once the heap is closed. */
  topGranule: number;
  /** No object was ever allocated at or above this granule. */
  readonly highWaterGranule: number;
  closed: boolean;
  /** Checked mode: 1 + cycles started, mod EPOCHS. */
  epochTag: number;
  typeName(typeId: number): string;
}

/** How a default-mode Ref is cut (see the table above). */
export interface RefFormat {
  /** Bits of the granule index. */
  readonly granuleBits: number;
  /** Bits of the generation, above them. */
  readonly generationBits: number;
}

/** The Ref format of a heap whose arena has `granules` granules. */
export function refFormat(granules: number): RefFormat {
  // At least 16 granule bits, so that granule and generation bits fill all
  // 31 and the accessors' one-compare check ((ref >>> G) << 16, a 32-bit
  // shift) sees every bit of the number: with fewer (heaps of 512 KiB and
  // less), bits above the generation were shifted out, and a + 2^29, a + 2^30
  // or a + 2^31 was taken for a. The granules a small heap lacks are refused
  // by the range check.
  const granuleBits = Math.max(16, Math.ceil(Math.log2(granules)));
  return { granuleBits, generationBits: Math.min(16, 31 - granuleBits) };
}

export interface RefOps {
  /** Granule of the object `ref` names, which must be of type `typeId`. */
  typed(ref: unknown, typeId: number): number;
  /** Granule of the object `ref` names, of any type. */
  any(ref: unknown): number;
  /** What a reference field stores for `ref`: 0 for null, else a live object's granule. */
  field(ref: unknown): number;
  /** The Ref handed to the mutator for granule g (0 stays 0). */
  encode(g: number): number;
  /** Default mode's format; undefined in checked mode. */
  readonly format: RefFormat | undefined;
  /** Throws the precise error for a Ref that failed a fast check (accessors call it). */
  diagnose(ref: unknown, typeId: number): never;
}

export function makeRefOps(ctx: RefContext, checked: boolean): RefOps {
  const v = ctx.views;
  const alloc = v.allocBits;
  const u16 = v.u16;
  const i32 = v.i32;
  const format = refFormat(v.spanCount * SPAN_GRANULES);
  const gb = format.granuleBits;
  const granuleMask = 2 ** gb - 1;
  const generationMask = 2 ** format.generationBits - 1;
  /** The header bits a default-mode Ref is compared with: typeId and the generation's low bits. */
  const keyMask = 0xffff | (generationMask << 16);

  // Called only when a fast check failed: says exactly what is wrong.
  const diagnose = (ref: unknown, typeId: number): never => {
    if (ctx.closed) throw new HeapClosedError();
    if (typeof ref !== 'number') {
      throw new InvalidReferenceError(`expected a reference (a number), got ${ref === null ? 'null' : typeof ref}`);
    }
    if (ref === 0) throw new InvalidReferenceError('null reference (0) where an object is needed');
    let g: number;
    let generation = -1;
    if (checked) {
      if (!Number.isSafeInteger(ref) || ref < 0) {
        throw new InvalidReferenceError(`${ref} is not a reference this heap handed out`);
      }
      const tag = Math.floor(ref / TAG_UNIT);
      g = ref - tag * TAG_UNIT;
      if (tag === 0 || tag > ctx.epochTag) {
        throw new InvalidReferenceError(`${ref} is not a reference this heap handed out`);
      }
      if (tag !== ctx.epochTag) {
        throw new StaleReferenceError(
          `reference ${ref} was handed out ${ctx.epochTag - tag} cycle(s) ago ` +
          'and held across a safepoint (root it with heap.root() to keep it across a yield)');
      }
    } else if (Number.isInteger(ref) && ref > 0 && ref < 2 ** 31) {
      g = ref & granuleMask;
      generation = ref >>> gb;
    } else {
      g = ref;
    }
    if (Number.isInteger(g) && g >= ctx.topGranule && g < ctx.highWaterGranule) {
      // Above the spans in use but below the highest ever used: memory a
      // sweep gave back.
      throw new StaleReferenceError(
        `reference ${ref} names no object: it was freed by a cycle and its memory returned (or never allocated)`);
    }
    if (!Number.isInteger(g) || g < SPAN_GRANULES || g >= ctx.topGranule) {  // (span 0 is reserved)
      throw new InvalidReferenceError(`reference ${ref} is outside the heap (objects lie in ${SPAN_GRANULES}..${ctx.topGranule - 1})`);
    }
    if ((alloc[g >>> 5] & (1 << (g & 31))) === 0) {
      const s = Math.floor(g / SPAN_GRANULES);
      const e = s * SPAN_WORDS;
      const state = v.spans[e + SW_STATE];
      const cls = v.spans[e + SW_CLASS];
      const slotStart = state !== SPAN_FREE && cls < LARGE_CLASS
        ? (g - s * SPAN_GRANULES) % CLASS_GRANULES[cls] === 0
        : state === SPAN_FREE && g % SPAN_GRANULES === 0;
      if (slotStart || (state === SPAN_FREE && typeIdIn(u16, g) === TYPE_FREE)) {
        throw new StaleReferenceError(`reference ${ref} names no object: it was freed by a cycle (or never allocated)`);
      }
      // A default-mode Ref whose granule is no object start now: its object
      // may have been freed and its span taken for another size class (the
      // granule is then inside a slot, or a large object), which the heap
      // cannot tell from a number never handed out. The Errors table
      // promises StaleReferenceError for a freed object, so it is that (in
      // review, 1-20% of freed Refs checked after churn were called invalid).
      if (generation >= 0) {
        throw new StaleReferenceError(
          `reference ${ref} names no object start: its object was freed by a cycle and its memory now holds ` +
          'objects of another size (or it was never handed out)');
      }
      throw new InvalidReferenceError(`reference ${ref} is not the start of an object`);
    }
    if (generation >= 0 && (u16[g * 8 + 1] & generationMask) !== generation) {
      throw new StaleReferenceError(
        `reference ${ref} names a freed object: its slot was handed out again since ` +
        `(generation ${generation}, the slot is at ${u16[g * 8 + 1] & generationMask} mod ${generationMask + 1})`);
    }
    const actual = u16[g * 8];
    throw new WrongTypeError(`reference ${ref} is a ${ctx.typeName(actual)}, expected a ${ctx.typeName(typeId)}`);
  };

  if (!checked) {
    // typeof first: a BigInt must not reach the bit operations; (ref >>> 0)
    // === ref rejects fractions, negatives, NaN and numbers of 2^32 or more
    // (bit 31 set never matches the key: the generation is too wide). No
    // compare with the top or with 0: the allocation bit says it (the
    // accessors' checks, src/api/accessors.ts, say why).
    const typed = (ref: unknown, typeId: number): number => {
      if (typeof ref === 'number' && (ref >>> 0) === ref) {
        const g = ref & granuleMask;
        if ((alloc[g >>> 5] & (1 << (g & 31))) !== 0 &&
            (i32[g << 2] & keyMask) === (typeId | ((ref >>> gb) << 16))) return g;
      }
      return diagnose(ref, typeId);
    };
    const any = (ref: unknown): number => {
      if (typeof ref === 'number' && (ref >>> 0) === ref) {
        const g = ref & granuleMask;
        if ((alloc[g >>> 5] & (1 << (g & 31))) !== 0 &&
            (i32[g << 2] & keyMask & ~0xffff) === ((ref >>> gb) << 16)) return g;
      }
      return diagnose(ref, -1);
    };
    return {
      typed,
      any,
      field: (ref) => (ref === 0 ? 0 : any(ref)),
      // Granule 0 (span 0 is reserved) has an all-zero header: encode(0) is 0.
      encode: (g) => g | ((u16[(g << 3) + 1] & generationMask) << gb),
      format,
      diagnose,
    };
  }

  const untag = (ref: unknown): number => {
    if (typeof ref !== 'number' || !Number.isSafeInteger(ref) || ref < 0) return -1;
    const tag = Math.floor(ref / TAG_UNIT);
    const g = ref - tag * TAG_UNIT;
    return tag === ctx.epochTag ? g : -1;
  };
  const typed = (ref: unknown, typeId: number): number => {
    const g = untag(ref);
    if (g > 0 && g < ctx.topGranule && (alloc[g >>> 5] & (1 << (g & 31))) !== 0 && u16[g * 8] === typeId) return g;
    return diagnose(ref, typeId);
  };
  const any = (ref: unknown): number => {
    const g = untag(ref);
    if (g > 0 && g < ctx.topGranule && (alloc[g >>> 5] & (1 << (g & 31))) !== 0) return g;
    return diagnose(ref, -1);
  };
  return {
    typed,
    any,
    field: (ref) => (ref === 0 ? 0 : any(ref)),
    encode: (g) => (g === 0 ? 0 : g + ctx.epochTag * TAG_UNIT),
    format: undefined,
    diagnose,
  };
}
