// The heap's private core: everything a Heap is made of (the native regions,
// the allocator, the root table, the collector) and the operations the
// public facade (src/api/heap.ts) and the object types call. The facade
// holds its core in an ES #private field, so none of this appears in the
// published types; internal code (tests, tools) reaches it through
// heapInternals() in src/internal.ts.
//
// Struct accessors and the built-in object types capture the core (and its
// views) in closures when they are created, so a field access or an
// allocation costs no extra indirection for going through a facade.
import type { EventEmitter } from 'node:events';
import { Accounting } from '../collector/accounting.js';
import { Collector } from '../collector/collector.js';
import { Policy } from '../collector/policy.js';
import { Allocator } from '../memory/allocator.js';
import { typeIdAt } from '../memory/header.js';
import { GRANULE_BYTES, LARGE_CLASS, SIZE_CLASSES, SPAN_BYTES, SPAN_GRANULES, roundToGranules, sizeClassOf } from '../memory/layout.js';
import { GrowthPrefault } from '../memory/growth-prefault.js';
import { SweepPool } from '../memory/sweep-pool.js';
import { warmIntake } from '../collector/warm.js';
import { HeapViews } from '../memory/views.js';
import { native, type NativeAddon, type RegionViews } from '../platform/native.js';
import {
  HeapClosedError, HeapCorruptError, HeapExhaustedError, InvalidArgumentError, InvalidOptionError, describe,
} from './errors.js';
import { hasSubscribers, publish, type CycleEventMap, type CycleEventName } from './events.js';
import { HeapFinalizationRegistry } from './finalization.js';
import { callSafely, emitSafely } from './listener-errors.js';
import { dropRegistryEntries, heapMade, takeDeadEntries, type FinalizationParts, type RootHandleParts, type TakenEntries } from './private-access.js';
import { resolveOptions, type HeapOptions, type ResolvedOptions } from './options.js';
import { EPOCHS, makeRefOps, type RefContext, type RefOps } from './refs.js';
import { RootHandle } from './roots.js';
import { RootTable } from './root-table.js';
import type { CycleStats, HeapStats, Trigger } from './stats.js';
import { TypeRegistry, type TypeContext } from './type-registry.js';
import { ByteArrays, RefArrays, Strings, type FieldSpec, type Ref, type StructType } from './types.js';
import { WeakHolders } from './weak.js';
import { HeapMaps, MAP_TYPE_NAME, TYPE_MAP } from '../collections/heap-maps.js';

/**
 * How often a cycle the pacer put off for a piece of work in progress on
 * the heap's own threads (helpersDefer) looks again, ms.
 */
const HELPER_RETRY_MS = 1;

/**
 * The longest a due cycle is put off for the heap's threads' work in
 * progress, ms: past it the cycle starts and its fork waits for that work
 * in the pause, as an explicit collect()'s does. Without it a piece whose
 * thread got no CPU (a loaded machine) put a program that never yields off
 * for as long: no cycle at all in 64 MB of allocation, once in a full test
 * run; with the prefault thread's testing delay of 40 ms a chunk, 1 cycle
 * where 3 were due. A piece takes 0.25-14 ms where its thread runs
 * (docs/performance-log.md), so this is far past any piece that is
 * merely slow.
 */
const HELPER_DEFER_MAX_MS = 100;

/**
 * After how long a due cycle's start, pending as an unref'd immediate, is
 * taken by its backstop timer instead, ms (scheduleIfDue).
 */
const START_BACKSTOP_MS = 1;

/** The emitter the core reports to: the public Heap. */
export type CoreEmitter = Pick<EventEmitter, 'rawListeners'>;

export class HeapCore implements RefContext, TypeContext {
  readonly addon: NativeAddon;
  readonly regions: RegionViews;
  readonly views: HeapViews;
  readonly options: ResolvedOptions;
  readonly allocator: Allocator;
  readonly roots: RootTable;
  /** What each root handle and finalization registry is made with (private-access.ts, heapMade). */
  private readonly rootParts: RootHandleParts;
  private readonly finalizationParts: FinalizationParts;
  readonly policy: Policy;
  readonly refs: RefOps;
  readonly collector: Collector;
  /** Live bytes and objects, allocation since the last cycle, cumulative figures (owned by the collector). */
  readonly account: Accounting;
  readonly types: TypeRegistry;
  readonly arrays: RefArrays;
  readonly bytes: ByteArrays;
  readonly strings: Strings;
  readonly maps: HeapMaps;
  /** Objects lie below this granule; 0 once closed (checked mode's checks and diagnose(), src/api/refs.ts). */
  topGranule = 0;
  closed = false;
  /** Checked mode: 1 + cycles started, mod EPOCHS (src/api/refs.ts). */
  epochTag = 1;

