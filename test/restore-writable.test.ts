/**
 * Pages made writable again after a cycle (HeapOptions.restoreWritable;
 * native/huge_page_restore.cc).
 *
 * fork() write-protects every page the child shares, and the protection
 * stays after the child is gone: the application's first write to each
 * page faults (20-44 µs a fault with 4 KiB pages on the project's VM). Once
 * the child is reaped, the heap's restore thread makes the resident pages
 * writable again (MADV_POPULATE_WRITE), so those writes do not fault.
 * Checked here with the main thread's own minor-fault count
 * (/proc/thread-self/stat), which the restore thread's work does not touch:
 *   - with the option on, writing a page of every object after a cycle
 *     takes almost no fault;
 *   - with it off, about one per page (the same check fails);
 *   - the next cycle reports the work (bytesMadeWritable, makeWritableMs);
 *   - pages the application never touched are not made resident (RssAnon;
 *     found when the memory-limit test of test/oom-order.test.ts failed),
 *     nor pages it only read, where the kernel maps those to the zero page;
 *   - back-to-back cycles (each fork holds the thread) keep every value,
 *     parentMinorFaults counts at least the main thread's own faults (it
 *     went below 0 when the restore thread's were read last: review), and a
 *     close while the thread works joins it;
 *   - a heap asked for 4 KiB pages opts out of huge pages (VmFlags nh);
 *   - a restore thread refused (pthread_create EAGAIN) costs nothing;
 *   - a heap on huge pages is left alone (there it measured worse);
 *   - spans given back to the OS are left out (residentSpans).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import { residentSpans } from '../src/memory/huge-pages.js';
import { FREE_RELEASED, SPAN_FREE, SPAN_IN_USE, SPAN_WORDS, SW_AUX, SW_STATE } from '../src/memory/layout.js';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';
import { threadMinorFaults } from './helpers/faults.js';
import { expectRefusedRestoreThreadHarmless } from './helpers/restore-thread-refused.js';
import { vmFlagsAt } from './helpers/smaps.js';

closeHeapsAfterEach();

const MiB = 1024 * 1024;

/** This process's resident anonymous memory (/proc/self/status, RssAnon). */
function rssAnonBytes(): number {
  const m = /^RssAnon:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(m![1]) * 1024;
}

/**
 * Until the restore thread has stopped adding (it ends once the child is
 * reaped and the list is done; bounded: 10 s).
 */
async function restoreSettled(core: ReturnType<typeof heapInternals>, since: number, expectWork: boolean): Promise<void> {
  const made = () => core.addon.hugePageRestoreFigures(core.regions.id).bytesMadeWritable;
  let last = made();
  for (let quiet = 0, i = 0; (quiet < 3 || (expectWork && last === since)) && i < 200; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const now = made();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
}


/** Whether reading a page never written leaves it unbacked (the shared zero page). */
const readsMapZeroPage = (() => {
  const bytes = new Uint8Array(new ArrayBuffer(32 * MiB));
  const rss0 = rssAnonBytes();
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 4096) sum += bytes[i];
  return sum === 0 && rssAnonBytes() - rss0 < 8 * MiB;
})();

const populates = (() => {
  const [major, minor] = readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number);
  return major > 5 || (major === 5 && minor >= 14);
})();

