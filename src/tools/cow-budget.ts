// Copy-on-write: a budget of copied bytes per cycle, and the parent's view of
// its own arena pages (shared with the child, copied, new since the fork).
//
// While a child lives, every arena page the parent writes for the first time
// since the fork is copied by the kernel: the parent gets a private copy and
// the child keeps the original. That copy is the price of marking in a child
// (the LKML discussion this project started from asked for "a limit on the
// number of pages which become writable"). The child counts those pages at
// the end of its life from its own /proc/self/pagemap (bit 56, exclusively
// mapped: see native/wire.h) and reports them as ChildDoneEvent.cowBytes.
//
// watchCowBudget(heap, { budgetBytes }) is the policy hook on that figure:
//
//   const budget = watchCowBudget(heap, { budgetBytes: '64MiB', onExceeded: (e) => log(e) });
//   budget.on('exceeded', (e) => ...);      // the same event; also on diagnostics_channel
//   budget.close();
//
// By default it judges each cycle when its child is done (the childDone
// event): exact, free, but after the fact. With `live: { intervalMs }` it also
// watches while the child runs, from the parent's side:
//
//   at cycleStart (just before fork): which arena pages are present;
//   every intervalMs while the child marks: which of those are now mapped by
//     the parent alone (pagemap bit 56): each one was shared with the child
//     at the fork, so the parent copied it;
//
// and `abortCycle: true` then kills the child when the budget is passed, so
// that copying stops: the cycle aborts (CHILD_SIGNALED), nothing is freed,
// and the heap's policy goes on (after maxConsecutiveAborts it collects
// stop-the-world, which copies nothing). The live figure costs one read of
// 8 bytes of pagemap per 4 KiB arena page per poll (a 256 MiB heap: 512 KiB,
// well under a millisecond) and one such read on the main thread before each
// fork; it is an estimate where the child's is exact (a page the parent
// touched for the first time during the cycle is "new", not copied; a page
// shared with a second heap's child too is not exclusive for anyone, see
// docs/how-it-works.md "Nested forks").
//
// The parent-side map reads /proc/self/pagemap at the arena's address, which
// the addon reports (regions.arenaAddress).
import dc from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import { closeSync, openSync, readSync } from 'node:fs';
import type { ChildDoneEvent, CycleStartEvent, ForkEvent } from '../index.js';
import type { Heap } from '../index.js';
import { GRANULE_BYTES, heapId, heapInternals, pageSize } from '../internal.js';
import { parseBytes } from '../index.js';
import { Heap as HeapClass } from '../api/heap.js';
import { InvalidArgumentError, InvalidOptionError, describe } from '../api/errors.js';

/** The system's page size, as the addon reports it (4 KiB on x86-64). */
export function pageBytes(heap: Heap): number {
  return pageSize(heap);
}

/** diagnostics_channel on which every CowBudgetEvent is published too. */
export const COW_BUDGET_CHANNEL = 'forkgc:cow:budget-exceeded';
const channel = dc.channel(COW_BUDGET_CHANNEL);

export interface CowBudgetEvent {
  heapId: number;
  cycleId: number;
  /** The child of that cycle. */
  pid: number;
  /** Bytes the parent copied: the child's exact count ('child'), or the parent's live estimate ('live'). */
  cowBytes: number;
  cowPages: number;
  budgetBytes: number;
  source: 'child' | 'live';
  /** Whether the child was killed for it (live mode with abortCycle). */
  killedChild: boolean;
  timeMs: number;
}

export interface CowBudgetOptions {
  /** Copied bytes per cycle allowed: a number or a size string ('64MiB'). */
  budgetBytes: number | string;
  /** Called (synchronously) each time a cycle passes the budget; also emitted as 'exceeded'. */
  onExceeded?: (event: CowBudgetEvent) => void;
  /** Also watch while the child runs (parent-side pagemap). Default: off. */
  live?: { intervalMs?: number; abortCycle?: boolean } | false;
}

type CowBudgetEvents = { exceeded: [CowBudgetEvent] };

