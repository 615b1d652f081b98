/**
 * Heap growth faulted in ahead of the allocator (HeapOptions.prefaultGrowth;
 * native/growth_prefault.cc, src/memory/growth-prefault.ts).
 *
 *   - a growing heap's thread faults in the arena just above the top, and
 *     the allocator then finds those pages there; with the option off the
 *     arena above the top stays unbacked and no thread is made;
 *   - the arena above the top is left out of the child: pages faulted in
 *     there stay this process's alone while a child lives (pagemap's
 *     exclusive bit), where a page of an object below the top is shared; and
 *     the arena is one mapping again after the fork;
 *   - objects made while the thread faults pages in keep every byte (it
 *     touches each page with an atomic OR of 0, never a store);
 *   - a cycle the pacer starts is put off while a chunk is in flight, and
 *     the fork lets the thread go on; collect() is not put off;
 *   - the window: how far ahead, when it asks again, what a release undoes.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import { GrowthPrefault, MAX_WINDOW_BYTES, MIN_WINDOW_BYTES, prefaultWindow, type PrefaultThread } from '../src/memory/growth-prefault.js';
import { GRANULE_BYTES } from '../src/memory/layout.js';
import type { Ref } from '../src/index.js';
import { closeHeap, closeHeapsAfterEach, makeHeap, withTimeout } from './helpers/common.js';
import { threadMinorFaults } from './helpers/faults.js';

closeHeapsAfterEach();

const MiB = 1024 * 1024;
const HUGE = 2 * MiB;

/** /proc/self/pagemap entries of the `pages` 4 KiB pages from `address`: [present, exclusive] each. */
function pagemap(address: bigint, pages: number): Array<[boolean, boolean]> {
  const fd = openSync('/proc/self/pagemap', 'r');
  try {
    const buf = Buffer.alloc(pages * 8);
    readSync(fd, buf, 0, buf.length, Number(address / 4096n) * 8);
    const out: Array<[boolean, boolean]> = [];
    for (let i = 0; i < pages; i++) {
      const e = buf.readBigUInt64LE(i * 8);
      out.push([(e >> 63n & 1n) === 1n, (e >> 56n & 1n) === 1n]);
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

const roundUp = (n: number, unit: number) => Math.ceil(n / unit) * unit;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The first whole page above the heap's top (a huge page on huge pages:
 * the top's own may be backed either way), as an address; 1 MiB from there
 * is always in the window: the last ask reached at least half a window (2
 * MiB or more) past the top, rounded up to whole chunks (a huge page, or
 * 256 KiB of small pages).
 */
function aboveTop(core: ReturnType<typeof heapInternals>): bigint {
  const unit = core.regions.hugePages ? HUGE : 4096;
  return core.regions.arenaAddress + BigInt(roundUp(core.allocator.topGranule * GRANULE_BYTES, unit));
}

/** Until the 256 pages (1 MiB) at aboveTop() are present (bounded: 10 s); whether they are. */
async function prefaulted(core: ReturnType<typeof heapInternals>): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (pagemap(aboveTop(core), 256).every(([p]) => p)) return true;
    await sleep(50);
  }
  return false;
}

/** How many lines of /proc/self/maps lie within the arena. */
function arenaMappings(core: ReturnType<typeof heapInternals>): number {
  const start = core.regions.arenaAddress;
  const end = start + BigInt(core.regions.arena.byteLength);
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
    return m !== null && BigInt('0x' + m[1]) >= start && BigInt('0x' + m[2]) <= end;
  }).length;
}

/** A heap grown by `mib` MiB of small objects, each holding its index (kept in a root array). */
function grownHeap(opts: Parameters<typeof makeHeap>[0], mib: number) {
  const heap = makeHeap({ maxHeap: '512MiB', mode: 'fork', sweepThreads: 0, ...opts });
  const T = heap.defineStruct('T', { next: 'ref', i: 'i32', x: 'f64' });
  let head = 0;
  const n = (mib * MiB) / T.size;
  for (let i = 0; i < n; i++) head = T.make(head, i, i * 0.5);
  const root = heap.root(head);
  return { heap, T, root, n, core: heapInternals(heap) };
}