describe.skipIf(!populates)('making the heap writable again after a cycle (restoreWritable)', () => {
  for (const on of [true, false]) {
    it(`restoreWritable: ${on}: the application's first writes after a cycle ${on ? 'take almost no fault' : 'fault once a page'}`, { timeout: 60_000 }, async () => {
      const heap = makeHeap({ maxHeap: '256MiB', mode: 'fork', hugePages: false, auto: false, restoreWritable: on });
      const core = heapInternals(heap);
      const objects = 8192;  // 4000 bytes each: about 32 MiB, two pages an object at most
      const list = heap.root(heap.arrays.alloc(objects));
      for (let i = 0; i < objects; i++) heap.arrays.set(list.get(), i, heap.bytes.alloc(4000));
      for (let i = 0; i < objects; i++) heap.bytes.set(heap.arrays.get(list.get(), i), 0, 1);  // every page resident
      const since = core.addon.hugePageRestoreFigures(core.regions.id).bytesMadeWritable;
      const first = await heap.collect();
      expect(first.objectsMarked).toBe(objects + 1);
      // The restore thread starts once the child is reaped; wait until it is done.
      await restoreSettled(core, since, on);
      const f0 = threadMinorFaults();
      for (let i = 0; i < objects; i++) {
        const b = heap.arrays.get(list.get(), i);
        heap.bytes.set(b, 0, 2);
        heap.bytes.set(b, 3999, 2);
      }
      const faults = threadMinorFaults() - f0;
      const pages = (objects * 4000) / 4096;
      if (on) expect(faults, `faults for ${pages} pages written`).toBeLessThan(pages / 10);
      else expect(faults, `faults for ${pages} pages written`).toBeGreaterThan(pages / 2);
      const next = await heap.collect();
      if (on) {
        expect(next.bytesMadeWritable).toBeGreaterThanOrEqual(30 * MiB);
        expect(next.makeWritableMs).toBeGreaterThan(0);
      } else {
        expect(next.bytesMadeWritable).toBe(0);
      }
      for (let i = 0; i < objects; i++) expect(heap.bytes.get(heap.arrays.get(list.get(), i), 3999)).toBe(2);
      list.release();
    });
  }

  it('pages are made writable once the sweep is over, not during it (the sweep would share its CPUs with the thread)', { timeout: 60_000 }, async () => {
    const heap = makeHeap({ maxHeap: '256MiB', mode: 'fork', hugePages: false, auto: false });
    const core = heapInternals(heap);
    const objects = 8192;  // about 32 MiB, every page resident
    const list = heap.root(heap.arrays.alloc(objects));
    for (let i = 0; i < objects; i++) heap.arrays.set(list.get(), i, heap.bytes.alloc(4000));
    for (let i = 0; i < objects; i++) heap.bytes.set(heap.arrays.get(list.get(), i), 0, 1);
    const made = () => core.addon.hugePageRestoreFigures(core.regions.id).bytesMadeWritable;
    const since = made();
    // The child is reaped when 'stream' fires, and the sweep starts right
    // after. Hold the main thread there, and as the sweep starts, for 200
    // ms each: a restore thread started with the stream (as it was) made
    // pages writable meanwhile, on the other CPU.
    const hold = () => {
      const until = performance.now() + 200;
      while (performance.now() < until) { /* hold */ }
      return made();
    };
    let atStream = -1;
    let atSweepStart = -1;
    heap.on('stream', () => { atStream = hold(); });
    heap.on('sweepStart', () => { atSweepStart = hold(); });
    await heap.collect();
    expect(atStream).toBe(since);
    expect(atSweepStart).toBe(since);
    await restoreSettled(core, since, true);
    expect(made()).toBeGreaterThanOrEqual(since + 30 * MiB);
    list.release();
  });

  it('pages the application never touched stay untouched (no memory is added)', { timeout: 60_000 }, async () => {
    const heap = makeHeap({ maxHeap: '512MiB', mode: 'fork', hugePages: false, auto: false });
    const core = heapInternals(heap);
    // 96 objects of 1 MiB, each written on its first page only: the rest of
    // their pages were never mapped.
    const objects = 96;
    const list = heap.root(heap.arrays.alloc(objects));
    for (let i = 0; i < objects; i++) {
      const b = heap.bytes.alloc(MiB);
      heap.bytes.set(b, 0, 1);
      heap.arrays.set(list.get(), i, b);
    }
    const rss0 = rssAnonBytes();
    const before = core.addon.hugePageRestoreFigures(core.regions.id).bytesMadeWritable;
    await heap.collect();
    await restoreSettled(core, before, true);
    expect(core.addon.hugePageRestoreFigures(core.regions.id).bytesMadeWritable).toBeGreaterThan(before);
    const grown = rssAnonBytes() - rss0;
    expect(grown, `anonymous RSS grew by ${(grown / MiB).toFixed(1)} MiB`).toBeLessThan(32 * MiB);
    list.release();
  });

  // Where a read of a page never written maps the shared zero page (most
  // kernels; not this project's VM, whose kernel gives it a page of its own
  // at once: skipped there), making it writable would give it a real page.
  it.skipIf(!readsMapZeroPage)('pages the application has only read stay unbacked (the zero page is not made writable)', { timeout: 60_000 }, async () => {
    const heap = makeHeap({ maxHeap: '512MiB', mode: 'fork', hugePages: false, auto: false });
    const core = heapInternals(heap);
    const objects = 96;
    const list = heap.root(heap.arrays.alloc(objects));
    let sum = 0;
    for (let i = 0; i < objects; i++) {
      const b = heap.bytes.alloc(MiB);
      heap.bytes.set(b, 0, 1);
      for (let off = 4096; off < MiB; off += 4096) sum += heap.bytes.get(b, off);
      heap.arrays.set(list.get(), i, b);
    }
    expect(sum).toBe(0);
    const rss0 = rssAnonBytes();
    const before = core.addon.hugePageRestoreFigures(core.regions.id).bytesMadeWritable;
    await heap.collect();
    await restoreSettled(core, before, true);
    const grown = rssAnonBytes() - rss0;
    expect(grown, `anonymous RSS grew by ${(grown / MiB).toFixed(1)} MiB`).toBeLessThan(32 * MiB);
    list.release();
  });

  it('a heap on huge pages leaves its pages as they are (measured worse there)', async () => {
    const heap = makeHeap({ maxHeap: '64MiB', mode: 'fork', hugePages: true, auto: false });
    const core = heapInternals(heap);
    const keep = heap.root(heap.bytes.alloc(1_000_000));
    const since = core.addon.hugePageRestoreFigures(core.regions.id).bytesMadeWritable;
    await heap.collect();
    await restoreSettled(core, since, !core.regions.hugePages);
    const s = await heap.collect();
    // Where the arena got no huge pages, it is a 4 KiB heap like any other.
    if (core.regions.hugePages) expect(s.bytesMadeWritable).toBe(0);
    else expect(s.bytesMadeWritable).toBeGreaterThan(0);
    keep.release();
  });

  it('back-to-back cycles (the next fork holds the thread) and a close while it works keep every value', { timeout: 60_000 }, async () => {
    const heap = makeHeap({ maxHeap: '256MiB', mode: 'fork', hugePages: false, auto: false });
    const objects = 4096;
    const list = heap.root(heap.arrays.alloc(objects));
    for (let i = 0; i < objects; i++) heap.arrays.set(list.get(), i, heap.bytes.alloc(8000));
    for (let round = 1; round <= 4; round++) {
      // Written while the child shares the pages: copy-on-write faults of
      // the main thread's, which parentMinorFaults must count, whatever the
      // restore thread (at work from the previous cycle until this fork, and
      // again from this child's exit) adds meanwhile.
      const f0 = threadMinorFaults();
      const cycle = heap.collect();
      for (let i = 0; i < objects; i++) {
        const b = heap.arrays.get(list.get(), i);
        heap.bytes.set(b, 0, round);
        heap.bytes.set(b, 7999, round);
      }
      const s = await cycle;
      const mine = threadMinorFaults() - f0;
      expect(s.objectsMarked).toBe(objects + 1);
      expect(s.parentMinorFaults, `the main thread's own faults: ${mine}`).toBeGreaterThanOrEqual(mine - 512);
      for (let i = 0; i < objects; i++) {
        const b = heap.arrays.get(list.get(), i);
        expect(heap.bytes.get(b, 0) + heap.bytes.get(b, 7999)).toBe(2 * round);
      }
    }
    // The thread is at work on the last cycle's pages: closing joins it.
    list.release();
    await heap.close();
  });

  it('a heap asked for 4 KiB pages opts out of huge pages (a system set to THP "always" would back it with them)', () => {
    const heap = makeHeap({ maxHeap: '64MiB', mode: 'fork', hugePages: false, auto: false });
    const core = heapInternals(heap);
    expect(core.regions.hugePages).toBe(false);
    expect(vmFlagsAt(core.regions.arenaAddress)).toContain('nh');
  });

  it('a restore thread that cannot be created costs a 4 KiB heap nothing: cycles complete, the heap closes', { timeout: 60_000 }, () => {
    expectRefusedRestoreThreadHarmless('small');
  });

  it('stop-the-world heaps have nothing to restore', async () => {
    const heap = makeHeap({ maxHeap: '64MiB', mode: 'stw', auto: false });
    const keep = heap.root(heap.bytes.alloc(100_000));
    await heap.collect();
    const s = await heap.collect();
    expect(s.bytesMadeWritable).toBe(0);
    expect(s.makeWritableMs).toBe(0);
    keep.release();
  });
});

describe('which spans are made writable', () => {
  it('every span below the top but span 0 and those given back to the OS', () => {
    const topSpan = 6;
    const spans = new Int32Array(8 * SPAN_WORDS);
    const set = (s: number, state: number, aux = 0) => {
      spans[s * SPAN_WORDS + SW_STATE] = state;
      spans[s * SPAN_WORDS + SW_AUX] = aux;
    };
    set(1, SPAN_IN_USE);
    set(2, SPAN_FREE, FREE_RELEASED);
    set(3, SPAN_FREE, 0);               // free, still resident
    set(4, SPAN_IN_USE, 1);              // in use, its free slots to be zeroed
    set(5, SPAN_FREE, FREE_RELEASED);
    set(6, SPAN_IN_USE);                 // above the top
    expect([...residentSpans(spans, topSpan)]).toEqual([0, 1, 0, 1, 1, 0]);
  });
});