/** The hook returned by watchCowBudget(). */
export class CowBudget extends EventEmitter<CowBudgetEvents> {
  readonly budgetBytes: number;
  /** Cycles judged, and how many passed the budget. */
  cycles = 0;
  exceeded = 0;
  /** The last child figure seen (-1 when the child could not read its pagemap). */
  lastCowBytes = 0;
  /** The largest live (parent-side) estimate of the current or last cycle. */
  lastLiveCowBytes = 0;
  private closed = false;
  private readonly unsubscribe: () => void;

  constructor(heap: Heap, options: CowBudgetOptions) {
    super();
    // Checked whole, with typed errors: a truthy non-boolean abortCycle
    // would kill children the program did not mean to kill.
    if (!(heap instanceof HeapClass)) throw new InvalidArgumentError(`watchCowBudget: expected a Heap, got ${describe(heap)}`);
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(`watchCowBudget: options must be an object, got ${describe(options)}`);
    // Each option read once: what was checked is what is used (a getter
    // answering differently the second time got past the checks; found in review).
    const { budgetBytes, onExceeded, live: l } = options;
    this.budgetBytes = parseBytes('budgetBytes', budgetBytes);
    if (onExceeded !== undefined && typeof onExceeded !== 'function') {
      throw new InvalidOptionError(`watchCowBudget: onExceeded must be a function, got ${describe(onExceeded)}`);
    }
    if (onExceeded) this.on('exceeded', onExceeded);
    if (l !== undefined && (typeof l !== 'object' || l === null)) throw new InvalidOptionError(`watchCowBudget: live must be an object, got ${describe(l)}`);
    const { intervalMs, abortCycle } = l ?? {};
    if (intervalMs !== undefined && !(typeof intervalMs === 'number' && intervalMs >= 1 && intervalMs <= 2 ** 31 - 1)) {
      throw new InvalidOptionError(`watchCowBudget: live.intervalMs must be a number from 1 to 2^31-1, got ${describe(intervalMs)}`);
    }
    if (abortCycle !== undefined && typeof abortCycle !== 'boolean') {
      throw new InvalidOptionError(`watchCowBudget: live.abortCycle must be true or false, got ${describe(abortCycle)}`);
    }
    const live = l ? { intervalMs: intervalMs ?? 20, abortCycle: abortCycle ?? false } : null;
    const page = pageBytes(heap);
    const reported = new Set<number>();   // cycles already reported (once per cycle)
    let watch: { cycleId: number; pid: number; atFork: PageStates; topPage: number; timer?: NodeJS.Timeout } | null = null;
    let pendingAtFork: { cycleId: number; atFork: PageStates; topPage: number } | null = null;

    const report = (e: Omit<CowBudgetEvent, 'budgetBytes' | 'cowPages' | 'timeMs' | 'heapId'>) => {
      if (reported.has(e.cycleId)) return;
      reported.add(e.cycleId);
      if (reported.size > 64) reported.delete(reported.values().next().value as number);
      this.exceeded++;
      const event: CowBudgetEvent = {
        heapId: heapId(heap), ...e, cowPages: Math.ceil(e.cowBytes / page), budgetBytes: this.budgetBytes,
        timeMs: performance.now(),
      };
      if (channel.hasSubscribers) channel.publish(event);
      this.emit('exceeded', event);
    };
    const stopWatch = () => {
      if (watch?.timer) clearInterval(watch.timer);
      watch = null;
    };

    const onChildDone = (e: ChildDoneEvent) => {
      stopWatch();
      this.cycles++;
      this.lastCowBytes = e.cowBytes;
      if (e.cowBytes > this.budgetBytes) {
        report({ cycleId: e.cycleId, pid: e.pid, cowBytes: e.cowBytes, source: 'child', killedChild: false });
      }
    };
    const onCycleStart = (e: CycleStartEvent) => {
      if (!live || e.mode !== 'fork') return;
      const top = Math.ceil((e.topGranule * GRANULE_BYTES) / page);
      const states = readArenaPages(heap, 0, top);
      pendingAtFork = states ? { cycleId: e.cycleId, atFork: states, topPage: top } : null;
    };
    const onFork = (e: ForkEvent) => {
      if (!live || !pendingAtFork || pendingAtFork.cycleId !== e.cycleId) return;
      stopWatch();
      this.lastLiveCowBytes = 0;
      const w = { cycleId: e.cycleId, pid: e.pid, atFork: pendingAtFork.atFork, topPage: pendingAtFork.topPage } as NonNullable<typeof watch>;
      pendingAtFork = null;
      watch = w;
      w.timer = setInterval(() => {
        if (watch !== w || heap.isClosed) return stopWatch();
        const now = readArenaPages(heap, 0, w.topPage);
        if (!now) return stopWatch();
        const copied = countCopied(w.atFork, now) * page;
        this.lastLiveCowBytes = Math.max(this.lastLiveCowBytes, copied);
        if (copied > this.budgetBytes) {
          let killed = false;
          if (live.abortCycle) {
            // The child has not reported yet (this watch stops at childDone),
            // so it is alive or an unreaped zombie: its pid cannot be reused.
            try { process.kill(w.pid, 'SIGKILL'); killed = true; } catch { /* already gone */ }
          }
          stopWatch();
          report({ cycleId: w.cycleId, pid: w.pid, cowBytes: copied, source: 'live', killedChild: killed });
        }
      }, live.intervalMs);
      w.timer.unref();
    };
    const onAbort = () => stopWatch();

    heap.on('childDone', onChildDone);
    heap.on('cycleStart', onCycleStart);
    heap.on('fork', onFork);
    heap.on('abort', onAbort);
    this.unsubscribe = () => {
      stopWatch();
      heap.off('childDone', onChildDone);
      heap.off('cycleStart', onCycleStart);
      heap.off('fork', onFork);
      heap.off('abort', onAbort);
    };
  }

