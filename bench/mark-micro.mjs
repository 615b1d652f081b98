// Micro-benchmark of the marker (native/marker.cc): marking time per object
// for two graph shapes, the mutator idle, four collections in one process.
//
//   node bench/mark-micro.mjs [dist] [shape] [mode] [size] [parent] [pages]
//
// shape `trees` (default): complete binary trees of 8191 nodes of 32 bytes
// ({left, right, i32, f64}, the pause-scaling workload's), built depth-first
// so that allocation order is the walk's, until `size` MiB (default 512).
// shape `lru`: an LRU-cache graph like the lru-cache workload's: `size`
// records (default 1M) of eight objects (an entry with key, value, meta,
// chain, prev and next; meta with a tags array of three strings and an
// owner with a name), a bucket array of twice as many slots, and the LRU
// list through the entries in random order. mode: stw (default) or fork.
// parent (fork mode, trees): what the main thread does while the child
// marks: `idle` (default: waits on timers), `spin` (arithmetic only),
// `read` or `write` (a random tree node, read or incremented, as the
// pause-scaling workload's mutator). pages: `huge` (default) or `4k`.
// Prints ns per marked object for each collection, the mark stack's high
// water and overflow rescans. Run it against two builds' dist directories
// (and their addons) in turn to compare them.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = path.resolve(process.argv[2] ?? 'dist');
const shape = process.argv[3] ?? 'trees';
const mode = process.argv[4] ?? 'stw';
const parent = process.argv[6] ?? 'idle';
const hugePages = (process.argv[7] ?? 'huge') !== '4k';
const { Heap } = await import(pathToFileURL(path.join(dist, 'index.js')).href);

let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);

let tree;

function trees(heap, mib) {
  const Node = heap.defineStruct('PNode', { left: 'ref', right: 'ref', value: 'i32', w: 'f64' });
  const build = (d) => {
    const n = Node.alloc();
    if (d > 0) {
      const l = build(d - 1);
      const r = build(d - 1);
      Node.set.left(n, l);
      Node.set.right(n, r);
    }
    return n;
  };
  const chunks = Math.ceil((mib * 2 ** 20) / (8191 * Node.size));
  const spine = heap.root(heap.arrays.alloc(chunks));
  for (let i = 0; i < chunks; i++) heap.arrays.set(spine.get(), i, build(12));
  tree = { Node, spine, chunks };
}

/** One 2 ms slice of the parent's work while the child marks (see `parent` above). */
function parentSlice(heap) {
  const t = performance.now();
  let x = 0;
  while (performance.now() - t < 2) {
    if (parent === 'spin') {
      for (let i = 0; i < 1000; i++) x = (x * 31 + i) | 0;
      continue;
    }
    const { Node, spine, chunks } = tree;
    let n = heap.arrays.get(spine.get(), Math.floor(rnd() * chunks));
    for (let d = 0; d < 12; d++) n = rnd() < 0.5 ? Node.get.left(n) : Node.get.right(n);
    if (parent === 'write') Node.set.w(n, Node.get.w(n) + 1);
    else x += Node.get.w(n);
  }
  return x;
}

function lru(heap, n) {
  const Entry = heap.defineStruct('E', { key: 'ref', value: 'ref', meta: 'ref', chain: 'ref', prev: 'ref', next: 'ref', h: 'u32' });
  const Meta = heap.defineStruct('M', { id: 'u32', score: 'f64', tags: 'ref', owner: 'ref' });
  const Owner = heap.defineStruct('O', { name: 'ref', age: 'i32' });
  const { arrays, strings } = heap;
  const cap = 2 ** Math.ceil(Math.log2(n * 2));
  const root = heap.root(arrays.alloc(cap));
  const entries = [];
  for (let k = 0; k < n; k++) {
    const tags = arrays.alloc(3);
    for (let i = 0; i < 3; i++) arrays.set(tags, i, strings.alloc(`tag${k % 50}x${i}`));
    const meta = Meta.make(k, k * 0.5, tags, Owner.make(strings.alloc(`owner${k}`), k % 90));
    const b = Math.floor(rnd() * cap);
    const e = Entry.make(strings.alloc(`key${k}`), strings.alloc('value'.repeat(12) + k), meta, arrays.get(root.get(), b), 0, 0, k);
    arrays.set(root.get(), b, e);
    entries.push(e);
  }
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [entries[i], entries[j]] = [entries[j], entries[i]];
  }
  for (let i = 0; i + 1 < entries.length; i++) {
    Entry.set.next(entries[i], entries[i + 1]);
    Entry.set.prev(entries[i + 1], entries[i]);
  }
}

const heap = new Heap({ maxHeap: '3GiB', mode, auto: false, hugePages });
if (shape === 'trees') trees(heap, Number(process.argv[5] ?? 512));
else if (shape === 'lru') lru(heap, Number(process.argv[5] ?? 1_000_000));
else throw new Error(`unknown shape ${shape}: trees or lru`);
const cycles = [];
heap.on('cycle', (c) => cycles.push(c));
for (let i = 0; i < 4; i++) {
  if (parent === 'idle' || !tree || mode !== 'fork') {
    await heap.collect();
    continue;
  }
  let done = false;
  const cycle = heap.collect().then(() => { done = true; });
  while (!done) {
    parentSlice(heap);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await cycle;
}
const c = cycles[0];
console.log(`${shape} ${mode}${parent !== 'idle' ? `, parent ${parent}` : ''}${hugePages ? '' : ', 4 KiB pages'}: ${cycles.map((x) => ((x.markMs * 1e6) / x.objectsMarked).toFixed(2)).join(' ')} ns an object; ` +
  `${c.objectsMarked} objects, mark stack high water ${c.markStackHighWater}, overflow rescans ${c.overflowRescans}, ` +
  `copy-on-write ${cycles.map((x) => (x.cowBytes / 2 ** 20).toFixed(0)).join(' ')} MiB`);
await heap.close();
