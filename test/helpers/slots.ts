// Slot reuse, for the tests of generation checks: which granule a Ref names,
// and allocating until a given granule is handed out again.
import type { Heap } from '../../src/index.js';
import { heapInternals } from '../../src/internal.js';

export const granuleOf = (heap: Heap, ref: number): number => heapInternals(heap).refs.any(ref);

/** Allocates (rooting nothing) until an object lands on granule `g`; returns its Ref. */
export function allocateUntilReused(heap: Heap, alloc: () => number, g: number, limit = 1_000_000): number {
  for (let i = 0; i < limit; i++) {
    const r = alloc();
    if (granuleOf(heap, r) === g) return r;
  }
  throw new Error(`granule ${g} was not handed out again in ${limit} allocations`);
}
