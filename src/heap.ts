// The public Heap: options, types, allocation, roots, cycles, figures.
// Mechanisms live in their own files (allocator, sweeper, cycle, policy,
// refs, roots, types); this file wires them together and owns the rooting
// contract's entry points (safepoint, collect).
import { EventEmitter } from 'node:events';
import { Allocator } from './allocator.js';
import { Collector } from './cycle.js';
import { HeapClosedError, HeapExhaustedError, InvalidOptionError } from './errors.js';
import { LARGE_CLASS, SPAN_BYTES, SPAN_GRANULES, roundToGranules, sizeClassOf } from './layout.js';
import { native, type NativeAddon, type RegionViews } from './native.js';
import { resolveOptions, type HeapOptions, type ResolvedOptions } from './options.js';
import { Policy } from './policy.js';
import { makeRefOps, type RefContext, type RefOps } from './refs.js';
import { RootHandle, RootTable } from './roots.js';
import type { CycleStats, HeapStats, Trigger } from './stats.js';
import {
  ByteArrays, RefArrays, Strings, TypeRegistry, type FieldSpec, type Ref, type StructType, type TypeContext,
} from './types.js';
import { HeapViews } from './views.js';
import { HeapMaps, MAP_TYPE_NAME, TYPE_MAP } from './collections/heap-maps.js';
import { SweepPool } from './sweep-pool.js';
import { objectBytes } from './sweeper.js';
import { WeakHolders } from './weak.js';
import { HeapFinalizationRegistry } from './finalization.js';
import { publish, type CycleEventMap, type CycleEventName, type FallbackEvent } from './events.js';

/**
 * Typed events: 'cycle' after each completed cycle, 'abort' after each
 * aborted one, 'fallback' once when the heap could not fork, and every
 * phase of src/events.ts (cycleStart, fork, childDone, stream, mark,
 * sweepStart, sweepProgress, sweepEnd), also published on diagnostics_channel.
 */
export type HeapEvents = { [K in Exclude<CycleEventName, 'fallback'>]: [CycleEventMap[K]] } & {
  /** A cycle finished its sweep. */
  cycle: [CycleStats];
  /** The heap could not fork and collected stop-the-world instead (emitted once per heap). */
  fallback: [FallbackEvent];
};

// A heap dropped without close() still gives its memory back.
// (A cycle in flight keeps its heap reachable through the pipe's socket, so
// no child can be left behind by this path.)
const unclosed = new FinalizationRegistry<{ addon: NativeAddon; regions: RegionViews }>((held) => {
  held.addon.destroyHeap(held.regions);
});

export class Heap extends EventEmitter<HeapEvents> implements RefContext, TypeContext {
  /** Reference arrays: `alloc(length)`, `length`, `get`, `set`. */
  readonly arrays: RefArrays;
  /** Byte arrays: `alloc(length | Uint8Array)`, `length`, `get`, `set`, `view`, `copy`. */
  readonly bytes: ByteArrays;
  /** UTF-8 strings: `alloc(string)`, `read`, `byteLength`. */
  readonly strings: Strings;
  /** Hash maps in the heap, string or number keys to references: `alloc`, `get`, `set`, `has`, `delete`, `size`, `forEach`... */
  readonly maps: HeapMaps;

  /** @internal */ readonly addon: NativeAddon;
  /** @internal */ readonly regions: RegionViews;
  /** @internal */ readonly views: HeapViews;
  /** @internal */ readonly options: ResolvedOptions;
  /** @internal */ readonly allocator: Allocator;
  /** @internal */ readonly roots: RootTable;
  /** @internal */ readonly policy: Policy;
  /** @internal */ readonly refs: RefOps;
  /** @internal */ topGranule = 0;
  /** @internal */ closed = false;
  /** @internal */ epochTag = 0;

  private readonly types: TypeRegistry;
  private readonly collector: Collector;
  private readonly alloc: Uint32Array;
  private readonly marks: Uint32Array;
  private live = 0;
  private objectCount = 0;
  private allocatedSinceCycle = 0;
  private allocatedTotal = 0;
  private scheduled = false;
  private saidFallback = false;
  private pool: SweepPool | undefined;
  private readonly weakHolders: WeakHolders;
  private readonly finalizers: Array<HeapFinalizationRegistry<unknown>> = [];
  private pendingFinalizers: Array<() => void> = [];
  private totals = { cycles: 0, aborted: 0, fallback: 0, freed: 0, returned: 0, maxPauseUs: 0, pauseUs: 0, markMs: 0, sweepMs: 0 };

