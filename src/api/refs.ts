// References as the mutator sees them, and their validation.
//
// A Ref is a plain number: the object's granule index (0 = null). Every use
// by an accessor checks, on the fast path, that it is a granule inside the
// arena, an object start (its allocation bit), and of the accessor's type
// (the header's typeId). Only when a check fails does the slow path work out
// which error to throw.
//
// Checked mode hands out Refs tagged with an epoch above the granule bits
// (granules need only 28). Fields still store bare granules; only the
// mutator's numbers are wider, so the tag can use all of a double's integer
// range:
//
// | bits  | field                                                      |
// |-------|------------------------------------------------------------|
// | 0-27  | granule index                                              |
// | 28-52 | epoch: cycles started when the Ref was handed out (2^25)   |
//
// A cycle starts only at a safepoint, and the rooting contract says a raw Ref
// does not survive a safepoint; so a Ref whose tag is not the current epoch
// was held across a cycle, and its use is reported (StaleReferenceError)
// even when its object happens to be alive or its slot reused. Refs handed
// out within one epoch are equal numbers for the same object. (The epoch
// wraps after 2^25 cycles.)
import {
  HeapClosedError, InvalidReferenceError, StaleReferenceError, WrongTypeError,
} from './errors.js';
import { CLASS_GRANULES, LARGE_CLASS, SPAN_GRANULES, SPAN_FREE, SPAN_WORDS, SW_CLASS, SW_STATE, TYPE_FREE } from '../memory/layout.js';
import type { HeapViews } from '../memory/views.js';
import { typeIdIn } from '../memory/header.js';

const TAG_UNIT = 2 ** 28;

export interface RefContext {
  readonly views: HeapViews;
  /** Objects lie below this granule; 0 once the heap is closed. */
  topGranule: number;
  /** No object was ever allocated at or above this granule. */
  readonly highWaterGranule: number;
  closed: boolean;
  /** Checked mode: cycles started, mod 2^25. */
  epochTag: number;
  typeName(typeId: number): string;
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
}

export function makeRefOps(ctx: RefContext, checked: boolean): RefOps {
  const v = ctx.views;
  const alloc = v.allocBits;
  const u16 = v.u16;

  // Called only when a fast check failed: says exactly what is wrong.
  const untagForDiagnosis = (ref: number) => ref - Math.floor(ref / TAG_UNIT) * TAG_UNIT;
  const diagnose = (ref: unknown, g: number, typeId: number): never => {
    if (ctx.closed) throw new HeapClosedError();
    if (typeof ref !== 'number') {
      throw new InvalidReferenceError(`expected a reference (a number), got ${ref === null ? 'null' : typeof ref}`);
    }
    if (ref === 0) throw new InvalidReferenceError('null reference (0) where an object is needed');
    if (checked) g = untagForDiagnosis(ref);
    if (Number.isInteger(g) && g >= ctx.topGranule && g < ctx.highWaterGranule) {
      // Above the spans in use but below the highest ever used: memory a
      // sweep gave back.
      throw new StaleReferenceError(
        `reference ${ref} names no object: it was freed by a cycle and its memory returned (or never allocated)`);
    }
    if (!Number.isInteger(g) || g <= 0 || g >= ctx.topGranule) {
      throw new InvalidReferenceError(`reference ${ref} is outside the heap (objects lie in 1..${ctx.topGranule - 1})`);
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
      throw new InvalidReferenceError(`reference ${ref} is not the start of an object`);
    }
    const actual = typeIdIn(u16, g);
    throw new WrongTypeError(`reference ${ref} is a ${ctx.typeName(actual)}, expected a ${ctx.typeName(typeId)}`);
  };

  if (!checked) {
    // typeof first: a BigInt must not reach the bit operations; (g >>> 0) === g
    // rejects fractions, negatives and NaN.
    const typed = (ref: unknown, typeId: number): number => {
      const g = ref as number;
      if (typeof ref === 'number' && (g >>> 0) === g && g > 0 && g < ctx.topGranule &&
          (alloc[g >>> 5] & (1 << (g & 31))) !== 0 && typeIdIn(u16, g) === typeId) return g;
      return diagnose(ref, g, typeId);
    };
    const any = (ref: unknown): number => {
      const g = ref as number;
      if (typeof ref === 'number' && (g >>> 0) === g && g > 0 && g < ctx.topGranule &&
          (alloc[g >>> 5] & (1 << (g & 31))) !== 0) return g;
      return diagnose(ref, g, -1);
    };
    return {
      typed,
      any,
      field: (ref) => (ref === 0 ? 0 : any(ref)),
      encode: (g) => g,
    };
  }

  const untag = (ref: unknown): number => {
    if (typeof ref !== 'number' || !Number.isSafeInteger(ref) || ref < 0) return diagnose(ref, NaN, -1);
    const tag = Math.floor(ref / TAG_UNIT);
    const g = ref - tag * TAG_UNIT;
    if (g !== 0 && tag !== ctx.epochTag && !ctx.closed) {
      throw new StaleReferenceError(
        `reference ${ref} was handed out ${tag < ctx.epochTag ? `${ctx.epochTag - tag} cycle(s) ago` : 'in another epoch'} ` +
        'and held across a safepoint (root it with heap.root() to keep it across a yield)');
    }
    return g;
  };
  const typed = (ref: unknown, typeId: number): number => {
    const g = untag(ref);
    if (g > 0 && g < ctx.topGranule && (alloc[g >>> 5] & (1 << (g & 31))) !== 0 && typeIdIn(u16, g) === typeId) return g;
    return diagnose(ref, g, typeId);
  };
  const any = (ref: unknown): number => {
    const g = untag(ref);
    if (g > 0 && g < ctx.topGranule && (alloc[g >>> 5] & (1 << (g & 31))) !== 0) return g;
    return diagnose(ref, g, -1);
  };
  return {
    typed,
    any,
    field: (ref) => (ref === 0 ? 0 : any(ref)),
    encode: (g) => (g === 0 ? 0 : g + ctx.epochTag * TAG_UNIT),
  };
}

