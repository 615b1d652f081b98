// How internal code reaches what the public classes keep in ES #private
// fields. Each class registers an accessor from a static block when its
// module loads; this module is imported by src/api/core.ts and
// src/internal.ts, never re-exported by src/index.ts, so none of it shows in
// the published types.
import type { HeapViews } from '../memory/views.js';
import type { HeapCore } from './core.js';
import type { RefOps } from './refs.js';
import type { RootTable } from './root-table.js';

/** What a root handle needs from its heap (given by src/api/core.ts). */
export interface RootHandleParts {
  table: RootTable;
  refs: RefOps;
  ensureOpen: () => void;
}

/** What a finalization registry needs from its heap (given by src/api/core.ts). */
export interface FinalizationParts {
  refs: RefOps;
  ensureOpen: () => void;
}

/**
 * A registry's entries for one unmarked object, taken out at sweep start.
 * `run` calls their callbacks (the sweep freed the object); `putBack`
 * returns them to the registry (a SWEEP_FAILED cycle left the object).
 */
export interface TakenEntries {
  readonly granule: number;
  run(): void;
  putBack(): void;
}

/**
 * The objects a heap hands to the public classes it constructs (its core,
 * its root and finalization parts). The classes are exported (for
 * `instanceof` and types) but made only by the heap: a constructor given
 * anything else refuses at once (InvalidArgumentError), rather than fail
 * later with an untyped error from a missing part.
 */
const madeByHeap = new WeakSet<object>();
export function heapMade<T extends object>(parts: T): T {
  madeByHeap.add(parts);
  return parts;
}
export function isHeapMade(x: unknown): boolean {
  return typeof x === 'object' && x !== null && madeByHeap.has(x);
}

type TakeDead = (registry: object, v: HeapViews) => TakenEntries[];
let coreOfHeap: ((heap: object) => HeapCore) | undefined;
let takeDead: TakeDead | undefined;

export function registerCoreOf(get: (heap: object) => HeapCore): void { coreOfHeap = get; }
export function registerTakeDead(take: TakeDead): void { takeDead = take; }
let dropAll: ((registry: object) => void) | undefined;
export function registerDropAll(drop: (registry: object) => void): void { dropAll = drop; }
/** At close(): a registry drops its entries (their objects were never freed; their held values go with them). */
export function dropRegistryEntries(registry: object): void { dropAll!(registry); }

/** The private core of a Heap. */
export function coreOf(heap: object): HeapCore {
  return coreOfHeap!(heap);
}

/** At sweep start: takes out a registry's entries of unmarked objects. */
export function takeDeadEntries(registry: object, v: HeapViews): TakenEntries[] {
  return takeDead!(registry, v);
}