  constructor(options?: HeapOptions) {
    super();
    this.options = resolveOptions(options);
    this.addon = native();
    const o = this.options;
    const made = this.addon.createHeap(o.maxHeap, o.hugePages, o.markStackEntries, o.maxRoots);
    if (!('arena' in made)) {
      throw new InvalidOptionError(`maxHeap: could not reserve ${o.maxHeap} bytes of address space: ${made.message}`);
    }
    this.regions = made;
    this.views = new HeapViews(made);
    this.alloc = this.views.allocBits;
    this.marks = this.views.markBits;
    this.allocator = new Allocator(this.views);
    this.topGranule = this.allocator.topGranule;
    this.roots = new RootTable(this.views.roots, o.maxRoots);
    this.policy = new Policy(o);
    this.refs = makeRefOps(this, o.checked);
    this.weakHolders = new WeakHolders(this.views);
    this.types = new TypeRegistry(this);
    this.arrays = new RefArrays(this);
    this.bytes = new ByteArrays(this);
    this.strings = new Strings(this);
    this.maps = new HeapMaps(this);
    this.types.nameBuiltin(TYPE_MAP, MAP_TYPE_NAME);
    const collector = new Collector({
      addon: this.addon,
      regions: this.regions,
      views: this.views,
      allocator: this.allocator,
      roots: this.roots,
      options: o,
      policy: this.policy,
      sweepPool: () => {
        if (!this.pool && (o.piscina || o.sweepThreads > 0)) this.pool = new SweepPool(o.sweepThreads, o.piscina);
        return this.pool;
      },
      sweepStarting: () => {
        this.weakHolders.clearDead();
        for (const r of this.finalizers) this.pendingFinalizers.push(...r.takeDead(this.views));
      },
      sweepFinished: () => {
        const due = this.pendingFinalizers;
        if (due.length === 0) return;
        this.pendingFinalizers = [];
        // From the event loop, one callback at a time: never inside an
        // allocation; a throwing callback does not stop the others.
        setImmediate(() => {
          for (const run of due) {
            try {
              run();
            } catch (e) {
              process.nextTick(() => { throw e; });
            }
          }
        });
      },
      recount: () => {
        const v = this.views;
        let objects = 0;
        let bytes = 0;
        const words = Math.ceil(this.allocator.topGranule / 32);
        for (let w = 0; w < words; w++) {
          let bits = v.allocBits[w];
          while (bits !== 0) {
            const bit = 31 - Math.clz32(bits & -bits);
            bits &= bits - 1;
            objects++;
            bytes += objectBytes(v, w * 32 + bit);
          }
        }
        this.objectCount = objects;
        this.live = bytes;
      },
      publish: (name, payload) => {
        publish(name, payload);
        if (name !== 'abort' && name !== 'fallback' && this.listenerCount(name) > 0) {
          (this.emit as (n: string, p: unknown) => boolean)(name, payload);
        }
      },
      newEpoch: () => {
        this.epochTag = (this.epochTag + 1) % 2 ** 25;
        this.allocatedSinceCycle = 0;
      },
      freed: (objects, bytes) => {
        this.objectCount -= objects;
        this.live -= bytes;
        this.totals.freed += bytes;
      },
      liveBytes: () => this.live,
      cycleCompleted: (s) => this.cycleCompleted(s),
      cycleAborted: (e) => {
        this.totals.aborted++;
        publish('abort', e);
        this.emit('abort', e);
        this.scheduleIfDue();
      },
      fellBack: (reason) => {
        // (The cycle itself is counted as a fallback when it completes.)
        if (this.saidFallback) return;
        this.saidFallback = true;
        process.emitWarning(`forkgc: ${reason}; collecting stop-the-world instead`, { code: 'FORKGC_FALLBACK' });
        const event = { heapId: this.regions.id, reason, timeMs: performance.now() };
        publish('fallback', event);
        this.emit('fallback', event);
      },
    });
    this.collector = collector;
    unclosed.register(this, { addon: this.addon, regions: this.regions }, this);
  }

