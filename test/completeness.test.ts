/**
 * Completeness: once nothing is rooted, one cycle frees everything (liveBytes 0,
 * objects 0), and the memory of the spans that became empty is given back to the
 * OS (madvise): the process's resident memory drops, and the cycle says so in
 * bytesReturned.
 */
import { describe, expect, it } from 'vitest';
import { closeHeapsAfterEach, isFreed, makeHeap, MiB, MODES, rssBytes } from './helpers/common.js';
import { buildGraph, defaultParams, defineSchema, genGraphSpec } from './helpers/graph.js';

closeHeapsAfterEach();

describe.each(MODES)('completeness (%s mode)', (mode) => {
  it('after every root is released, one cycle frees everything: liveBytes 0, objects 0', async () => {
    const heap = makeHeap({ mode });
    const schema = defineSchema(heap);
    const spec = genGraphSpec(defaultParams(21, 3000));
    const g = buildGraph(heap, schema, spec);
    // a first cycle keeps the rooted part
    const c1 = await heap.collect();
    expect(c1.objectsMarked).toBeGreaterThan(0);
    expect(heap.stats().liveBytes).toBeGreaterThan(0);
    const survivors = g.refs.filter((r) => !isFreed(heap, r));
    expect(survivors.length).toBe(c1.objectsMarked);

    for (const h of g.handles) h.release();
    const c2 = await heap.collect();
    expect(c2.objectsMarked).toBe(0);
    expect(c2.bytesMarked).toBe(0);
    expect(c2.objectsFreed).toBe(survivors.length);
    expect(c2.liveBytesAfter).toBe(0);
    const st = heap.stats();
    expect(st.liveBytes).toBe(0);
    expect(st.objects).toBe(0);
    expect(survivors.filter((r) => !isFreed(heap, r))).toEqual([]);
    expect(c2.heapBytesAfter).toBeLessThan(c2.heapBytesBefore);
    expect(st.freedBytesTotal).toBe(c1.bytesFreed + c2.bytesFreed);
  }, 60_000);

  it('memory of empty spans is given back to the OS: RSS drops by at least half of ~64 MiB allocated', async () => {
    const heap = makeHeap({ mode, maxHeap: '256MiB' });
    const { Node } = defineSchema(heap).structs;

    // warm up: a cycle with garbage, so that whatever the sweeper starts (workers) exists already
    for (let i = 0; i < 10_000; i++) Node.alloc({ value: i });
    await heap.collect();

    const rss0 = rssBytes();
    const top = heap.arrays.alloc(4);
    const root = heap.root(top);
    // 1) ~16 MiB of small structs, in 64 rooted chains
    const nodes = heap.arrays.alloc(64);
    heap.arrays.set(top, 0, nodes);
    for (let c = 0; c < 64; c++) {
      let head = 0;
      for (let k = 0; k < 5500; k++) head = Node.alloc({ left: head, value: k, w: k * 0.5, id: c });
      heap.arrays.set(nodes, c, head);
    }
    // 2) ~8 MiB of strings (one JS string reused: no V8 garbage that could blur RSS)
    const text = 'forkgc ✓ '.repeat(12);
    const strings = heap.arrays.alloc(70_000);
    heap.arrays.set(top, 1, strings);
    for (let i = 0; i < 70_000; i++) heap.arrays.set(strings, i, heap.strings.alloc(text));
    // 3) ~8 MiB of small byte arrays and 4) ~32 MiB of 64 KiB byte arrays, every page written
    const small = new Uint8Array(200).map((_, i) => (i * 7 + 1) & 255);
    const big = new Uint8Array(64 * 1024).map((_, i) => (i * 13 + 5) & 255);
    const smalls = heap.arrays.alloc(40_000);
    heap.arrays.set(top, 2, smalls);
    for (let i = 0; i < 40_000; i++) heap.arrays.set(smalls, i, heap.bytes.alloc(small));
    const bigs = heap.arrays.alloc(512);
    heap.arrays.set(top, 3, bigs);
    for (let i = 0; i < 512; i++) heap.arrays.set(bigs, i, heap.bytes.alloc(big));

    const allocated = heap.stats().liveBytes;
    expect(allocated).toBeGreaterThan(56 * MiB);
    const rss1 = rssBytes();
    expect(rss1 - rss0, 'the allocation must have made memory resident').toBeGreaterThan(0.75 * 56 * MiB);

    const keep = await heap.collect();
    expect(keep.objectsFreed).toBe(0);
    expect(heap.bytes.copy(heap.arrays.get(bigs, 511))).toEqual(big);

    root.release();
    const c = await heap.collect();
    const rss2 = rssBytes();
    const st = heap.stats();
    expect(st.liveBytes).toBe(0);
    expect(st.objects).toBe(0);
    expect(c.bytesFreed).toBeGreaterThanOrEqual(allocated);
    expect(c.bytesReturned, 'bytesReturned').toBeGreaterThan(0);
    expect(c.bytesReturned, 'bytesReturned >= half of what was allocated').toBeGreaterThanOrEqual(allocated / 2);
    expect(c.heapBytesAfter).toBeLessThan(c.heapBytesBefore);
    expect(rss1 - rss2, `RSS ${(rss1 / MiB).toFixed(1)} -> ${(rss2 / MiB).toFixed(1)} MiB; allocated ${(allocated / MiB).toFixed(1)} MiB`).toBeGreaterThanOrEqual(allocated / 2);
  }, 120_000);
});