describe('growth faulted in ahead of the allocator', () => {
  it('a growing heap has the arena above its top faulted in by its thread; with prefaultGrowth: false it stays unbacked', async () => {
    for (const on of [true, false]) {
      const { core } = grownHeap({ prefaultGrowth: on }, 24);
      if (on) expect(await prefaulted(core), 'faulted in within 10 s').toBe(true);
      else await sleep(300);
      const pages = pagemap(aboveTop(core), 256);
      const present = pages.filter(([p]) => p).length;
      const figures = core.addon.growthPrefaultFigures(core.regions.id);
      if (on) {
        expect(core.prefault).toBeDefined();
        expect(figures.bytes).toBeGreaterThanOrEqual(4 * MiB);
        expect(present, 'pages above the top faulted in').toBe(256);
      } else {
        expect(core.prefault).toBeUndefined();
        expect(figures).toEqual({ bytes: 0, ns: 0, calls: 0, failures: 0, faults: 0, working: false });
        expect(present, 'pages above the top left alone').toBe(0);
      }
    }
  }, 60_000);

  it('close() while the thread works ends it (joined, no thread left), in this thread and in a worker\'s', async () => {
    const prefaultThreads = () => readdirSync('/proc/self/task').filter((t) => {
      try {
        return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'forkgc-prefault';
      } catch {
        return false;  // the thread ended meanwhile
      }
    }).length;
    for (let round = 0; round < 3; round++) {
      const { heap, core } = grownHeap({ maxHeap: '1GiB' }, 8);
      // A long range, so that close() comes while it is being faulted in.
      expect(core.addon.prefaultGrowth(core.regions.id, 16 * MiB, 512 * MiB)).toBe(true);
      expect(prefaultThreads()).toBeGreaterThanOrEqual(1);
      const t0 = performance.now();
      await withTimeout(closeHeap(heap), 10_000, 'close');
      expect(performance.now() - t0).toBeLessThan(5000);
    }
    expect(prefaultThreads(), 'every heap\'s thread joined at close').toBe(0);
    // A heap made, grown and left open in a worker thread that then ends:
    // the environment's teardown destroys it, and its thread with it.
    const worker = new Worker(`
      const { Heap } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const heap = new Heap({ maxHeap: '256MiB', mode: 'fork', sweepThreads: 0 });
      const T = heap.defineStruct('T', { a: 'f64', b: 'f64' });
      for (let i = 0; i < 300000; i++) T.alloc();
      (await import('node:worker_threads')).parentPort.postMessage('grown');
    `, { eval: true, type: 'module' } as ConstructorParameters<typeof Worker>[1]);
    await withTimeout(new Promise((r) => worker.once('message', r)), 20_000, 'worker grown');
    await withTimeout(new Promise((r) => worker.once('exit', r)), 20_000, 'worker exit');
    for (let i = 0; i < 100 && prefaultThreads() > 0; i++) await sleep(50);
    expect(prefaultThreads(), 'the worker\'s heap thread ended with the worker').toBe(0);
  }, 60_000);

  it('the application takes no fault where the thread went first (4 KiB pages: one a page without it); the thread\'s own are not the parent\'s', async () => {
    const faults: Record<string, number> = {};
    for (const on of [true, false]) {
      const { heap, T, core } = grownHeap({
        prefaultGrowth: on, hugePages: false, faultInjectionForTesting: { kind: 'delay-before-mark', arg: 1000 },
      }, 8);
      if (on) expect(await prefaulted(core), 'faulted in within 10 s').toBe(true);
      // 2 MiB more: within the window (at least 4 MiB above the top).
      const n = (2 * MiB) / T.size;
      const f0 = threadMinorFaults();
      for (let i = 0; i < n; i++) T.alloc();
      faults[String(on)] = threadMinorFaults() - f0;
      if (on) {
        expect(core.addon.growthPrefaultFigures(core.regions.id).faults, 'the thread took them').toBeGreaterThanOrEqual(512);
        // A cycle's parentMinorFaults leaves the thread's out: a long range
        // asked for at the fork, while the child is held for a second, is
        // faulted in by the thread within the cycle.
        let before = 0;
        heap.once('fork', () => {
          before = core.addon.growthPrefaultFigures(core.regions.id).faults;
          core.addon.prefaultGrowth(core.regions.id, 64 * MiB, 128 * MiB);
        });
        const s = await withTimeout(heap.collect(), 30_000, 'cycle');
        const during = core.addon.growthPrefaultFigures(core.regions.id).faults - before;
        expect(during, 'the thread faulted meanwhile').toBeGreaterThan(8000);
        expect(s.parentMinorFaults, 'not counted as the parent\'s').toBeLessThan(during / 2);
      }
      await closeHeap(heap);
    }
    expect(faults.true, `main-thread faults over 2 MiB of new objects: ${JSON.stringify(faults)}`).toBeLessThan(64);
    expect(faults.false).toBeGreaterThanOrEqual(400);
  }, 60_000);

  it('off where a child would share the arena above the top (selectiveFork: false); on in stw mode', () => {
    expect(heapInternals(makeHeap({ mode: 'fork', selectiveFork: false })).prefault).toBeUndefined();
    expect(heapInternals(makeHeap({ mode: 'stw', selectiveFork: false })).prefault).toBeDefined();
    expect(heapInternals(makeHeap({ mode: 'fork' })).prefault).toBeDefined();
  });

  it('the arena above the top is left out of the child: its pages stay this process\'s alone while the child lives, and the arena is one mapping again after', async () => {
    const { heap, core } = grownHeap({ faultInjectionForTesting: { kind: 'delay-before-mark', arg: 1500 } }, 24);
    expect(await prefaulted(core), 'faulted in within 10 s').toBe(true);
    const mappings = arenaMappings(core);
    const tail = aboveTop(core);
    const below = core.regions.arenaAddress + BigInt(HUGE);  // span 0 is reserved; objects from 64 KiB up
    expect(pagemap(tail, 16).every(([p, x]) => p && x), 'tail faulted in, exclusive before the fork').toBe(true);
    let during: { tail: Array<[boolean, boolean]>; below: Array<[boolean, boolean]>; mappings: number } | undefined;
    heap.once('fork', () => {
      during = { tail: pagemap(tail, 16), below: pagemap(below, 16), mappings: arenaMappings(core) };
    });
    await withTimeout(heap.collect(), 30_000, 'cycle');
    expect(during).toBeDefined();
    expect(during!.below.every(([p, x]) => p && !x), 'a page of objects below the top is shared with the child').toBe(true);
    expect(during!.tail.every(([p, x]) => p && x), 'a page above the top is not').toBe(true);
    expect(during!.mappings, 'the arena is one mapping again once fork() returned').toBe(mappings);
    expect(arenaMappings(core)).toBe(mappings);
  }, 60_000);

  // Found in session 30, as 113-149 pages the child counted copied beyond
  // the parent's own writes in runs under load (the demo, cow-map): a
  // thread behind the allocator went on after a fork from where it was,
  // below the top, and its atomic OR of 0 there wrote pages the child
  // shared. Now it skips to the top at each fork, and is never asked for
  // a page below it.
  it('a thread behind the allocator writes no page the child shares: nothing copied while the child lives', async () => {
    for (const hugePages of [false, true]) {
      const heap = makeHeap({ maxHeap: '512MiB', mode: 'fork', sweepThreads: 0, hugePages,
        faultInjectionForTesting: { kind: 'delay-before-mark', arg: 600 } });
      const core = heapInternals(heap);
      const T = heap.defineStruct('T', { next: 'ref', i: 'i32', x: 'f64' });
      const root = heap.root(0);
      root.set(T.make(0, 0, 0));  // the thread is made at the first growth
      core.addon.setGrowthPrefaultDelayForTesting(core.regions.id, 40);
      // 24 MiB in well under the thread's pace (a chunk per 40 ms): it falls behind the top.
      for (let i = 0; i < (24 * MiB) / T.size; i++) root.set(T.make(root.get(), i, 0));
      const s = await withTimeout(heap.collect(), 30_000, 'cycle');
      core.addon.setGrowthPrefaultDelayForTesting(core.regions.id, 0);
      expect(s.selectiveFork).toBe(true);
      // Nothing was written while the child lived (600 ms: 15 of the thread's chunks).
      expect(s.cowBytes, `hugePages: ${hugePages}`).toBe(0);
      await closeHeap(heap);
    }
  }, 60_000);

  it('objects made while the thread faults pages in keep every byte, over cycles', async () => {
    const heap = makeHeap({ maxHeap: '512MiB', mode: 'fork', sweepThreads: 1, auto: true, minTriggerBytes: '8MiB' });
    const T = heap.defineStruct('T', { next: 'ref', i: 'i32', x: 'f64' });
    const core = heapInternals(heap);
    const root = heap.root(0);
    const n = 1_500_000;
    for (let i = 0; i < n; i++) {
      root.set(T.make(root.get() as Ref, i, i * 0.5));
      if ((i & 4095) === 0) heap.safepoint();
    }
    // Drop none: every object is live; read them all back.
    await withTimeout(heap.collect(), 30_000, 'cycle');
    let r = root.get() as Ref | 0;
    let i = n - 1;
    let wrong = 0;
    while (r !== 0) {
      if (T.get.i(r as Ref) !== i || T.get.x(r as Ref) !== i * 0.5) wrong++;
      r = T.get.next(r as Ref);
      i--;
    }
    expect(i).toBe(-1);
    expect(wrong).toBe(0);
    expect(core.addon.growthPrefaultFigures(core.regions.id).bytes, 'the thread worked meanwhile').toBeGreaterThan(0);
  }, 120_000);

  it('a cycle the pacer starts is put off while a chunk is in flight, and its fork lets the thread go on; collect() is not put off', async () => {
    const heap = makeHeap({ mode: 'fork', auto: true, sweepThreads: 0, minTriggerBytes: '1MiB' });
    const core = heapInternals(heap);
    const prefault = core.prefault!;
    const calls: string[] = [];
    let busy = true;
    const original = { busy: prefault.busy.bind(prefault), resume: prefault.resume.bind(prefault) };
    prefault.busy = () => { calls.push('busy'); original.busy(); return busy; };
    prefault.resume = () => { calls.push('resume'); original.resume(); };
    heap.on('fork', () => calls.push('fork'));
    const T = heap.defineStruct('T', { a: 'i32' });
    for (let i = 0; i < 200_000; i++) T.alloc();  // past the trigger
    for (let k = 0; k < 5; k++) heap.safepoint();
    expect(heap.stats().cycles, 'no cycle while a chunk is in flight').toBe(0);
    expect(calls.filter((c) => c === 'busy').length).toBeGreaterThanOrEqual(5);
    expect(calls).not.toContain('fork');
    busy = false;
    heap.safepoint();
    expect(calls.slice(-3)).toEqual(['busy', 'fork', 'resume']);
    await withTimeout(new Promise((r) => heap.once('cycle', r)), 30_000, 'cycle');
    // Deferred to a turn of the event loop as well, when no safepoint comes.
    busy = true;
    calls.length = 0;
    for (let i = 0; i < 200_000; i++) T.alloc();
    await sleep(50);
    expect(calls).not.toContain('fork');
    busy = false;
    await withTimeout(new Promise((r) => heap.once('fork', r)), 10_000, 'fork from the event loop');
    expect(calls).toContain('resume');
    await withTimeout(new Promise((r) => heap.once('cycle', r)), 30_000, 'cycle');
    // An explicit cycle does not ask.
    busy = true;
    calls.length = 0;
    await withTimeout(heap.collect(), 30_000, 'collect');
    expect(calls).not.toContain('busy');
    expect(calls).toContain('fork');
  }, 60_000);

  it('never put off in stw mode, which does not fork', () => {
    const heap = makeHeap({ mode: 'stw', auto: true, sweepThreads: 0, minTriggerBytes: '1MiB' });
    heapInternals(heap).prefault!.busy = () => true;
    const T = heap.defineStruct('T', { a: 'i32' });
    let started = 0;
    heap.on('cycleStart', () => { started++; });
    for (let i = 0; i < 200_000; i++) T.alloc();
    heap.safepoint();
    // Started at the safepoint; not necessarily completed there: a sweep
    // inline that runs over twice its budget on a loaded machine leaves the
    // rest to slices (stats().cycles was 0 once in a fresh clone's run).
    expect(started).toBe(1);
  });

  it('never put off when the heap is short of room: past the pacer\'s soft limit the cycle goes first', () => {
    const heap = makeHeap({ mode: 'fork', auto: true, sweepThreads: 0, maxHeap: '16MiB', minTriggerBytes: '1MiB' });
    const core = heapInternals(heap);
    core.prefault!.busy = () => true;
    const T = heap.defineStruct('T', { a: 'i32', b: 'f64' });
    let forks = 0;
    heap.on('fork', () => forks++);
    // 14.7 MiB counted since the last cycle (none yet): past the soft limit
    // (90% of maxHeap, 14.4 MiB), short of the heap's 15.9 MiB of spans.
    for (let i = 0; i < 478_000; i++) T.alloc();
    expect(core.policy.safepointWaits(core.collector.account.liveBytes)).toBe(true);
    T.alloc();
    heap.safepoint();
    expect(forks).toBeGreaterThan(0);
  }, 60_000);
});