  private readonly alloc: Uint32Array;
  private readonly marks: Uint32Array;
  private scheduled = false;
  /** The pending start when it is an immediate, and its backstop timer (scheduleIfDue). */
  private pendingStart: NodeJS.Immediate | undefined = undefined;
  private pendingBackstop: NodeJS.Timeout | undefined = undefined;
  /** options.auto, as a field of its own for the allocation path. */
  private readonly auto: boolean;
  private saidFallback = false;
  private saidSweeperFallback = false;
  /** Inside an allocation that moves a cycle on (listeners may run): no cycle may start. */
  private allocating = false;
  /**
   * Depth of the collector's event emissions in progress. Listeners run in
   * the middle of a step of the cycle (the sweep's run made but not yet its
   * board, say); whatever they call must not move the cycle on from there
   * (safepoint(), an allocation's attention or slow path): the step that
   * emitted goes on when they return.
   */
  private emitting = 0;
  /** The heap took a new span during a cycle: the next allocation moves the cycle on (advanceInAllocation). */
  private grewInCycle = false;
  /**
   * The allocation path has work to do after its object is complete
   * (attend()). Raised only by counted() and the allocator's `grown`, that
   * is where the allocator refills or drops its cached words, or makes a
   * large object: the path that did so checks it before it returns, and a
   * drop leaves every class without a cached word. So while a word is
   * cached it is clear, and compiled alloc() pops cached slots without
   * looking (src/api/accessors.ts).
   */
  private attention = false;
  private pool: SweepPool | undefined;
  /** Faults the arena in ahead of the allocator's growth (undefined when off; src/internal.ts lists it for tests). */
  readonly prefault: GrowthPrefault | undefined;
  private readonly weakHolders: WeakHolders;
  private readonly finalizers: Array<HeapFinalizationRegistry<unknown>> = [];
  /** Entries of objects the sweep in progress is expected to free. */
  private takenFinalizers: TakenEntries[] = [];
  /** Entries of objects a sweep freed: their callbacks run from the next immediate. */
  private dueFinalizers: TakenEntries[] = [];
  /** How many of dueFinalizers the running runDueFinalizers has taken. */
  private dueHead = 0;
  /** How many runDueFinalizers passes are running (a callback's close() nests one). */
  private finalizerPasses = 0;
  private finalizerImmediate: NodeJS.Immediate | undefined;

  constructor(options: HeapOptions | undefined, private readonly emitter: CoreEmitter) {
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
    // In fork mode only when the arena above the top stays out of the child
    // (selective fork: native/growth_prefault.cc says why).
    const prefault = o.prefaultGrowth && (o.mode === 'stw' || o.selectiveFork)
      ? new GrowthPrefault({
        ask: (from, to) => !this.closed && this.addon.prefaultGrowth(made.id, from, to),
        quiesce: () => !this.closed && this.addon.prefaultQuiesce(made.id),
        resume: () => { if (!this.closed) this.addon.prefaultResume(made.id); },
      }, made.arena.byteLength)
      : undefined;
    this.prefault = prefault;
    this.allocator = new Allocator(this.views, (top) => {
      if (this.closed) return;
      this.topGranule = top;
      prefault?.grown(top * GRANULE_BYTES, this.allocator.heapBytes);
      // A new span while a cycle is in flight: the allocation moves the cycle on.
      if (this.collector?.busy) this.grewInCycle = this.attention = true;
    }, (objects, bytes) => this.counted(objects, bytes),
    (offset, bytes) => {
      if (this.closed || this.addon.releaseArena(this.regions.id, offset, bytes) !== 0) return false;
      prefault?.released(offset);
      return true;
    });
    this.auto = this.options.auto;
    this.topGranule = this.allocator.topGranule;
    this.roots = new RootTable(this.views.roots, o.maxRoots);
    this.policy = new Policy(o);
    this.refs = makeRefOps(this, o.checked);
    this.weakHolders = new WeakHolders(this.views);
    this.types = new TypeRegistry(this);
    heapMade(this);
    this.rootParts = heapMade({ table: this.roots, refs: this.refs, ensureOpen: () => this.ensureOpen() });
    this.finalizationParts = heapMade({ refs: this.refs, ensureOpen: () => this.ensureOpen() });
    this.arrays = new RefArrays(this);
    this.bytes = new ByteArrays(this);
    this.strings = new Strings(this);
    this.maps = new HeapMaps(this);
    this.types.nameBuiltin(TYPE_MAP, MAP_TYPE_NAME);
    this.collector = new Collector(this);
    this.account = this.collector.account;
    this.collector.stalls.onStall = (kind, startMs, endMs) => {
      if (!hasSubscribers('stall') && this.emitter.rawListeners('stall').length === 0) return;
      const event = { heapId: this.regions.id, cycleId: this.collector.cycleId, kind, startMs, endMs };
      // Stalls end inside allocations (lazy sweeping): listeners run after
      // the code in progress returns, where calling collect() is safe.
      queueMicrotask(() => { if (!this.closed) this.publish('stall', event); });
    };
    this.startSweepPool();
    warmIntake();
  }

