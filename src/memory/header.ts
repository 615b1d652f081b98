// The object header: the one place TypeScript reads and writes it
// (native/layout.h draws it; the marker reads it in native/marker.cc).
//
// | offset | bytes | field                                               |
// |--------|-------|-----------------------------------------------------|
// |      0 |     2 | typeId (0 = free slot)                              |
// |      2 |     2 | generation: bumped each time the slot is handed out |
// |        |       | again (src/memory/allocator.ts); Refs carry its low |
// |        |       | bits (src/api/refs.ts). The marker never reads it.  |
// |      4 |     4 | length: elements (RefArray) or bytes (Bytes,        |
// |        |       | String); 0 for structs                              |
//
// Object g's header starts at byte g * 16: u16 index g * 8, u32 index g * 4.
// These are plain functions over the views; V8 inlines them, so the hot
// paths (field access, allocation) pay nothing for going through here.
import {
  DESCRIPTOR_WORDS, HEADER_BYTES, KIND_LEAF, KIND_REF_ARRAY, KIND_STRUCT, roundToGranules,
} from './layout.js';
import type { HeapViews } from './views.js';

/** The type id of the object at granule g (0 for a free slot). */
export function typeIdAt(v: HeapViews, g: number): number {
  return v.u16[g * 8];
}

/**
 * The type id from a u16 view the caller already holds (the reference
 * checks in src/api/refs.ts capture the view once, for their hot path).
 */
export function typeIdIn(u16: Uint16Array, g: number): number {
  return u16[g * 8];
}

/** The slot's generation (the header's second half-word). */
export function generationAt(v: HeapViews, g: number): number {
  return v.u16[g * 8 + 1];
}

/** Elements of a RefArray, bytes of a Bytes or String, 0 for a struct. */
export function lengthAt(v: HeapViews, g: number): number {
  return v.u32[g * 4 + 1];
}

/** Writes a new object's header: its type, its slot's generation, its length. */
export function writeHeader(v: HeapViews, g: number, typeId: number, generation: number, length: number): void {
  v.u32[g * 4] = typeId | (generation << 16);  // one store for both half-words
  v.u32[g * 4 + 1] = length;
}

/**
 * The object-size rule (native/marker.cc has the C++ copy): bytes the
 * object at granule g occupies, header included, rounded up to granules.
 * 0 for a type with no descriptor.
 */
export function objectBytes(v: HeapViews, g: number): number {
  const type = v.u16[g * 8];
  const length = v.u32[g * 4 + 1];
  const d = type * DESCRIPTOR_WORDS;
  switch (v.descriptors[d]) {
    case KIND_STRUCT: return v.descriptors[d + 3];
    case KIND_REF_ARRAY: return refArrayBytes(length);
    case KIND_LEAF: return leafBytes(length);
    default: return 0;
  }
}

/** Bytes a RefArray of `length` elements is allocated with, before rounding. */
export function refArrayBytes(length: number): number {
  return roundToGranules(HEADER_BYTES + length * 4);
}

/** Bytes a Bytes or String object of `length` bytes is allocated with. */
export function leafBytes(length: number): number {
  return roundToGranules(HEADER_BYTES + length);
}