  // ---- types and objects -------------------------------------------------

  /** Declares a struct type; TypeScript infers its fields' types. */
  defineStruct<F extends FieldSpec>(name: string, fields: F): StructType<F> {
    this.ensureOpen();
    return this.types.defineStruct(name, fields);
  }

  /**
   * A registry whose callback runs with the held value after a cycle frees
   * a registered object (asynchronously, from the event loop, exactly once).
   */
  createFinalizationRegistry<T>(callback: (held: T) => void): HeapFinalizationRegistry<T> {
    this.ensureOpen();
    if (typeof callback !== 'function') throw new TypeError('createFinalizationRegistry: callback must be a function');
    const r = new HeapFinalizationRegistry<T>(this.refs, () => this.ensureOpen(), callback);
    this.finalizers.push(r as HeapFinalizationRegistry<unknown>);
    return r;
  }

  /** @internal */
  weakHolderAllocated(g: number): void { this.weakHolders.add(g); }

  /** @internal The weak read barrier (src/weak.ts, rule 1). */
  weakRead(g: number): void {
    if (this.collector.phase !== 'marking') return;
    if ((this.marks[g >>> 5] & (1 << (g & 31))) !== 0) return;
    const r = this.addon.markInProcess(this.regions.id, this.allocator.topGranule, 0, g);
    if (r.status !== 0) throw new Error(`forkgc: heap corrupt at reference ${r.badRef} (weak read barrier)`);
  }

  /** The type name of the object `ref` names: a struct's name, 'RefArray', 'Bytes', 'String' or 'HeapMap'. */
  typeOf(ref: Ref): string {
    const g = this.refs.any(ref);
    return this.types.nameOf(this.views.u16[g * 8]);
  }

  /** @internal */
  typeName(typeId: number): string { return this.types.nameOf(typeId); }

  /** @internal */
  get highWaterGranule(): number { return this.allocator.highWaterSpan * SPAN_GRANULES; }

  /** @internal Allocates `bytes` (header included) and writes the header. */
  allocate(typeId: number, bytes: number, length: number): number {
    if (this.closed) throw new HeapClosedError();
    const size = roundToGranules(bytes);
    const cls = sizeClassOf(size);
    let g = cls < LARGE_CLASS ? this.allocator.allocSmall(cls) : this.allocator.allocLarge(size);
    if (g === 0) g = this.allocateSlow(cls, size);
    this.topGranule = this.allocator.topGranule;
    const u32 = this.views.u32;
    u32[g * 4] = typeId;  // typeId and zero flags
    u32[g * 4 + 1] = length;
    const bit = 1 << (g & 31);
    this.alloc[g >>> 5] |= bit;
    // Allocate black: the child cannot see this object (invariant 2).
    if (this.collector.phase === 'marking') this.marks[g >>> 5] |= bit;
    this.live += size;
    this.objectCount++;
    this.allocatedSinceCycle += size;
    this.allocatedTotal += size;
    if (!this.scheduled && this.options.auto && this.policy.shouldCollect(this.allocatedSinceCycle)) this.scheduleIfDue();
    return g;
  }

  // The heap is full: finish what the cycle in flight can give (waiting for
  // the child if need be, which is safe because its snapshot was taken at a
  // safepoint), then try again. Never starts a cycle: this is not a safepoint.
  private allocateSlow(cls: number, size: number): number {
    if (this.collector.phase === 'marking') this.collector.finishMarkingSync();
    if (this.collector.phase === 'sweeping') this.collector.finishSweepSync();
    const g = cls < LARGE_CLASS ? this.allocator.allocSmall(cls) : this.allocator.allocLarge(size);
    if (g !== 0) return g;
    throw new HeapExhaustedError(
      `cannot allocate ${size} bytes: the heap is at maxHeap (${fmt(this.options.maxHeap)}) with ` +
      `${fmt(this.live)} in ${this.objectCount} objects by the last count` +
      (this.collector.phase === 'sweeping' ? ' (the sweep in progress has freed some of it already)' : '') +
      '. Let a cycle run first (await heap.collect(), ' +
      'or call heap.safepoint() in long synchronous loops), release roots you no longer need, or raise maxHeap' +
      (size > SPAN_BYTES ? ` (a ${fmt(size)} object needs ${Math.ceil(size / SPAN_BYTES)} contiguous free spans)` : ''));
  }