  /**
   * Starts the sweeper threads now, so the first cycle does not pay for
   * their start-up (and sweeps with them). A pool that cannot be made, or
   * threads that cannot start, leave the heap sweeping on the main thread,
   * said once (sweeperFailed).
   */
  private startSweepPool(): void {
    const o = this.options;
    if (!(o.piscina || o.sweepThreads > 0)) return;
    try {
      // Weakly: the pool's threads keep the pool alive, and a heap the
      // program dropped without close() must still be collectable (its
      // finalizer gives the memory back and ends the pool: src/api/heap.ts).
      const core = new WeakRef(this);
      this.pool = new SweepPool(o.sweepThreads, o.piscina, (e) => core.deref()?.sweeperFailed(e), this.regions.id);
    } catch (e) {
      this.sweeperFailed(e as Error);
    }
  }

  // ---- what the collector needs (CycleHost) -----------------------------

  /** Resolves when the sweeper threads have booted (Heap.ready). */
  ready(): Promise<void> {
    return this.pool ? this.pool.ready() : Promise.resolve();
  }

  /** The heap's sweeper pool, broken or not: what close() (or the finalizer of a heap dropped without it) ends. */
  get poolToClose(): SweepPool | undefined { return this.pool; }

  /** The sweeper threads, if the heap has any and they can run (started at heap creation). */
  sweepPool(): SweepPool | undefined {
    return this.pool && !this.pool.broken ? this.pool : undefined;
  }

  /** Sweeper threads could not start (a pids or thread limit, no descriptors...): the main thread sweeps; said once per heap. */
  sweeperFailed(error: Error, died = false): void {
    if (this.saidSweeperFallback) return;
    this.saidSweeperFallback = true;
    this.pool?.brokenBy(error);
    const code = (error as { code?: unknown }).code;
    const reason = `${died ? 'a sweeper thread died while it swept' : 'sweeper threads could not start'}: ${error.message}${typeof code === 'string' ? ` (${code})` : ''}`;
    // After the constructor has returned (the emitter may not have listeners yet).
    process.nextTick(() => {
      process.emitWarning(`forkgc: ${reason}; sweeping on the main thread instead`, { code: 'FORKGC_SWEEPER_FALLBACK' });
      const event = { heapId: this.regions.id, reason, timeMs: performance.now() };
      callSafely(() => publish('sweeperFallback', event));
      emitSafely(this.emitter, 'sweeperFallback', event);
    });
    this.collector?.sweeperThreadsLost();
  }

  /** The bitmap is final and no span is swept yet: clear dead weak fields, take dead finalization entries. */
  sweepStarting(): void {
    this.weakHolders.clearDead();
    for (const r of this.finalizers) this.takenFinalizers.push(...takeDeadEntries(r, this.views));
  }

  /**
   * The sweep is over (or given up): run the finalization callbacks of what
   * it freed, from the event loop. `notFreed` (a SWEEP_FAILED cycle) says
   * which unmarked objects the sweep left in place: their entries go back
   * to their registries, for the cycle that frees them.
   */
  sweepFinished(notFreed?: (g: number) => boolean): void {
    const taken = this.takenFinalizers;
    this.takenFinalizers = [];
    for (const t of taken) {
      if (notFreed?.(t.granule)) t.putBack();
      else this.dueFinalizers.push(t);
    }
    if (this.dueFinalizers.length === 0 || this.finalizerImmediate) return;
    // From the event loop: never inside an allocation.
    this.finalizerImmediate = setImmediate(() => {
      this.finalizerImmediate = undefined;
      this.runDueFinalizers();
    });
  }