describe('the window ahead of the top (GrowthPrefault)', () => {
  const fake = (ok = true) => {
    const asked: Array<[number, number]> = [];
    const log: string[] = [];
    const thread: PrefaultThread = {
      ask: (from, to) => { asked.push([from, to]); return ok; },
      quiesce: () => { log.push('quiesce'); return true; },
      resume: () => { log.push('resume'); },
    };
    return { asked, log, thread };
  };

  it('an eighth of the heap, 4-64 MiB', () => {
    expect(prefaultWindow(0)).toBe(MIN_WINDOW_BYTES);
    expect(prefaultWindow(64 * MiB)).toBe(8 * MiB);
    expect(prefaultWindow(4096 * MiB)).toBe(MAX_WINDOW_BYTES);
  });

  it('asks again only when the top comes within half a window of what it asked; within the arena', () => {
    const { asked, thread } = fake();
    const p = new GrowthPrefault(thread, 40 * MiB);
    p.grown(1 * MiB, 1 * MiB);
    expect(asked).toEqual([[1 * MiB, 5 * MiB]]);
    p.grown(2 * MiB, 2 * MiB);  // 2 + 2 <= 5: nothing
    p.grown(3.5 * MiB, 3 * MiB);  // 3.5 + 2 > 5: again
    expect(asked).toEqual([[1 * MiB, 5 * MiB], [3.5 * MiB, 7.5 * MiB]]);
    p.grown(38 * MiB, 38 * MiB);
    expect(asked.at(-1)).toEqual([38 * MiB, 40 * MiB]);
    const n = asked.length;
    p.grown(40 * MiB, 40 * MiB);  // at the arena's end: nothing left to ask for
    expect(asked.length).toBe(n);
  });

  it('a release below what it asked for makes the next growth ask again', () => {
    const { asked, thread } = fake();
    const p = new GrowthPrefault(thread, 1024 * MiB);
    p.grown(10 * MiB, 10 * MiB);
    p.grown(11 * MiB, 10 * MiB);
    expect(asked.length).toBe(1);
    p.released(12 * MiB);
    p.grown(11 * MiB, 10 * MiB);
    expect(asked).toEqual([[10 * MiB, 14 * MiB], [11 * MiB, 15 * MiB]]);
  });

  it('a refused ask turns it off; stop() turns it off; resume() only after busy()', () => {
    const refused = fake(false);
    const p = new GrowthPrefault(refused.thread, 1024 * MiB);
    p.grown(1 * MiB, 1 * MiB);
    p.grown(100 * MiB, 100 * MiB);
    expect(refused.asked.length).toBe(1);
    expect(p.on).toBe(false);
    expect(p.busy()).toBe(false);
    const { asked, log, thread } = fake();
    const q = new GrowthPrefault(thread, 1024 * MiB);
    q.resume();
    expect(log).toEqual([]);
    expect(q.busy()).toBe(true);
    q.resume();
    q.resume();
    expect(log).toEqual(['quiesce', 'resume']);
    expect(q.on).toBe(true);
    q.stop();
    expect(q.on).toBe(false);
    q.grown(1 * MiB, 1 * MiB);
    expect(asked, 'stop() has the thread drop what it was asked, and nothing is asked after').toEqual([[0, 0]]);
  });
});