  // ---- roots ---------------------------------------------------------------

  /** Keeps `ref` (or 0) alive until the handle is released. */
  root(ref: Ref): RootHandle {
    this.ensureOpen();
    const g = this.refs.field(ref);
    return new RootHandle(this.roots, this.refs, () => this.ensureOpen(), this.roots.add(g));
  }

  // ---- cycles --------------------------------------------------------------

  /**
   * A safepoint: if the policy wants a cycle, it starts (forks) here. Refs in
   * local variables obtained before this call must not be used after it
   * unless they are reachable from a root.
   */
  safepoint(): void {
    this.ensureOpen();
    if (this.collector.busy) return;
    if (this.scheduled || (this.options.auto && this.policy.shouldCollect(this.allocatedSinceCycle))) {
      this.startCycle('safepoint', false);
    }
  }

  /**
   * Runs a whole cycle (after the one in flight, if any) and resolves with
   * its figures. The call is a safepoint. Rejects with CycleAbortedError if
   * the cycle aborted (nothing was freed then).
   */
  async collect(): Promise<CycleStats> {
    this.ensureOpen();
    if (this.collector.busy) {
      await this.collector.join().catch(() => undefined);
      this.ensureOpen();
      if (this.collector.busy) return this.collect();
    }
    return this.collector.start('explicit', true);
  }

  private startCycle(trigger: Trigger, keepAlive: boolean): void {
    this.collector.start(trigger, keepAlive).catch(() => {
      // Reported through the 'abort' event.
    });
  }

  private scheduleIfDue(): void {
    if (this.scheduled || this.closed || !this.options.auto) return;
    if (!this.policy.shouldCollect(this.allocatedSinceCycle)) return;
    this.scheduled = true;
    // From the event loop: a safepoint by the rooting contract.
    setImmediate(() => {
      this.scheduled = false;
      if (this.closed || this.collector.busy) return;
      if (this.policy.shouldCollect(this.allocatedSinceCycle)) this.startCycle('allocation', false);
    }).unref();
  }

  private cycleCompleted(s: CycleStats): void {
    const t = this.totals;
    t.cycles++;
    if (s.fallback) t.fallback++;
    t.returned += s.bytesReturned;
    t.pauseUs += s.pauseUs;
    t.maxPauseUs = Math.max(t.maxPauseUs, s.pauseUs);
    t.markMs += s.markMs;
    t.sweepMs += s.sweepMs;
    this.topGranule = this.allocator.topGranule;
    this.emit('cycle', s);
    this.scheduleIfDue();
  }

  /** Cumulative figures. */
  stats(): HeapStats {
    this.ensureOpen();
    const t = this.totals;
    return {
      mode: this.options.mode,
      maxHeap: this.options.maxHeap,
      cycles: t.cycles,
      abortedCycles: t.aborted,
      fallbackCycles: t.fallback,
      heapBytes: this.allocator.heapBytes,
      liveBytes: this.live,
      objects: this.objectCount,
      roots: this.roots.live,
      allocatedBytesTotal: this.allocatedTotal,
      freedBytesTotal: t.freed,
      returnedBytesTotal: t.returned,
      maxPauseUs: t.maxPauseUs,
      totalPauseUs: t.pauseUs,
      totalMarkMs: t.markMs,
      totalSweepMs: t.sweepMs,
      phase: this.collector.phase,
      allocatedSinceCycle: this.allocatedSinceCycle,
      nextTriggerBytes: this.policy.nextTriggerBytes,
    };
  }

  get isClosed(): boolean { return this.closed; }

  /**
   * Releases everything: kills and reaps a child in flight, stops sweeping,
   * unmaps the arena. Any later use throws HeapClosedError.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.topGranule = 0;
    this.collector.close();
    unclosed.unregister(this);
    // Sweeper threads attach to the mappings, which stay until the last
    // detaches; still, let running tasks end before we go.
    if (this.pool) await this.pool.close();
    this.addon.destroyHeap(this.regions);
  }

  /** @internal */
  ensureOpen(): void {
    if (this.closed) throw new HeapClosedError();
  }
}

function fmt(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}