  /** Runs the callbacks due; one that throws is reported and does not stop the others. */
  private runDueFinalizers(): void {
    // One at a time from the list itself, the batch due when this began: a
    // callback that closes the heap makes close() run the rest while the
    // heap is still open, and this loop then stops. That nested pass begins
    // with the running callback's own object: its other entries are due
    // too (run() takes each entry off as it goes, so calling it again goes
    // on where the running one is; found in review).
    const end = this.dueFinalizers.length;
    if (this.finalizerPasses > 0) this.dueHead--;
    this.finalizerPasses++;
    const stall = this.collector.stalls.begin('finalizers');
    try {
      while (this.dueHead < end && !this.closed) this.dueFinalizers[this.dueHead++].run();
    } finally {
      if (--this.finalizerPasses === 0) {
        this.dueFinalizers = this.dueFinalizers.slice(this.dueHead);
        this.dueHead = 0;
      }
      this.collector.stalls.end(stall);
    }
  }

  /**
   * Publishes a phase of the cycle on diagnostics_channel and as a Heap
   * event. Nothing a subscriber or listener throws reaches the collector
   * (src/api/listener-errors.ts): the cycle goes on exactly as without it.
   */
  publish<K extends CycleEventName>(name: K, payload: CycleEventMap[K]): void {
    this.runListeners(() => {
      callSafely(() => publish(name, payload));
      if (name !== 'abort' && name !== 'fallback' && name !== 'sweeperFallback') emitSafely(this.emitter, name, payload);
    });
  }

  /** Calls the collector's listeners with `emitting` raised while they run (see there). */
  private runListeners(call: () => void): void {
    this.emitting++;
    try {
      call();
    } finally {
      this.emitting--;
    }
  }

  /**
   * A cycle is starting: checked mode moves to the next epoch, and the
   * allocator drops its cached words, so the counts the cycle starts from
   * are exact (src/memory/allocator.ts, `counted`).
   */
  newEpoch(): void {
    this.epochTag = this.epochTag % EPOCHS + 1;
    this.allocator.cycleStarting();
  }

  cycleCompleted(s: CycleStats): void {
    this.topGranule = this.allocator.topGranule;
    this.runListeners(() => emitSafely(this.emitter, 'cycle', s));
    this.scheduleIfDue();
  }

  cycleAborted(e: Error): void {
    this.runListeners(() => {
      callSafely(() => publish('abort', e as CycleEventMap['abort']));
      emitSafely(this.emitter, 'abort', e);
    });
    this.scheduleIfDue();
  }

  /** The heap ran stop-the-world because it could not fork (reported once per heap). */
  fellBack(reason: string): void {
    // (The cycle itself is counted as a fallback when it completes.)
    if (this.saidFallback) return;
    this.saidFallback = true;
    process.emitWarning(`forkgc: ${reason}; collecting stop-the-world instead`, { code: 'FORKGC_FALLBACK' });
    const event = { heapId: this.regions.id, reason, timeMs: performance.now() };
    this.emitFallback(event);
  }

  /**
   * A fork left nothing out (selective fork off, or not applied: no _Fork in
   * this libc): the arena above the top is shared with the child too, and a
   * page the prefault thread faults in there would be copied at the first
   * write. No more of that for this heap.
   */
  forkedPlainly(): void {
    this.prefault?.stop();
  }

  prefaultFaults(): number {
    return this.prefault === undefined || this.closed ? 0 : this.addon.growthPrefaultFigures(this.regions.id).faults;
  }

  /** A child crashed while selective fork was on: plain fork for the rest of this heap's life. */
  selectiveForkOff(reason: string): void {
    // A page faulted in above the top would be shared with every child now.
    this.prefault?.stop();
    process.emitWarning(`forkgc: ${reason}; forking plainly (selectiveFork off) for the rest of this heap's life`,
      { code: 'FORKGC_SELECTIVE_FORK_OFF' });
    const event = { heapId: this.regions.id, reason: `selective fork off: ${reason}`, timeMs: performance.now() };
    this.emitFallback(event);
  }

  /** The 'fallback' event, on its channel and to the heap's listeners (publish() sends it to the channel only). */
  private emitFallback(event: CycleEventMap['fallback']): void {
    this.runListeners(() => {
      callSafely(() => publish('fallback', event));
      emitSafely(this.emitter, 'fallback', event);
    });
  }

  // ---- types and objects -------------------------------------------------

  defineStruct<N extends string, F extends FieldSpec>(name: N, fields: F): StructType<F, N> {
    this.ensureOpen();
    return this.types.defineStruct(name, fields);
  }

  createFinalizationRegistry<T>(callback: (held: T) => void): HeapFinalizationRegistry<T> {
    this.ensureOpen();
    if (typeof callback !== 'function') {
      throw new InvalidArgumentError(`createFinalizationRegistry: callback must be a function, got ${describe(callback)}`);
    }
    const r = new HeapFinalizationRegistry<T>(this.finalizationParts, callback);
    this.finalizers.push(r as HeapFinalizationRegistry<unknown>);
    return r;
  }

