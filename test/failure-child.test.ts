/**
 * Failure model, part 1: the child dies, hangs or lies (issue 4; docs/design.md,
 * invariant 3, "all or nothing").
 *
 * Every fault is committed for real by the forked child (faultInjectionForTesting,
 * native/child.cc's Fault enum) and, for each one, this file pins:
 *
 *   - collect() rejects with CycleAbortedError and the documented `reason`;
 *   - one 'abort' event with the same error, stats().abortedCycles + 1;
 *   - NOTHING is freed: stats().objects is unchanged, every garbage object of
 *     the faulted cycle is still a valid object, the rooted graph's content
 *     checksums all hold;
 *   - the next cycle succeeds and frees exactly the garbage (so the aborted
 *     cycle left no stray mark bit behind);
 *   - the child is reaped (no zombie child of this process) and no descriptor
 *     leaked (/proc/self/fd counted around the operation);
 *   - the watchdog: a hung or stalled child is killed after childTimeoutMs;
 *   - policy: after maxConsecutiveAborts aborted fork cycles in a row the next
 *     cycle runs stop-the-world (stats.fallback true), then forking resumes.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CycleAbortedError, type AbortReason, type FaultKind, type Heap } from '../src/index.js';
import { ChildSession } from '../src/collector/child-session.js';
import { heapInternals } from '../src/internal.js';
import {
  childrenOf, closeHeapsAfterEach, describeError, isFreed, makeHeap, procStat, withTimeout,
  type CycleStats, type HeapOptions, type Ref,
} from './helpers/common.js';

closeHeapsAfterEach();

// ---------------------------------------------------------------------------
// A rooted world whose content can be verified, plus garbage whose survival
// can be checked object by object.

interface World {
  heap: Heap;
  /** Throws unless every rooted record still holds exactly what was written. */
  check(): void;
  /** Unrooted objects made since the last successful cycle. */
  garbage: Ref[];
  /** Allocates `units` garbage units (2 objects each; some point into the live graph). */
  makeGarbage(units: number): void;
}

function recBytes(i: number): Uint8Array {
  const b = new Uint8Array(8 + (i % 53));
  for (let j = 0; j < b.length; j++) b[j] = (i * 31 + j * 7 + 3) & 255;
  return b;
}

