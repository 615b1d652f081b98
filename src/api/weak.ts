// Weak reference fields: reference fields the marker does not trace (the
// descriptor lists them after the strong ones, and the marker scans only
// the strong). After a cycle a weak field whose target was freed reads 0.
//
// Weak references are the one way the mutator can reach an object the child
// may have found unreachable, so "garbage is stable" needs two rules here:
//
//  1. Read barrier while the child marks. Reading a weak field whose target
//     is not yet marked in the parent's bitmap marks the target and
//     everything it reaches, in-process, with the same native marker, on the
//     heap as it is at that moment. That subgraph was unreachable (except
//     weakly) since the fork, so nobody changed it before this read; from
//     here on it is marked, and every object the mutator can obtain later is
//     either marked by the child (reachable at the fork), allocated black,
//     or marked by such a barrier. (Other collectors call this the weak
//     reference keep-alive barrier of SATB marking.)
//  2. Clearing when the sweep starts, before any span is swept: the bitmap
//     is then final. Every object holding weak fields is registered at
//     allocation; a holder that is unmarked will be freed (it is dropped
//     from the registry), and in a marked holder every weak field whose
//     target is unmarked is set to 0. A field rewritten after the fork holds
//     a target the mutator obtained legally, hence marked: it is not cleared.
//
// An aborted cycle never reaches step 2, so it clears nothing. A
// SWEEP_FAILED cycle did reach it and its clearing stands, also for targets
// left in spans the failed sweep put back unswept: they are garbage whose
// children may already be freed, so no weak field may hand them out again.
import { DESCRIPTOR_WORDS } from '../memory/layout.js';
import type { HeapViews } from '../memory/views.js';
import { typeIdIn } from '../memory/header.js';

export class WeakHolders {
  private holders: number[] = [];

  constructor(private readonly v: HeapViews) {}

  /** A new object whose type has weak fields. */
  add(g: number): void {
    this.holders.push(g);
  }

  get size(): number { return this.holders.length; }

  /** Step 2 above. Returns the number of weak fields cleared. */
  clearDead(): number {
    const { u16, u32, markBits, descriptors } = this.v;
    const marked = (g: number) => (markBits[g >>> 5] & (1 << (g & 31))) !== 0;
    let kept = 0;
    let cleared = 0;
    const list = this.holders;
    for (let i = 0; i < list.length; i++) {
      const g = list[i];
      if (!marked(g)) continue;  // the sweep frees it
      list[kept++] = g;
      const d = typeIdIn(u16, g) * DESCRIPTOR_WORDS;
      const first = g * 4 + 2 + descriptors[d + 1];
      const end = first + descriptors[d + 2];
      for (let w = first; w < end; w++) {
        const target = u32[w];
        if (target !== 0 && !marked(target)) {
          u32[w] = 0;
          cleared++;
        }
      }
    }
    list.length = kept;
    return cleared;
  }
}