  weakHolderAllocated(g: number): void { this.weakHolders.add(g); }

  /** The weak read barrier (src/api/weak.ts, rule 1). */
  weakRead(g: number): void {
    // Between the snapshot (the fork, or stop-the-world marking) and the
    // sweep's start: 'marking' in fork mode, and, in stw mode or a fallback,
    // the window in which 'mark' listeners run (allocating black, phase
    // still idle). Either way the marks are taken and a target read now
    // must be marked, or the sweep frees what the program just stored.
    if (this.collector.phase !== 'marking' && !this.allocator.black) return;
    if ((this.marks[g >>> 5] & (1 << (g & 31))) !== 0) return;
    // Marking everything the target reaches is the collector's work on the
    // main thread (49 ms for a 2M-node list, in review): a stall.
    const stalls = this.collector.stalls;
    const stall = stalls.begin('weakBarrier');
    let r;
    try {
      r = this.addon.markInProcess(this.regions.id, this.allocator.topGranule, 0, g);
    } finally {
      stalls.end(stall);
    }
    if (r.status !== 0) throw new HeapCorruptError(`heap corrupt at reference ${r.badRef} (weak read barrier)`);
  }

  typeOf(ref: number): string {
    return this.types.nameOf(typeIdAt(this.views, this.refs.any(ref)));
  }

  typeName(typeId: number): string { return this.types.nameOf(typeId); }

  get highWaterGranule(): number { return this.allocator.highWaterSpan * SPAN_GRANULES; }

  /**
   * Allocates `bytes` (header included), zeroed, and writes the header;
   * returns the granule. Live bytes are counted in slot bytes (the size
   * class) or whole spans (src/collector/accounting.ts).
   */
  allocate(typeId: number, bytes: number, length: number): number {
    if (this.closed) throw new HeapClosedError();
    // The class of `bytes` is the class of `bytes` rounded up to granules
    // (sizeClassOf rounds on its own): only a large object needs the size.
    const cls = sizeClassOf(bytes);
    if (cls < LARGE_CLASS) {
      const g = this.allocateSmall(typeId, cls, SIZE_CLASSES[cls]);
      this.views.u32[g * 4 + 1] = length;
      return g;
    }
    const size = roundToGranules(bytes);
    // Larger than every span of the arena together: no cycle can make room,
    // so none is finished or made due (a program retrying such an object ran
    // a whole cycle per attempt), and none of a sweep in progress is done
    // to look for room first (found in review: the rest of the sweep, on
    // this thread, before the error).
    if (Math.ceil(size / SPAN_BYTES) > this.views.spanCount - 1) {
      throw new HeapExhaustedError(
        `cannot allocate ${size} bytes: more than the heap can ever hold (maxHeap ${fmt(this.options.maxHeap)}, ` +
        `${fmt((this.views.spanCount - 1) * SPAN_BYTES)} for objects); raise maxHeap`);
    }
    let g = this.allocator.allocLarge(size, typeId);
    if (g === 0) g = this.allocateSlow(cls, size, typeId);
    this.views.u32[g * 4 + 1] = length;
    return this.allocated(g, Allocator.largeBytes(size));
  }

  /**
   * The allocation fast path for a small object of class `cls` (slotBytes
   * its size), length 0: struct types call it with both precomputed. Small
   * objects are counted a word of slots at a time (counted()), not here.
   */
  allocateSmall(typeId: number, cls: number, slotBytes: number): number {
    let g = this.allocator.allocSmall(cls, typeId);
    if (g === 0) {
      if (this.closed) throw new HeapClosedError();
      g = this.allocateSlow(cls, slotBytes, typeId);
    }
    this.alloc[g >>> 5] |= 1 << (g & 31);
    // (Allocate black, docs/design.md invariant 2: the allocator marked the
    // slot's whole word when it cached it, src/memory/allocator.ts.)
    if (this.attention) this.attend();
    return g;
  }

  /** A large object: counted one by one. */
  private allocated(g: number, bytes: number): number {
    const bit = 1 << (g & 31);
    this.alloc[g >>> 5] |= bit;
    if (this.allocator.black) this.marks[g >>> 5] |= bit;
    this.counted(1, bytes);
    if (this.attention) this.attend();
    return g;
  }

  /**
   * Objects counted as allocated: a word of small slots when the allocator
   * caches it (negative: slots it dropped unused), or one large object.
   * Flags `attention` when a cycle is due, so the allocation path tests one
   * field instead of the policy.
   */
  private counted(objects: number, bytes: number): void {
    const a = this.account;
    a.liveBytes += bytes;
    a.objects += objects;
    a.allocatedSinceCycle += bytes;
    a.allocatedTotal += bytes;
    if (this.auto && !this.scheduled && this.policy.shouldCollect(a.allocatedSinceCycle)) this.attention = true;
  }

