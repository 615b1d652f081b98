// The internal entry: what forkgc's own tests and tools need beyond the
// public API (src/index.ts). Applications should not import it; nothing
// here is covered by semver.
//
//   heapInternals(heap)   the heap's private core (src/api/core.ts):
//     .addon              the native addon (src/platform/native.ts)
//     .regions            the heap's native regions: id, arena address, huge pages
//     .views              typed-array views over arena, bitmaps, span table, roots
//     .allocator          spans, size classes, topGranule (src/memory/allocator.ts)
//     .roots              the root table (src/api/roots.ts)
//     .policy             the collection policy (src/collector/policy.ts)
//     .collector          the cycle state machine; .account holds live bytes/objects
//     .options            the resolved options
//     .prefault           the growth prefault (src/memory/growth-prefault.ts), undefined when off
//   heapId(heap)          the native heap id, as in every event's heapId
//   pageSize(heap)        the kernel's page size, as the addon saw it
//
// The layout constants, the wire format and the addon loader are modules
// of their own: import them from src/memory/layout.ts,
// src/collector/stream.ts and src/platform/native.ts.
import type { Heap } from './api/heap.js';
import { coreOf } from './api/private-access.js';
import type { HeapCore } from './api/core.js';

export type { HeapCore } from './api/core.js';
export type { NativeAddon, RegionViews } from './platform/native.js';
export type { HeapViews } from './memory/views.js';
export { GRANULE_BYTES, SPAN_BYTES } from './memory/layout.js';
export { packageRoot } from './platform/native.js';

/** The private core of `heap`. */
export function heapInternals(heap: Heap): HeapCore {
  return coreOf(heap);
}

/** The native heap id of `heap` (the heapId of its events). */
export function heapId(heap: Heap): number {
  return coreOf(heap).regions.id;
}

/** The kernel's page size, as the addon reports it. */
export function pageSize(heap: Heap): number {
  return coreOf(heap).addon.layoutConstants().pageSize;
}
