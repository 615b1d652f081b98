// The public Heap: a facade over the heap's private core (src/api/core.ts).
// Every method checks nothing and holds nothing of its own: it forwards to
// the core, which is kept in an ES #private field so that the published
// types show the public API only. Internal code reaches the core through
// heapInternals() (src/internal.ts).
import { EventEmitter } from 'node:events';
import type { NativeAddon, RegionViews } from '../platform/native.js';
import { HeapCore } from './core.js';
import { registerCoreOf } from './private-access.js';
import type { CycleEventMap, CycleEventName, FallbackEvent } from './events.js';
import type { HeapFinalizationRegistry } from './finalization.js';
import type { HeapOptions } from './options.js';
import type { RootHandle } from './roots.js';
import type { CycleStats, HeapStats } from './stats.js';
import type { ByteArrays, FieldSpec, RefArrays, RefType, Strings, StructType } from './types.js';
import type { HeapMaps } from '../collections/heap-maps.js';
import type { SweepPool } from '../memory/sweep-pool.js';

/**
 * Typed events: 'cycle' after each completed cycle, 'abort' after each
 * aborted one, 'fallback' once when the heap could not fork, and every
 * phase of src/api/events.ts (cycleStart, fork, childDone, stream, mark,
 * sweepStart, sweepProgress, sweepEnd), also published on diagnostics_channel.
 */
export type HeapEvents = { [K in Exclude<CycleEventName, 'fallback'>]: [CycleEventMap[K]] } & {
  /** A cycle finished its sweep. */
  cycle: [CycleStats];
  /**
   * Once per heap for each of two reasons: the heap could not fork and
   * collected stop-the-world instead; a child crashed while forked
   * selectively, and selective fork is off for good (`reason` starts with
   * "selective fork off").
   */
  fallback: [FallbackEvent];
};

// A heap dropped without close() still gives its memory back, and its own
// sweeper threads end (they hold the heap only weakly).
// (A cycle in flight keeps its heap reachable through the pipe's socket, so
// no child can be left behind by this path.)
const unclosed = new FinalizationRegistry<{ addon: NativeAddon; regions: RegionViews; pool: SweepPool | undefined }>((held) => {
  void held.pool?.close();
  held.addon.destroyHeap(held.regions);
});

export class Heap extends EventEmitter<HeapEvents> {
  static {
    registerCoreOf((heap) => (heap as Heap).#core);
  }

  /** Reference arrays: `alloc(length)`, `length`, `get`, `set`. */
  readonly arrays: RefArrays;
  /** Byte arrays: `alloc(length | Uint8Array)`, `length`, `get`, `set`, `view`, `copy`. */
  readonly bytes: ByteArrays;
  /** UTF-8 strings: `alloc(string)`, `read`, `byteLength`, `length`, `equals`. */
  readonly strings: Strings;
  /** Hash maps in the heap, string or number keys to references: `alloc`, `get`, `set`, `has`, `delete`, `size`, `forEach`... */
  readonly maps: HeapMaps;

  readonly #core: HeapCore;

  constructor(options?: HeapOptions) {
    super();
    const core = new HeapCore(options, this as EventEmitter);
    this.#core = core;
    this.arrays = core.arrays;
    this.bytes = core.bytes;
    this.strings = core.strings;
    this.maps = core.maps;
    unclosed.register(this, { addon: core.addon, regions: core.regions, pool: core.poolToClose }, this);
  }

  /**
   * Declares a struct type; TypeScript infers its fields' types, and brands
   * its Refs with the name (`Ref<'User'>`) when the name is a literal.
   */
  defineStruct<const N extends string, F extends FieldSpec>(name: N, fields: F): StructType<F, N> {
    return this.#core.defineStruct(name, fields);
  }

  /**
   * A registry whose callback runs with the held value after a cycle frees
   * a registered object (asynchronously, from the event loop, exactly once).
   */
  createFinalizationRegistry<T>(callback: (held: T) => void): HeapFinalizationRegistry<T> {
    return this.#core.createFinalizationRegistry(callback);
  }

  /** The type name of the object `ref` names: a struct's name, 'RefArray', 'Bytes', 'String' or 'HeapMap'. */
  typeOf(ref: number): string {
    return this.#core.typeOf(ref);
  }

  /** Keeps `ref` (or 0) alive until the handle is released. */
  root<R extends number>(ref: R): RootHandle<RefType<R>> {
    return this.#core.root(ref);
  }

  /**
   * A safepoint: if the policy wants a cycle, it starts (forks) here. Refs in
   * local variables obtained before this call must not be used after it
   * unless they are reachable from a root.
   */
  safepoint(): void {
    this.#core.safepoint();
  }

  /**
   * Runs a whole cycle (after the one in flight, if any) and resolves with
   * its figures. The call is a safepoint. Rejects with CycleAbortedError if
   * the cycle aborted (nothing was freed then).
   */
  collect(): Promise<CycleStats> {
    return this.#core.collect();
  }

  /**
   * Resolves when the heap's sweeper threads have started and warmed their
   * code. They start in the background at `new Heap()`, a Node worker
   * thread each (about 0.1 s of wall time and 0.2 s of CPU on a 2-core VM);
   * a program that must not share its first requests with that waits here. The heap is usable before: until
   * then a cycle's sweep just waits for the threads or runs on the main
   * thread. Never rejects: it resolves at once with `sweepThreads: 0` or an
   * application's `piscina` pool, and when the threads cannot start (the
   * `sweeperFallback` event says so) or the heap is closed.
   */
  ready(): Promise<void> {
    return this.#core.ready();
  }

  /** Cumulative figures. */
  stats(): HeapStats {
    return this.#core.stats();
  }

  get isClosed(): boolean { return this.#core.closed; }

  /**
   * Releases everything: kills and reaps a child in flight, stops sweeping,
   * unmaps the arena. Any later use throws HeapClosedError.
   */
  close(): Promise<void> {
    // One close for every caller: a second call while the first still waits
    // for the sweeper threads resolves when they have ended, not before. The
    // promise is in place before any of the work runs: close() runs the
    // finalization callbacks already due first, and one that calls close()
    // must get this same promise, not start a second close that the first
    // then takes as done (found in review: resolved before the threads ended).
    if (this.#closing) return this.#closing;
    let settle!: { resolve: () => void; reject: (e: unknown) => void };
    this.#closing = new Promise<void>((resolve, reject) => { settle = { resolve, reject }; });
    (async () => {
      if (this.#core.closed) return;
      unclosed.unregister(this);
      await this.#core.close();
    })().then(settle.resolve, settle.reject);
    return this.#closing;
  }

  #closing: Promise<void> | undefined;
}