  /**
   * Work the allocation path found due (`attention`), done after the new
   * object is complete (and black): schedule a cycle; move the cycle in
   * flight on when the heap grew by a span meanwhile (a program that rarely
   * yields would otherwise grow the heap until maxHeap).
   */
  private attend(): void {
    this.attention = false;
    if (this.auto && !this.scheduled && this.cycleDue()) this.scheduleIfDue();
    if (this.grewInCycle) {
      this.grewInCycle = false;
      this.advanceInAllocation();
      // A listener the cycle ran may have closed the heap: the object just
      // made is in memory that is gone, and every use after close() throws.
      this.ensureOpen();
    }
  }

  /**
   * Moves the cycle in flight on from inside an allocation. Its events (and
   * a completed cycle's 'cycle' event) may reach listeners here; one that
   * calls collect() or safepoint() must not start a cycle inside an
   * allocation (not a safepoint: the caller may hold unrooted refs), so
   * both see `allocating` and defer (collect) or do nothing (safepoint).
   */
  private advanceInAllocation(): void {
    if (this.emitting > 0) return;  // a listener's allocation: the step that emitted goes on after it
    const was = this.allocating;
    this.allocating = true;
    try {
      this.collector.advance();
    } finally {
      this.allocating = was;
    }
  }

  // The heap is full: finish what the cycle in flight can give (waiting for
  // the child if need be, which is safe because its snapshot was taken at a
  // safepoint), then try again. Never starts a cycle: this is not a safepoint.
  private allocateSlow(cls: number, size: number, typeId: number): number {
    // (An object larger than the whole arena never gets here: allocate().)
    // First what the cycle in flight can give without waiting. (Not from a
    // listener's allocation: the cycle is in the middle of the step that
    // emitted the event, and cannot move on from there; such an allocation
    // gets only what is free now.)
    if (this.emitting > 0) {
      const g = this.takeFree(cls, size, typeId);
      if (g !== 0) return g;
      throw new HeapExhaustedError(
        `cannot allocate ${size} bytes inside a listener of a cycle's event: the heap is at maxHeap ` +
        `(${fmt(this.options.maxHeap)}), and the cycle cannot free anything before the listener returns`);
    }
    if (this.collector.busy) {
      this.advanceInAllocation();
      this.ensureOpen();
      const g = this.takeFree(cls, size, typeId);
      if (g !== 0) return g;
    }
    const was = this.allocating;
    this.allocating = true;
    try {
      if (this.collector.phase === 'marking') this.collector.finishMarkingSync();
      if (this.collector.phase === 'sweeping') this.collector.finishSweepSync();
    } finally {
      this.allocating = was;
    }
    // A listener of the finished cycle closed the heap: say that, not "full".
    this.ensureOpen();
    const g = this.takeFree(cls, size, typeId);
    if (g !== 0) return g;
    // No cycle is in flight now: the next safepoint or turn of the event
    // loop starts one, though a failed allocation counted nothing.
    this.account.allocationFailed = true;
    this.scheduleIfDue();
    throw new HeapExhaustedError(
      `cannot allocate ${size} bytes: the heap is at maxHeap (${fmt(this.options.maxHeap)}) with ` +
      `${fmt(this.account.liveBytes)} in ${this.account.objects} objects by the last count` +
      (this.collector.phase === 'sweeping' ? ' (the sweep in progress has freed some of it already)' : '') +
      '. Let a cycle run first (await heap.collect(), ' +
      'or call heap.safepoint() in long synchronous loops), release roots you no longer need, or raise maxHeap' +
      (size > SPAN_BYTES ? ` (a ${fmt(size)} object needs ${Math.ceil(size / SPAN_BYTES)} contiguous free spans)` : ''));
  }
  /** An object from what is free now, without moving any cycle on; 0 if there is no room. */
  private takeFree(cls: number, size: number, typeId: number): number {
    return cls < LARGE_CLASS ? this.allocator.allocSmall(cls, typeId) : this.allocator.allocLarge(size, typeId);
  }

  // ---- roots ---------------------------------------------------------------

  root(ref: number): RootHandle {
    this.ensureOpen();
    const g = this.refs.field(ref);
    return new RootHandle(this.rootParts, this.roots.add(g));
  }

  // ---- cycles --------------------------------------------------------------