  /** Stops watching (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
  }
}

/** Calls `onExceeded` (and emits 'exceeded') whenever a cycle's copied bytes pass `budgetBytes`. */
export function watchCowBudget(heap: Heap, options: CowBudgetOptions): CowBudget {
  return new CowBudget(heap, options);
}

// ---- the parent's view of its arena pages ------------------------------------

/** Per page: bit 0 present, bit 1 mapped by this process alone (pagemap bit 56), bit 2 swapped. */
export type PageStates = Uint8Array;
export const PAGE_PRESENT = 1;
export const PAGE_EXCLUSIVE = 2;
export const PAGE_SWAPPED = 4;

/** The arena's virtual address in this process, as the addon reports it. */
export function locateArena(heap: Heap): bigint | null {
  return heapInternals(heap).regions.arenaAddress ?? null;
}

/**
 * The states of arena pages [fromPage, fromPage + count) from
 * /proc/self/pagemap (see PAGE_* bits), or null when they cannot be read.
 */
export function readArenaPages(heap: Heap, fromPage: number, count: number): PageStates | null {
  const base = locateArena(heap);
  if (base === null) return null;
  const PAGE_BYTES = pageBytes(heap);
  const out = new Uint8Array(count);
  let fd: number;
  try {
    fd = openSync('/proc/self/pagemap', 'r');
  } catch {
    return null;
  }
  try {
    const perRead = 16384;
    const buf = Buffer.alloc(perRead * 8);
    const words = new Uint32Array(buf.buffer, buf.byteOffset, perRead * 2);
    const firstPage = Number(base / BigInt(PAGE_BYTES)) + fromPage;
    for (let done = 0; done < count;) {
      const n = Math.min(perRead, count - done);
      const got = readSync(fd, buf, 0, n * 8, (firstPage + done) * 8) / 8;
      if (got <= 0) return null;
      for (let i = 0; i < got; i++) {
        const hi = words[i * 2 + 1];  // little-endian: bits 32..63 of the entry
        out[done + i] = ((hi >>> 31) & 1) * PAGE_PRESENT | ((hi >>> 24) & 1) * PAGE_EXCLUSIVE | ((hi >>> 30) & 1) * PAGE_SWAPPED;
      }
      done += got;
    }
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Pages present at the fork and now mapped by the parent alone: the parent copied them. */
export function countCopied(atFork: PageStates, now: PageStates): number {
  let n = 0;
  const len = Math.min(atFork.length, now.length);
  for (let i = 0; i < len; i++) {
    if ((atFork[i] & PAGE_PRESENT) && (now[i] & (PAGE_PRESENT | PAGE_EXCLUSIVE)) === (PAGE_PRESENT | PAGE_EXCLUSIVE)) n++;
  }
  return n;
}

/** What an arena page is, mid-cycle, from the parent's side. */
export const PageKind = {
  /** Not resident (never touched, released to the OS, or swapped). */
  Absent: 0,
  /** Resident and still shared with the child (the snapshot, uncopied). */
  Shared: 1,
  /** Was shared at the fork; the parent wrote to it, so the kernel copied it. */
  Copied: 2,
  /** Touched for the first time after the fork (or above the snapshot's top): never shared. */
  New: 3,
} as const;
export type PageKind = (typeof PageKind)[keyof typeof PageKind];

export interface CowMap {
  heapId: number;
  cycleId: number;
  childPid: number;
  pageBytes: number;
  /** Pages [0, snapshotPages) are the child's snapshot range (the arena below topGranule at the fork). */
  snapshotPages: number;
  /** One PageKind per arena page in [0, pages.length). */
  pages: Uint8Array;
  counts: { absent: number; shared: number; copied: number; new: number };
  capturedAtMs: number;
}

/**
 * Records, at each cycle's start, which arena pages are present; capture()
 * then classifies every page mid-cycle. Call capture() while the child is
 * alive (phase 'marking'): once it exits every page is the parent's alone.
 */
export class CowMapper {
  private atFork: { cycleId: number; states: PageStates; topPage: number } | null = null;
  private pid = 0;
  private readonly page: number;
  private readonly onStart = (e: CycleStartEvent) => {
    const top = Math.ceil((e.topGranule * GRANULE_BYTES) / this.page);
    const states = readArenaPages(this.heap, 0, top);
    this.atFork = states ? { cycleId: e.cycleId, states, topPage: top } : null;
  };
  private readonly onFork = (e: ForkEvent) => { this.pid = e.pid; };

  constructor(private readonly heap: Heap) {
    if (!(heap instanceof HeapClass)) throw new InvalidArgumentError(`CowMapper: expected a Heap, got ${describe(heap)}`);
    this.page = pageBytes(heap);
    // Find the arena now, not inside the cycle's start.
    locateArena(heap);
    heap.on('cycleStart', this.onStart);
    heap.on('fork', this.onFork);
  }

  /** The map of the cycle in flight, or null (no cycle seen, or pagemap unreadable). */
  capture(): CowMap | null {
    const f = this.atFork;
    if (!f) return null;
    const topPage = Math.max(f.topPage, Math.ceil((heapInternals(this.heap).allocator.topGranule * GRANULE_BYTES) / this.page));
    const now = readArenaPages(this.heap, 0, topPage);
    if (!now) return null;
    const pages = new Uint8Array(topPage);
    const counts = { absent: 0, shared: 0, copied: 0, new: 0 };
    for (let i = 0; i < topPage; i++) {
      const s = now[i];
      let k: PageKind;
      if (!(s & PAGE_PRESENT)) k = PageKind.Absent;
      else if (!(s & PAGE_EXCLUSIVE)) k = PageKind.Shared;
      else if (i < f.topPage && (f.states[i] & PAGE_PRESENT)) k = PageKind.Copied;
      else k = PageKind.New;
      pages[i] = k;
      if (k === PageKind.Absent) counts.absent++;
      else if (k === PageKind.Shared) counts.shared++;
      else if (k === PageKind.Copied) counts.copied++;
      else counts.new++;
    }
    return {
      heapId: heapId(this.heap), cycleId: f.cycleId, childPid: this.pid, pageBytes: this.page,
      snapshotPages: f.topPage, pages, counts, capturedAtMs: performance.now(),
    };
  }

  close(): void {
    this.heap.off('cycleStart', this.onStart);
    this.heap.off('fork', this.onFork);
  }
}