/** `records` rooted records (Rec + Bytes, a String every 8th) with `garbagePer` garbage units interleaved. */
function buildWorld(heap: Heap, records: number, garbagePer = 1): World {
  const Rec = heap.defineStruct('Rec', { next: 'ref', data: 'ref', name: 'ref', id: 'u32', val: 'f64' });
  const top = heap.arrays.alloc(records);
  const root = heap.root(top);
  const garbage: Ref[] = [];
  const junk = (toward: Ref): void => {
    const d = heap.bytes.alloc(24);
    const g = Rec.alloc({ next: toward, data: d, id: 0xdead, val: -1 });
    garbage.push(g, d);
  };
  let prev = 0;
  for (let i = 0; i < records; i++) {
    const data = heap.bytes.alloc(recBytes(i));
    const name = i % 8 === 0 ? heap.strings.alloc(`récord ${i} ✓`) : 0;
    const r = Rec.alloc({ next: prev, data, name, id: i, val: i * 1.5 + 0.25 });
    heap.arrays.set(top, i, r);
    prev = r;
    for (let k = 0; k < garbagePer; k++) junk(r);
  }
  return {
    heap,
    garbage,
    makeGarbage(units: number): void {
      const t = root.get();
      const n = heap.arrays.length(t);
      for (let k = 0; k < units; k++) junk(heap.arrays.get(t, (k * 7919) % n));
    },
    check(): void {
      const t = root.get();
      let prevRef = 0;
      for (let i = 0; i < records; i++) {
        const r = heap.arrays.get(t, i);
        if (Rec.get.id(r) !== i || Rec.get.val(r) !== i * 1.5 + 0.25 || Rec.get.next(r) !== prevRef) {
          throw new Error(`record ${i} changed: id ${Rec.get.id(r)} val ${Rec.get.val(r)}`);
        }
        const want = recBytes(i);
        const got = heap.bytes.view(Rec.get.data(r));
        if (got.length !== want.length || !got.every((v, j) => v === want[j])) throw new Error(`bytes of record ${i} changed`);
        const nameRef = Rec.get.name(r);
        if (i % 8 === 0 && heap.strings.read(nameRef) !== `récord ${i} ✓`) throw new Error(`name of record ${i} changed`);
        prevRef = r;
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Processes and descriptors.

function zombies(): string[] {
  return childrenOf().filter((c) => c.state === 'Z').map((c) => `pid ${c.pid}`);
}

function fds(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try { out.push(`${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`); } catch { /* the readdir's own fd */ }
  }
  return out;
}

function fdDiff(before: string[], after: string[]): string {
  const b = new Set(before);
  return after.filter((x) => !b.has(x)).join(', ');
}

/** True if pid is still a child of this process (running or an unreaped zombie). */
function stillOurs(pid: number): boolean {
  const st = procStat(pid);
  return st !== null && st.ppid === process.pid;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return undefined;
}

/** A heap whose fault fires only while `fault.on` is true. */
function faultyHeap(kind: FaultKind, arg: number | undefined, extra: HeapOptions = {}): { heap: Heap; fault: { on: boolean } } {
  const fault = { on: false };
  const heap = makeHeap({
    sweepThreads: 0,
    maxConsecutiveAborts: 1000,
    ...extra,
    faultInjectionForTesting: { kind, arg, cycles: () => fault.on },
  });
  return { heap, fault };
}

/**
 * The whole protocol of one failure: world, warm-up cycle, faulted cycle (must
 * abort with `reason`, free nothing, leave nothing), recovery cycle (frees
 * exactly the garbage). Returns the faulted cycle's error and elapsed time.
 */
async function failOnce(
  kind: FaultKind, reason: AbortReason,
  o: { arg?: number; heap?: HeapOptions; records?: number } = {},
): Promise<{ error: CycleAbortedError; ms: number; pid: number }> {
  const { heap, fault } = faultyHeap(kind, o.arg, o.heap);
  const world = buildWorld(heap, o.records ?? 2000);
  const aborts: CycleAbortedError[] = [];
  heap.on('abort', (e) => aborts.push(e));
  let pid = 0;
  heap.on('fork', (e) => { pid = e.pid; });

  // Warm-up: a good cycle frees the first garbage; new garbage for the faulted one.
  const warm = await withTimeout(heap.collect(), 20_000, 'warm-up cycle');
  expect(warm.objectsFreed).toBe(world.garbage.length);
  world.garbage.length = 0;
  world.makeGarbage(500);
  const garbage = [...world.garbage];
  const objects = heap.stats().objects;
  const abortedBefore = heap.stats().abortedCycles;
  const fdsBefore = fds();

  fault.on = true;
  const t0 = performance.now();
  const e = await withTimeout(rejection(heap.collect()), 30_000, `collect() with fault ${kind}`);
  const ms = performance.now() - t0;
  fault.on = false;

  expect(e, `${kind}: ${describeError(e)}`).toBeInstanceOf(CycleAbortedError);
  const error = e as CycleAbortedError;
  expect(error.code).toBe('ERR_CYCLE_ABORTED');
  expect(error.reason, `${kind}: ${error.message}`).toBe(reason);
  expect(aborts, 'exactly one abort event, carrying the same error').toEqual([error]);
  expect(heap.stats().abortedCycles).toBe(abortedBefore + 1);
  expect(heap.stats().phase).toBe('idle');
  // Nothing freed.
  expect(heap.stats().objects, `${kind}: objects after the aborted cycle`).toBe(objects);
  const freed = garbage.filter((g) => isFreed(heap, g));
  expect(freed.length, `${kind}: garbage objects freed by an aborted cycle`).toBe(0);
  world.check();
  // The child is gone: reaped, not a zombie.
  expect(pid).toBeGreaterThan(0);
  expect(stillOurs(pid), `${kind}: child ${pid} ${JSON.stringify(procStat(pid))}`).toBe(false);
  expect(zombies()).toEqual([]);

  // The next cycle succeeds and frees exactly the garbage.
  const next = await withTimeout(heap.collect(), 20_000, 'recovery cycle');
  expect(next.mode).toBe('fork');
  expect(next.fallback).toBe(false);
  expect(next.childPid).toBeGreaterThan(0);
  expect(next.objectsFreed, `${kind}: recovery cycle frees exactly the garbage`).toBe(garbage.length);
  expect(heap.stats().objects).toBe(objects - garbage.length);
  world.check();
  expect(zombies()).toEqual([]);
  const fdsAfter = fds();
  expect(fdsAfter.length, `${kind}: descriptors leaked: ${fdDiff(fdsBefore, fdsAfter)}`).toBeLessThanOrEqual(fdsBefore.length);
  return { error, ms, pid };
}

// ---------------------------------------------------------------------------

describe('a child that dies or lies: the cycle aborts with its reason, nothing is freed, nothing is left', () => {
  const table: [FaultKind, AbortReason, string][] = [
    ['exit-before-mark', 'CHILD_EXIT', 'exits 1 before marking: the stream is empty, the exit status speaks first'],
    ['truncate', 'STREAM_SHORT', 'exits 0 after half the chunks, no trailer'],
    ['corrupt-chunk', 'BAD_CHECKSUM', 'flips a payload bit after checksumming a chunk'],
    ['wrong-cycle', 'WRONG_CYCLE', 'sends a header with another cycle id'],
    ['zombie-mark', 'ZOMBIE_MARK', 'a self-consistent stream that marks a granule holding no object'],
    ['bad-trailer', 'BAD_CHECKSUM', 'a trailer whose whole-stream checksum is off by one'],
    ['exit-nonzero', 'CHILD_EXIT', 'a complete, valid stream, then exit(3)'],
    ['signal-after-stream', 'CHILD_SIGNALED', 'a complete, valid stream, then SIGKILL to itself'],
  ];
  for (const [kind, reason, what] of table) {
    it(`${kind} → ${reason} (${what})`, async () => {
      await failOnce(kind, reason);
    }, 30_000);
  }

  // One bitmap chunk covers 32 MiB of arena: with ~40 MiB in use there are 2
  // chunks, so "half the chunks" is a real chunk boundary and the corrupted
  // chunk is not the first.
  it('multi-chunk stream: truncate → STREAM_SHORT, corrupt-chunk → BAD_CHECKSUM (the chunk after a good one)', async () => {
    for (const [kind, reason] of [['truncate', 'STREAM_SHORT'], ['corrupt-chunk', 'BAD_CHECKSUM']] as const) {
      const { heap, fault } = faultyHeap(kind, undefined, { maxHeap: '256MiB' });
      const world = buildWorld(heap, 2000);
      const top = heap.arrays.alloc(40);
      heap.root(top);
      for (let i = 0; i < 40; i++) heap.arrays.set(top, i, heap.bytes.alloc(1 << 20));
      const warm = await withTimeout(heap.collect(), 20_000, 'warm-up');
      expect(warm.bitmapBytes, 'the bitmap spans more than one 64 KiB chunk').toBeGreaterThan(64 * 1024);
      world.garbage.length = 0;
      world.makeGarbage(300);
      const garbage = [...world.garbage.splice(0)];
      const objects = heap.stats().objects;
      fault.on = true;
      const e = await withTimeout(rejection(heap.collect()), 20_000, kind);
      fault.on = false;
      expect(e, describeError(e)).toBeInstanceOf(CycleAbortedError);
      expect((e as CycleAbortedError).reason, (e as Error).message).toBe(reason);
      expect(heap.stats().objects).toBe(objects);
      expect(garbage.filter((g) => isFreed(heap, g))).toEqual([]);
      world.check();
      const next = await withTimeout(heap.collect(), 20_000, 'recovery');
      expect(next.objectsFreed).toBe(garbage.length);
      world.check();
      expect(zombies()).toEqual([]);
      await heap.close();
    }
  }, 60_000);

  it('CycleAbortedError names the cycle and says nothing was freed', async () => {
    const { error } = await failOnce('wrong-cycle', 'WRONG_CYCLE', { records: 200 });
    expect(error.cycleId).toBe(2); // cycle 1 was the warm-up
    expect(error.message).toMatch(/nothing was freed/);
    expect(error.message).toMatch(/WRONG_CYCLE/);
  }, 30_000);
});

describe('the watchdog kills a child that hangs or stalls', () => {
  it('hang (never writes, never exits) → WATCHDOG after childTimeoutMs, child killed and reaped', async () => {
    const { ms, pid } = await failOnce('hang', 'WATCHDOG', { heap: { childTimeoutMs: 300 } });
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms, 'the watchdog fired late').toBeLessThan(3000);
    expect(procStat(pid), `hung child ${pid} still exists`).toBeNull();
  }, 30_000);

  it('a child that stalls mid-stream longer than the watchdog → WATCHDOG (the chunks it sent are dropped)', async () => {
    const { ms } = await failOnce('stall-mid-stream', 'WATCHDOG', { arg: 5000, heap: { childTimeoutMs: 400 } });
    expect(ms).toBeLessThan(3000);
  }, 30_000);

  it('a child that dawdles before marking longer than the watchdog → WATCHDOG', async () => {
    const { ms } = await failOnce('delay-before-mark', 'WATCHDOG', { arg: 5000, heap: { childTimeoutMs: 400 } });
    expect(ms).toBeLessThan(3000);
  }, 30_000);

  it('a slow child within the watchdog is not a failure: the cycle completes', async () => {
    const { heap, fault } = faultyHeap('delay-before-mark', 300, { childTimeoutMs: 5000 });
    const world = buildWorld(heap, 500);
    fault.on = true;
    const c = await withTimeout(heap.collect(), 20_000, 'slow cycle');
    expect(c.childMs).toBeGreaterThanOrEqual(290);
    expect(c.objectsFreed).toBe(world.garbage.length);
    world.check();
  }, 30_000);

  it('the default watchdog scales with the heap in use (10 s + 20 ms per MiB)', async () => {
    const heap = makeHeap({ sweepThreads: 0 });
    buildWorld(heap, 100);
    const policy = heapInternals(heap).policy;
    expect(policy.childTimeoutMs(0)).toBe(10_000);
    expect(policy.childTimeoutMs(100 * 2 ** 20)).toBe(12_000);
    const fixed = heapInternals(makeHeap({ childTimeoutMs: 250 }));
    expect(fixed.policy.childTimeoutMs(2 ** 30)).toBe(250);
  }, 30_000);
});

describe('policy: after maxConsecutiveAborts aborted fork cycles, the next one runs stop-the-world', () => {
  it('3 aborts (default) → a stw cycle with stats.fallback true that frees the garbage → forking resumes', async () => {
    const fault = { on: true };
    const heap = makeHeap({ sweepThreads: 0, faultInjectionForTesting: { kind: 'exit-nonzero', cycles: () => fault.on } });
    const world = buildWorld(heap, 1000);
    const garbage = world.garbage.length;
    const objects = heap.stats().objects;
    const reasons: string[] = [];
    for (let i = 0; i < 3; i++) {
      const e = await withTimeout(rejection(heap.collect()), 20_000, `abort ${i}`);
      expect(e, describeError(e)).toBeInstanceOf(CycleAbortedError);
      reasons.push((e as CycleAbortedError).reason);
      expect(heap.stats().objects).toBe(objects);
    }
    expect(reasons).toEqual(['CHILD_EXIT', 'CHILD_EXIT', 'CHILD_EXIT']);
    world.check();
    // The 4th cycle: the fault is still armed, but no child is forked.
    const before = new Set(childrenOf().map((c) => c.pid));
    const fb: CycleStats = await withTimeout(heap.collect(), 20_000, 'stw fallback cycle');
    expect(fb.fallback).toBe(true);
    expect(fb.childPid).toBe(0);
    expect(fb.objectsFreed).toBe(garbage);
    expect(childrenOf().filter((c) => !before.has(c.pid))).toEqual([]);
    world.check();
    expect(heap.stats().abortedCycles).toBe(3);
    // The stw cycle completed, so the count starts over: the next cycle forks (and aborts again).
    const again = await withTimeout(rejection(heap.collect()), 20_000, 'fork again');
    expect((again as CycleAbortedError).reason).toBe('CHILD_EXIT');
    fault.on = false;
    const ok = await withTimeout(heap.collect(), 20_000, 'fork, no fault');
    expect(ok.fallback).toBe(false);
    expect(ok.childPid).toBeGreaterThan(0);
    world.check();
    expect(zombies()).toEqual([]);
  }, 60_000);

  it('maxConsecutiveAborts: 1 → every other cycle runs stw while the child keeps failing', async () => {
    const heap = makeHeap({ sweepThreads: 0, maxConsecutiveAborts: 1, faultInjectionForTesting: { kind: 'truncate' } });
    const world = buildWorld(heap, 300);
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) {
      world.makeGarbage(50);
      try {
        const c = await withTimeout(heap.collect(), 20_000, `cycle ${i}`);
        outcomes.push(c.fallback ? 'stw' : 'fork');
      } catch (e) {
        outcomes.push((e as CycleAbortedError).reason ?? describeError(e));
      }
      world.check();
    }
    expect(outcomes).toEqual(['STREAM_SHORT', 'stw', 'STREAM_SHORT', 'stw', 'STREAM_SHORT', 'stw']);
    expect(heap.stats().fallbackCycles).toBe(3);
  }, 60_000);
});

describe('a failed cycle does not disturb allocation during it', () => {
  it('objects allocated while a failing child runs survive the abort and the next cycle (allocate black, then cleared)', async () => {
    const { heap, fault } = faultyHeap('stall-mid-stream', 200);
    const world = buildWorld(heap, 1000);
    await heap.collect();
    world.garbage.length = 0;
    const keep = heap.arrays.alloc(100);
    const root = heap.root(keep);
    fault.on = true;
    let forked = 0;
    heap.once('fork', (e) => { forked = e.pid; setTimeout(() => { try { process.kill(e.pid, 'SIGKILL'); } catch { /* gone */ } }, 100); });
    const p = rejection(heap.collect());
    // Allocate during the cycle: half rooted, half garbage.
    for (let i = 0; i < 100; i++) {
      heap.arrays.set(root.get(), i, heap.strings.alloc(`during ${i}`));
      world.makeGarbage(1);
    }
    const e = await withTimeout(p, 20_000, 'killed cycle');
    fault.on = false;
    expect(forked).toBeGreaterThan(0);
    expect((e as CycleAbortedError).reason).toBe('CHILD_SIGNALED');
    const garbage = world.garbage.length;
    const c = await withTimeout(heap.collect(), 20_000, 'recovery');
    // Objects allocated black in the aborted cycle are garbage to the next one
    // if unrooted (their black bits were cleared) and live if rooted.
    expect(c.objectsFreed).toBe(garbage);
    for (let i = 0; i < 100; i++) expect(heap.strings.read(heap.arrays.get(root.get(), i))).toBe(`during ${i}`);
    world.check();
  }, 30_000);
});

// Found in the session-15 review of the child: the watchdog was only a timer,
// so a program that never yields kept a hung child for as long as it ran, and
// an allocation at maxHeap gave the child a whole new timeout from then.
describe('the watchdog without the event loop', () => {
  it('a program that only reaches safepoints: the hung child is killed at its deadline (WATCHDOG)', async () => {
    const heap = makeHeap({ auto: false, childTimeoutMs: 300, faultInjectionForTesting: { kind: 'hang', cycles: () => true } });
    const aborted: string[] = [];
    heap.on('abort', (e) => aborted.push(e.reason));
    const done = heap.collect().catch((e: { reason?: string }) => e.reason);
    const t0 = Date.now();
    // Never yields: only safepoints, for at most 5 s.
    while (aborted.length === 0 && Date.now() - t0 < 5000) heap.safepoint();
    const ms = Date.now() - t0;
    expect(aborted).toEqual(['WATCHDOG']);
    expect(ms, 'killed at its deadline, not when the program yields').toBeLessThan(3000);
    expect(await done).toBe('WATCHDOG');
  }, 30_000);

  it('an allocation at maxHeap waits only for what is left of the deadline, counted from the fork', async () => {
    const heap = makeHeap({
      maxHeap: '16MiB', auto: false, hugePages: false, sweepThreads: 0, childTimeoutMs: 1500,
      faultInjectionForTesting: { kind: 'hang', cycles: () => true },
    });
    for (let i = 0; i < 5000; i++) heap.bytes.alloc(2000);  // ~10 MiB of garbage before the fork
    const forked = Date.now();
    const done = heap.collect().catch((e: { reason?: string }) => e.reason);
    while (Date.now() - forked < 1000) { /* the child hangs; the program neither yields nor reaches a safepoint */ }
    let blocked = 0;
    for (let i = 0; i < 4000 && blocked === 0; i++) {  // reaches maxHeap while the child hangs
      const a = Date.now();
      try { heap.bytes.alloc(2000); } catch { /* HeapExhausted once the cycle failed: the heap is full of garbage */ }
      if (Date.now() - a > 100) blocked = Date.now() - a;
    }
    const total = Date.now() - forked;
    expect(await done).toBe('WATCHDOG');
    expect(blocked, 'the rest of the deadline (about 500 ms), not a new 1500').toBeLessThan(1200);
    expect(total).toBeLessThan(2500);
  }, 30_000);
});

// Found in the session-16 review: the deadline was wall-clock time
// (Date.now()), so a clock step killed a healthy child or kept a hung one;
// and a child that had finished in time was declared WATCHDOG when the main
// thread first looked after the deadline, its whole stream in the pipe.
describe('the watchdog judges the child, not when the main thread looks', () => {
  for (const how of ['a safepoint', 'the event loop'] as const) {
    it(`a child that finished in time, read only after its deadline from ${how}: the cycle completes`, async () => {
      const heap = makeHeap({ maxHeap: '16MiB', auto: false, sweepThreads: 0, childTimeoutMs: 300 });
      const T = heap.defineStruct('T', { v: 'i32' });
      for (let i = 0; i < 1000; i++) T.alloc();
      const aborted: string[] = [];
      heap.on('abort', (e) => aborted.push(e.reason));
      const done = heap.collect().then((s) => s.objectsFreed, (e: { reason?: string }) => e.reason);
      // The child marks 1000 objects in a few ms; the program neither yields
      // nor reaches a safepoint until well after the deadline.
      for (const t0 = performance.now(); performance.now() - t0 < 600;);
      if (how === 'a safepoint') heap.safepoint();
      expect(await withTimeout(done, 10_000, 'collect')).toBe(1000);
      expect(aborted).toEqual([]);
    }, 30_000);
  }

  // Found in the session-18 review: past the deadline each read waited 1 ms,
  // so a child whose stream was larger than the pipe (it waits for the
  // reader: over about 128 MiB of heap) was killed as soon as it took more
  // than 1 ms to refill it, and one that had written its whole stream but
  // not yet exited (tearing down a large address space) was killed too.
  // The faults make both waits certain: a 50 ms pause half-way through a
  // stream that fills the pipe before then, and 600 ms between the trailer
  // and the exit.
  for (const how of ['a safepoint', 'the event loop'] as const) {
    it(`a stream larger than the pipe, read only after the deadline from ${how}, that pauses half-way: the cycle completes`, async () => {
      const heap = makeHeap({
        maxHeap: '512MiB', auto: false, sweepThreads: 0, hugePages: false, childTimeoutMs: 500,
        faultInjectionForTesting: { kind: 'stall-mid-stream', arg: 50, cycles: () => true },
      });
      // 360 MiB of heap: a 2.8 MiB bitmap, its half-way point past the pipe's 1 MiB.
      for (let i = 0; i < 6000; i++) heap.bytes.alloc(60_000);
      expect(heap.stats().heapBytes).toBeGreaterThan(340 * 2 ** 20);
      const aborted: string[] = [];
      heap.on('abort', (e) => aborted.push(e.reason));
      const done = heap.collect().then((s) => s.objectsFreed, (e: { reason?: string }) => e.reason);
      for (const t0 = performance.now(); performance.now() - t0 < 900;);  // the child blocks on the full pipe
      if (how === 'a safepoint') heap.safepoint();
      expect(await withTimeout(done, 20_000, 'collect')).toBe(6000);
      expect(aborted).toEqual([]);
    }, 60_000);
  }

  it('a child that wrote its whole stream in time and exits late: the cycle completes', async () => {
    const heap = makeHeap({
      maxHeap: '16MiB', auto: false, sweepThreads: 0, childTimeoutMs: 300,
      faultInjectionForTesting: { kind: 'delay-before-exit', arg: 600, cycles: () => true },
    });
    const T = heap.defineStruct('T', { v: 'i32' });
    for (let i = 0; i < 1000; i++) T.alloc();
    const done = heap.collect().then((s) => s.objectsFreed, (e: { reason?: string }) => e.reason);
    // The child is asleep after its trailer (until about 600 ms) when the
    // deadline passes (300 ms) and the program first looks (350 ms).
    for (const t0 = performance.now(); performance.now() - t0 < 350;);
    heap.safepoint();
    expect(await withTimeout(done, 10_000, 'collect')).toBe(1000);
  }, 30_000);

  // Found in the session-18 review: with a wait per late read and none in
  // all, a child whose chunks came less than 250 ms apart was read to its
  // end however long it took, the main thread blocked throughout (9 s in
  // the reviewer's run). The rest of the stream gets a second in all (and
  // a second per 8 MiB still to come). Since session 19 the main thread is
  // not held meanwhile: a safepoint past the deadline reads what the pipe
  // holds and returns; the timer judges the child.
  it('a child that trickles its stream past the deadline is killed a second after the program looks (WATCHDOG), the safepoint not held', async () => {
    const heap = makeHeap({
      maxHeap: '256MiB', auto: false, sweepThreads: 0, hugePages: false, childTimeoutMs: 300,
      faultInjectionForTesting: { kind: 'slow-stream', arg: 150, cycles: () => true },
    });
    // 150 MiB: a 1.2 MiB bitmap, 19 chunks 150 ms apart (2.7 s).
    for (let i = 0; i < 2500; i++) heap.bytes.alloc(60_000);
    let abortedAt = 0;
    heap.on('abort', () => { abortedAt = performance.now(); });
    const done = heap.collect().then(() => 'completed', (e: { reason?: string }) => e.reason);
    for (const t0 = performance.now(); performance.now() - t0 < 350;);
    const t0 = performance.now();
    heap.safepoint();
    const blocked = performance.now() - t0;
    expect(await withTimeout(done, 10_000, 'collect')).toBe('WATCHDOG');
    expect(blocked, 'the safepoint reads what is there and returns (it used to wait for the rest, about 1.2 s)').toBeLessThan(300);
    expect(abortedAt - t0, 'the rest of the stream gets about 1.15 s, not the 2.4 s its chunks would take').toBeLessThan(2200);
  }, 30_000);

  // Found in the session-18 notes, mended in session 19: at the deadline the
  // timer read the rest of a late child's stream synchronously (up to 250 ms
  // per read, a second and more in all) or waited for its exit, the event
  // loop blocked throughout. Now the timer looks and is armed again. Each
  // case listens to the heap's stall events (every wait of the main thread
  // on the collector): none may be long.
  // (The trickling child's stream is 38 chunks 200 ms apart, 7.6 s, its late
  // budget 1.3 s: time in which nobody looked is not charged to it, so on a
  // loaded machine, timers late by seconds let 19 chunks of 2.85 s through
  // once, 2026-12-02, beside two other test files, and the whole stream,
  // then 150 ms apart, once more in a later full suite: looks a second
  // apart charge 250 ms of each second, so a 1.3 s budget lets about 5 s of
  // chunks through; 7.6 s of them need looks about two seconds apart.)
  const lateCases = [
    { what: 'a child that trickles its stream', fault: { kind: 'slow-stream', arg: 200 }, objects: 5000, expect: 'WATCHDOG', maxHeap: '512MiB' },
    { what: 'a hung child', fault: { kind: 'hang', arg: 0 }, objects: 100, expect: 'WATCHDOG' },
    { what: 'a child that wrote its stream in time and exits late', fault: { kind: 'delay-before-exit', arg: 600 }, objects: 100, expect: 100 },
    { what: 'a large stream, slower than a second but steady', fault: { kind: 'slow-stream', arg: 10 }, objects: 17_500, expect: 17_500, maxHeap: '1280MiB' },
  ] as const;
  for (const k of lateCases) {
    it(`the timer judges ${k.what} past its deadline without holding the event loop: ${k.expect === 'WATCHDOG' ? 'WATCHDOG' : 'the cycle completes'}`, async () => {
      const heap = makeHeap({
        maxHeap: 'maxHeap' in k ? k.maxHeap : '256MiB', auto: false, sweepThreads: 0, hugePages: false, childTimeoutMs: 300,
        faultInjectionForTesting: { kind: k.fault.kind, arg: k.fault.arg, cycles: () => true },
      });
      for (let i = 0; i < k.objects; i++) heap.bytes.alloc(60_000);
      let longest = 0;
      let kind = '';
      heap.on('stall', (e) => {
        if (e.endMs - e.startMs > longest) {
          longest = e.endMs - e.startMs;
          kind = e.kind;
        }
      });
      const t0 = performance.now();
      // The hung child's case timed out (collect() unsettled after 20 s) in
      // 3 of about 120 runs of this file on one VM, in one 12-minute window
      // and once in a full suite, and not since; what the cycle had done by
      // then goes into the failure's message, for the next one to read.
      const seen: string[] = [];
      let childPid = 0;
      for (const ev of ['fork', 'childDone', 'stream', 'mark', 'abort'] as const) {
        heap.on(ev, (e: unknown) => {
          if (ev === 'fork') childPid = (e as { pid: number }).pid;
          seen.push(`${ev} at ${(performance.now() - t0).toFixed(0)} ms`);
        });
      }
      // When the watchdog looked at the late child, and how much of its
      // stream had arrived: the trickling child's whole stream got through
      // twice in full suites (WATCHDOG expected), which needs looks a
      // second and more apart; the failure's message says what they were.
      const looks: string[] = [];
      const collector = heapInternals(heap).collector as unknown as { judgeLate(c: { bytesArrived: number }): void };
      const judge = collector.judgeLate.bind(collector);
      collector.judgeLate = (c) => {
        looks.push(`${(performance.now() - t0).toFixed(0)} ms: ${c.bytesArrived} B`);
        judge(c);
      };
      const done = heap.collect().then((s) => s.objectsFreed, (e: { reason?: string }) => e.reason);
      const unsettled = () => {
        let child = 'none';
        try {
          if (childPid > 0) child = `${childPid}: ${readFileSync(`/proc/${childPid}/stat`, 'utf8').split(' ').slice(2, 3)}`;
        } catch (e) {
          child = `${childPid}: ${(e as Error).message}`;
        }
        return `collect; phase ${heap.stats().phase}; events: ${seen.join(', ') || 'none'}; child ${child}`;
      };
      expect(await withTimeout(done, 20_000, unsettled), `looks at the late child: ${looks.join('; ') || 'none'}; events: ${seen.join(', ')}`).toBe(k.expect);
      expect(longest, `the longest wait on the collector (${kind})`).toBeLessThan(150);
    }, 60_000);
  }

  // Found in review of the above: timers run on libuv's whole-millisecond
  // clock, so the watchdog's timer may fire up to a millisecond before
  // deadlineMs (a performance.now() value); then nothing judged the child
  // and nothing looked again: a hung child lived on and collect() never
  // settled (27 of 150 tries with a 15 ms timeout). Made certain here by
  // moving the deadline 2 ms past the timer.
  it('a watchdog timer that fires just before the deadline looks again at it: the hung child is killed (WATCHDOG)', async () => {
    const open = ChildSession.prototype.open;
    ChildSession.prototype.open = function (this: ChildSession, ...args: Parameters<typeof open>) {
      const socket = open.apply(this, args);
      this.deadlineMs += 2;
      return socket;
    };
    try {
      const heap = makeHeap({ maxHeap: '16MiB', auto: false, sweepThreads: 0, childTimeoutMs: 300,
        faultInjectionForTesting: { kind: 'hang', cycles: () => true } });
      heap.bytes.alloc(100);
      const done = heap.collect().then(() => 'completed', (e: { reason?: string }) => e.reason);
      // What failed before the fix was collect() never settling; 20 s, as
      // the cases above: 5 s ran out once in a full suite on a loaded host,
      // the test passing alone every time.
      expect(await withTimeout(done, 20_000, 'collect')).toBe('WATCHDOG');
    } finally {
      ChildSession.prototype.open = open;
    }
  }, 30_000);

  // Found in the same review: the late budget (1 s + 1 s per 8 MiB to come)
  // ran on while the program was busy and nobody read the pipe, so a child
  // that had finished long before its deadline, its stream larger than the
  // pipe, was killed when the program worked a second between two looks.
  for (const how of ['a safepoint', 'the event loop'] as const) {
    it(`a finished child read after its deadline from ${how}, the program busy for seconds between looks: the cycle completes`, async () => {
      const heap = makeHeap({ maxHeap: '512MiB', auto: false, sweepThreads: 0, hugePages: false, childTimeoutMs: 500 });
      for (let i = 0; i < 6000; i++) heap.bytes.alloc(60_000);  // a 2.8 MiB bitmap: the child waits on the full pipe
      const aborted: string[] = [];
      heap.on('abort', (e) => aborted.push(e.reason));
      const done = heap.collect().then((st) => st.objectsFreed, (e: { reason?: string }) => e.reason);
      for (const t0 = performance.now(); performance.now() - t0 < 900;);
      for (let k = 0; k < 3; k++) {  // a look, then 1.5 s of work, three times
        if (how === 'a safepoint') heap.safepoint();
        else await new Promise((r) => setImmediate(r));
        for (const t0 = performance.now(); performance.now() - t0 < 1500;);
      }
      expect(await withTimeout(done, 20_000, 'collect')).toBe(6000);
      expect(aborted).toEqual([]);
    }, 60_000);
  }

  // And: an allocation at maxHeap gave a late child a fresh second to exit,
  // although the timer had begun its grace already (the bounds are shared).
  it('an allocation at maxHeap waits only for the rest of an exit grace the timer began (WATCHDOG)', async () => {
    const heap = makeHeap({
      maxHeap: '16MiB', auto: false, sweepThreads: 0, hugePages: false, childTimeoutMs: 300,
      faultInjectionForTesting: { kind: 'delay-before-exit', arg: 5000, cycles: () => true },
    });
    for (let i = 0; i < 5000; i++) heap.bytes.alloc(2000);  // ~10 MiB of garbage
    let abortedAt = 0;
    heap.on('abort', () => { abortedAt = performance.now(); });
    const t0 = performance.now();
    const done = heap.collect().then(() => 'completed', (e: { reason?: string }) => e.reason);
    // The timer looks at 300 ms and finds the whole stream: the child has 1 s to exit.
    await new Promise((r) => setTimeout(r, 700));
    let blocked = 0;
    for (let i = 0; i < 4000 && abortedAt === 0; i++) {  // reaches maxHeap while the child sleeps
      const a = performance.now();
      try { heap.bytes.alloc(2000); } catch { /* HeapExhausted once the cycle failed */ }
      blocked = Math.max(blocked, performance.now() - a);
    }
    expect(await withTimeout(done, 10_000, 'collect')).toBe('WATCHDOG');
    expect(abortedAt - t0, 'killed about 1.3 s after the fork, not 1 s after the allocation came').toBeLessThan(1600);
    expect(blocked).toBeLessThan(900);
  }, 30_000);

  // Found in the third session-18 review: a fixed second for the rest of the
  // stream killed a finished child of a 4 GiB heap whose 32 MiB bitmap took
  // longer to read under load. The budget grows with what is still to come:
  // here 7 MiB in pieces 10 ms apart (about 1.3 s with the sleeps' overshoot),
  // within 1 s + 7/8 s.
  it('a large stream read after the deadline, slower than a second but steady: the cycle completes', async () => {
    const heap = makeHeap({
      maxHeap: '1280MiB', auto: false, sweepThreads: 0, hugePages: false, childTimeoutMs: 300,
      faultInjectionForTesting: { kind: 'slow-stream', arg: 10, cycles: () => true },
    });
    for (let i = 0; i < 17_500; i++) heap.bytes.alloc(60_000);  // 1 GiB: an 8 MiB bitmap, 128 chunks
    const done = heap.collect().then((s) => s.objectsFreed, (e: { reason?: string }) => e.reason);
    for (const t0 = performance.now(); performance.now() - t0 < 350;);  // 1 MiB in the pipe, the child waiting
    heap.safepoint();
    expect(await withTimeout(done, 20_000, 'collect')).toBe(17_500);
  }, 60_000);

  it('a wall-clock step after the fork neither kills a healthy child nor keeps a hung one', async () => {
    const realNow = Date.now;
    try {
      const healthy = makeHeap({ maxHeap: '16MiB', auto: false, sweepThreads: 0, childTimeoutMs: 2000,
        faultInjectionForTesting: { kind: 'delay-before-mark', arg: 50, cycles: () => true } });
      const forward = healthy.collect().then(() => 'completed', (e: { reason?: string }) => e.reason);
      Date.now = () => realNow() + 3_600_000;  // the clock steps an hour forward
      healthy.safepoint();
      Date.now = realNow;
      expect(await withTimeout(forward, 10_000, 'the healthy child')).toBe('completed');

      const hung = makeHeap({ maxHeap: '16MiB', auto: false, sweepThreads: 0, childTimeoutMs: 300,
        faultInjectionForTesting: { kind: 'hang', cycles: () => true } });
      const back = hung.collect().catch((e: { reason?: string }) => e.reason);
      Date.now = () => realNow() - 3_600_000;  // an hour back
      const t0 = performance.now();
      let reason: string | undefined;
      hung.on('abort', (e) => { reason = e.reason; });
      while (reason === undefined && performance.now() - t0 < 5000) hung.safepoint();
      Date.now = realNow;
      expect(reason).toBe('WATCHDOG');
      expect(performance.now() - t0, 'killed at its deadline').toBeLessThan(3000);
      expect(await back).toBe('WATCHDOG');
    } finally {
      Date.now = realNow;
    }
  }, 30_000);
});