  safepoint(): void {
    this.ensureOpen();
    // A listener called us from inside an allocation (not a safepoint), or
    // from inside a step of the cycle (which goes on when it returns).
    if (this.allocating || this.emitting > 0) return;
    if (this.collector.busy) {
      // Move the cycle in flight on without waiting (src/collector/collector.ts, advance()).
      this.collector.advance();
      // Past the pacer's soft limit, wait for the child here, where a cycle
      // may start: after an abort the next one starts below, before the heap
      // is full (src/collector/policy.ts, safepointWaits).
      if (this.collector.phase === 'marking' && this.policy.safepointWaits(this.account.liveBytes)) {
        this.collector.finishMarkingSync();
      }
      // A listener of the cycle's events may have closed the heap: no cycle
      // starts on it (the next call on the heap says it is closed).
      if (this.closed || this.collector.busy) return;
    }
    // The pacer decides here, not `scheduled`: that only says an immediate is
    // pending, and in a program that never yields it stays set, which would
    // start a cycle at every safepoint after the first trigger.
    if (this.options.auto && this.cycleDue()) {
      if (this.helpersDefer()) {
        this.scheduleIfDue(HELPER_RETRY_MS);
        return;
      }
      this.startCycle('safepoint', false);
    }
  }

  async collect(): Promise<CycleStats> {
    this.ensureOpen();
    // Called from a listener inside an allocation, or inside a step of the
    // cycle (a 'sweepEnd' listener runs after the cycle was let go, before
    // its 'cycle' event): start once the caller's code has returned.
    if (this.allocating || this.emitting > 0) await null;
    this.ensureOpen();
    if (this.collector.busy) {
      await this.collector.join().catch(() => undefined);
      this.ensureOpen();
      // A cycle someone started since the one in flight ended began after
      // this call: it is a whole cycle, and this call's. (Waiting behind it
      // for one of its own let a stream of other starters hold an awaited
      // collect() for ever: 302 cycles in review, and 20 calls made during
      // one cycle ran 20 more one after another.)
      if (this.collector.busy) return this.collector.join();
    }
    // Not put off for the heap's threads' work in progress (helpersDefer):
    // the cycle starts here, in the call, and its snapshot is the heap as
    // the call found it (a program that goes on mutating while the cycle
    // runs may rely on that, and the tests do); its fork waits for that
    // work, in the pause.
    const cycle = this.collector.start('explicit', true);
    this.resumeHelpers();
    return cycle;
  }

  private startCycle(trigger: Trigger, keepAlive: boolean): void {
    this.collector.start(trigger, keepAlive).catch(() => {
      // Reported through the 'abort' event.
    });
    this.resumeHelpers();
  }

  /**
   * Whether a cycle wanted now should wait for a piece of work in progress
   * on the heap's own threads, each of which this stops from taking another
   * until resumeHelpers(): the prefault thread's chunk
   * (src/memory/growth-prefault.ts) or the restore thread's range or pages
   * (native/huge_page_restore.cc). The fork would wait for it in the pause
   * (1-14 ms on the project's VM). Never once the heap is short of room
   * (past the pacer's soft limit, or after a failed allocation): then the
   * cycle goes first, and the fork waits. Nor when the cycle will not fork
   * (stw mode, a fallback, a live set the marker choice marks in-process:
   * src/collector/mark-choice.ts).
   */
  private helpersDefer(): boolean {
    if (this.account.allocationFailed || this.closed || !this.collector.wouldFork()) return false;
    if (this.policy.safepointWaits(this.account.liveBytes)) return false;
    // Both asked, so that both stop taking work.
    const chunk = this.prefault?.busy() ?? false;
    const range = this.addon.restoreQuiesce(this.regions.id);
    if (!chunk && !range) {
      this.deferredSinceMs = 0;
      return false;
    }
    const now = performance.now();
    if (this.deferredSinceMs === 0) this.deferredSinceMs = now;
    if (now - this.deferredSinceMs < HELPER_DEFER_MAX_MS) return true;
    this.deferredSinceMs = 0;
    return false;
  }
  /** When the due cycle was first put off for the heap's threads (helpersDefer), performance.now() ms; 0: not put off. */
  private deferredSinceMs = 0;

  /**
   * The cycle started (forked, or marked, or failed), or will not: the
   * heap's threads may go on (each resume does nothing to a thread that was
   * not stopped).
   */
  private resumeHelpers(): void {
    this.deferredSinceMs = 0;
    this.prefault?.resume();
    if (!this.closed) this.addon.restoreResume(this.regions.id);
  }

  /**
   * Starts a due cycle from the event loop (a safepoint by the rooting
   * contract): at the next turn, or `afterMs` later when a helper thread's
   * piece of work put it off. Unref'd, so a heap does not keep the process
   * alive. An unref'd immediate alone does not stop the loop's poll from
   * blocking: queued from a timer's or an immediate's callback, or from the
   * main script, it runs only when something else wakes the loop (5 s, the
   * next timer, in test/due-start.test.ts; 7.2 s in a test worker). So it
   * has a backstop, an unref'd timer of a millisecond (the poll's timeout
   * counts every timer), and whichever comes first starts the cycle: the
   * immediate where the loop is busy (the turn programs and tests expect),
   * the timer where it idles. A retry after a helper's piece is the timer
   * alone.
   */
  private scheduleIfDue(afterMs = 0): void {
    if (this.closed || !this.options.auto) return;
    if (this.scheduled) {
      // A retry replaces a start pending as an immediate.
      if (afterMs === 0 || this.pendingStart === undefined) return;
      this.cancelPendingStart();
    }
    if (!this.cycleDue()) return;
    this.scheduled = true;
    const run = () => {
      this.cancelPendingStart();
      if (this.closed || this.collector.busy) return;
      if (!this.cycleDue()) {
        this.resumeHelpers();
        return;
      }
      // A helper thread's piece of work in progress: again in a millisecond (it takes no other meanwhile).
      if (this.helpersDefer()) this.scheduleIfDue(HELPER_RETRY_MS);
      else this.startCycle('allocation', false);
    };
    if (afterMs > 0) {
      setTimeout(run, afterMs).unref();
    } else {
      this.pendingStart = setImmediate(run).unref();
      this.pendingBackstop = setTimeout(run, START_BACKSTOP_MS).unref();
    }
  }

  /** Drops a start pending as an immediate and its backstop (one of them may be the caller). */
  private cancelPendingStart(): void {
    this.scheduled = false;
    if (this.pendingStart !== undefined) clearImmediate(this.pendingStart);
    if (this.pendingBackstop !== undefined) clearTimeout(this.pendingBackstop);
    this.pendingStart = undefined;
    this.pendingBackstop = undefined;
  }

  /** The pacer's trigger was reached, or an allocation failed at maxHeap since the last cycle started. */
  private cycleDue(): boolean {
    return this.account.allocationFailed || this.policy.shouldCollect(this.account.allocatedSinceCycle);
  }

  stats(): HeapStats {
    this.ensureOpen();
    const t = this.account;
    // Exact: without the cached slots counted but not handed out yet.
    const out = this.allocator.outstanding();
    return {
      mode: this.options.mode,
      maxHeap: this.options.maxHeap,
      cycles: t.cycles,
      abortedCycles: t.aborted,
      fallbackCycles: t.fallback,
      inProcessCycles: t.inProcess,
      heapBytes: this.allocator.heapBytes,
      liveBytes: t.liveBytes - out.bytes,
      objects: t.objects - out.objects,
      roots: this.roots.live,
      allocatedBytesTotal: t.allocatedTotal - out.bytes,
      freedBytesTotal: t.freedTotal,
      returnedBytesTotal: t.returnedTotal,
      maxPauseUs: t.maxPauseUs,
      totalPauseUs: t.pauseUs,
      totalMarkMs: t.markMs,
      totalSweepMs: t.sweepMs,
      phase: this.collector.phase,
      allocatedSinceCycle: t.allocatedSinceCycle - out.bytes,
      nextTriggerBytes: this.policy.nextTriggerBytes,
    };
  }

  /**
   * Kills and reaps a child in flight, stops sweeping, unmaps the arena.
   * Finalization callbacks already due (their objects were freed by a
   * completed sweep) run first, while the heap is still open, so a callback
   * may still read the heap; entries of objects no completed sweep freed are
   * dropped with the heap (a sweep cut short by close() frees nothing more).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.finalizerImmediate) clearImmediate(this.finalizerImmediate);
    this.finalizerImmediate = undefined;
    this.runDueFinalizers();
    if (this.closed) return;  // a callback closed the heap
    this.closed = true;
    this.takenFinalizers = [];
    for (const r of this.finalizers) dropRegistryEntries(r);
    this.topGranule = 0;
    this.allocator.close();
    this.collector.close();
    // The views go now, before anything awaits: detached, they read as
    // empty, so every accessor's fast check fails and diagnose() throws
    // HeapClosedError (the fast checks look at the allocation bits, not at
    // `closed` or `topGranule`: src/api/accessors.ts). Sweeper threads
    // attach to the mappings themselves, which stay until the last one
    // detaches; close() still resolves only once their tasks have ended.
    this.addon.destroyHeap(this.regions);
    if (this.pool) await this.pool.close();
  }

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
