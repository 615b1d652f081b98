// Mutator-only micro-benchmark (issue 11): CPU ns per node of the allocation
// and accessor paths, with no collection running while it is timed
// (auto: false; cycles are started between timed sections only). Takes the
// dist directory to load, so two trees can be compared side by side:
//
//   node bench/mutator-micro.mjs /work/baseline/dist 5
//   node bench/mutator-micro.mjs ./dist 5
//
// Run the two alternately several times and compare minima: the figure is
// wall time (process.hrtime), on a quiet machine. (It was the main thread's
// on-CPU time from /proc/thread-self/schedstat, but a running thread's
// figure there is brought up to date only at scheduler ticks, every 4 ms on
// a CONFIG_HZ=250 kernel: a section of 3e5 allocations, 4-40 ms, read as
// multiples of 13.3 ns per object, off by up to a tick at each end.)
// Sections:
//   bt build+check   binary-trees depth 16 (alloc + 2 ref sets per node, then 2 ref gets)
//   v8 plain bt      the same with plain JS objects (V8's GC included)
//   alloc only       alloc() of a 2-ref struct (into swept spans, as the three below)
//   check only       the gets of one built tree
//   alloc(init) 4f   alloc({left, right, i, j})
//   alloc+set 4f     alloc() and 4 setters
//   make 4f          make(left, right, i, j)
//   bt swept spans   binary-trees into spans a cycle swept empty
//   bt half-free     binary-trees into swept spans with every other slot live (NEEDZERO)
//   bt unchecked     bt build+check with the StructType.unchecked accessors
//   splay checked    200k top-down splays of a 16k-node splay tree (22 field accesses
//                    in splay()), per splay
//   splay unchecked  the same with the unchecked accessors
//   v8 plain splay   the same with plain JS objects

import path from 'node:path';
import { pathToFileURL } from 'node:url';
const dist = path.resolve(process.argv[2] ?? 'dist');
const reps = Number(process.argv[3] ?? 5);
const { Heap } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
const heap = new Heap({ mode: 'stw', auto: false, maxHeap: '4GiB' });
const Node = heap.defineStruct('TreeNode', { left: 'ref', right: 'ref' });
const G = heap.defineStruct('GNode', { left: 'ref', right: 'ref', i: 'i32', j: 'i32' });
const alloc = Node.alloc.bind(Node);
const setLeft = Node.set.left, setRight = Node.set.right, getLeft = Node.get.left, getRight = Node.get.right;
const bottomUp = (d) => {
  if (d === 0) return alloc();
  const l = bottomUp(d - 1), r = bottomUp(d - 1);
  const n = alloc(); setLeft(n, l); setRight(n, r); return n;
};
const check = (t) => { const l = getLeft(t); return l === 0 ? 1 : 1 + check(l) + check(getRight(t)); };
const cpu = () => Number(process.hrtime.bigint());  // wall ns (see the top of the file)
// swept: a cycle before each round, so that the round allocates into the
// spans the last one left garbage (the steady state of a program that
// allocates and drops) rather than into memory the process never touched,
// whose first-touch faults can cost more than the code measured (4-9 µs a
// page on some VMs: docs/performance-log.md).
async function measure(name, nodes, fn, swept = false) {
  const res = [];
  for (let r = 0; r < reps; r++) {
    if (swept) await heap.collect();
    const c0 = cpu();
    fn();
    res.push((cpu() - c0) / nodes);
  }
  res.sort((a, b) => a - b);
  console.log(`${name.padEnd(18)} min ${res[0].toFixed(1)} med ${res[res.length >> 1].toFixed(1)} ns/node`);
}
class TN { constructor(l, r) { this.left = l; this.right = r; } }
const pbu = (d) => d > 0 ? new TN(pbu(d - 1), pbu(d - 1)) : new TN(null, null);
const pch = (t) => (t.left === null ? 1 : 1 + pch(t.left) + pch(t.right));
const D = 16, N = 2 ** (D + 1) - 1, T = 8;
await measure('bt build+check', N * T, () => { let s = 0; for (let i = 0; i < T; i++) s += check(bottomUp(D)); if (s !== N * T) throw new Error('bad'); });
await measure('v8 plain bt', N * T, () => { let s = 0; for (let i = 0; i < T; i++) s += pch(pbu(D)); if (s !== N * T) throw new Error('bad'); });
await measure('alloc only', 1e6, () => { for (let i = 0; i < 1e6; i++) alloc(); }, true);
const t = bottomUp(D);
await measure('check only', N * T, () => { for (let i = 0; i < T; i++) check(t); });
const gi = G.set.i, gl = G.set.left;
await measure('alloc(init) 4f', 1e6, () => { let p = 0; for (let i = 0; i < 1e6; i++) p = G.alloc({ left: p, right: 0, i, j: i }); }, true);
await measure('alloc+set 4f', 1e6, () => { let p = 0; for (let i = 0; i < 1e6; i++) { const n = G.alloc(); gl(n, p); G.set.right(n, 0); gi(n, i); G.set.j(n, i); p = n; } }, true);
await measure('make 4f', 1e6, () => { let p = 0; for (let i = 0; i < 1e6; i++) p = G.make(p, 0, i, i); }, true);
// steady state: trees built into swept (NEEDZERO) spans; collect() outside the timed part
{
  const keep = heap.root(bottomUp(14));
  const res = [];
  for (let r = 0; r < reps; r++) {
    await heap.collect();
    const c0 = cpu();
    let s = 0; for (let i = 0; i < T; i++) s += check(bottomUp(D));
    res.push((cpu() - c0) / (N * T));
  }
  res.sort((a, b) => a - b);
  console.log(`${'bt swept spans'.padEnd(18)} min ${res[0].toFixed(1)} med ${res[res.length >> 1].toFixed(1)} ns/node`);
  keep.release();
}
// half-free swept spans (NEEDZERO): every other slot of the span survives the cycle
{
  const res = [];
  for (let r = 0; r < reps; r++) {
    let chain = 0;
    const keep = heap.root(alloc());
    for (let i = 0; i < N * T; i++) { const n = alloc(); alloc(); setLeft(n, chain); chain = n; if ((i & 1023) === 0) { setRight(keep.get(), chain); } }
    setRight(keep.get(), chain);
    await heap.collect();
    const c0 = cpu();
    let s = 0; for (let i = 0; i < T; i++) s += check(bottomUp(D));
    res.push((cpu() - c0) / (N * T));
    keep.release();
    await heap.collect();
  }
  res.sort((a, b) => a - b);
  console.log(`${'bt half-free'.padEnd(18)} min ${res[0].toFixed(1)} med ${res[res.length >> 1].toFixed(1)} ns/node`);
}
// unchecked accessors (StructType.unchecked): the tree code again, as its own functions
{
  const U = Node.unchecked;
  const uSetLeft = U.set.left, uSetRight = U.set.right, uGetLeft = U.get.left, uGetRight = U.get.right;
  const ubu = (d) => {
    if (d === 0) return alloc();
    const l = ubu(d - 1), r = ubu(d - 1);
    const n = alloc(); uSetLeft(n, l); uSetRight(n, r); return n;
  };
  const uch = (t) => { const l = uGetLeft(t); return l === 0 ? 1 : 1 + uch(l) + uch(uGetRight(t)); };
  await measure('bt unchecked', N * T, () => { let s = 0; for (let i = 0; i < T; i++) s += uch(ubu(D)); if (s !== N * T) throw new Error('bad'); });
}
// splay(): one source, compiled three times (distinct functions, so that each
// has its own type feedback): checked accessors, unchecked ones, plain objects.
{
  const SIZE = 16000, SPLAYS = 200_000;
  const SNode = heap.defineStruct('SNode', { key: 'f64', left: 'ref', right: 'ref' });
  const splaySource = (k, l, r, setL, setR, nil) => `
    let root = ${nil};
    function splay(key) {
      let left = dummy, right = dummy, current = root;
      ${setL('dummy', nil)}; ${setR('dummy', nil)};
      for (;;) {
        if (key < ${k('current')}) {
          let cl = ${l('current')}; if (cl === ${nil}) break;
          if (key < ${k('cl')}) { ${setL('current', r('cl'))}; ${setR('cl', 'current')}; current = cl; cl = ${l('current')}; if (cl === ${nil}) break; }
          ${setL('right', 'current')}; right = current; current = cl;
        } else if (key > ${k('current')}) {
          let cr = ${r('current')}; if (cr === ${nil}) break;
          if (key > ${k('cr')}) { ${setR('current', l('cr'))}; ${setL('cr', 'current')}; current = cr; cr = ${r('current')}; if (cr === ${nil}) break; }
          ${setR('left', 'current')}; left = current; current = cr;
        } else break;
      }
      ${setR('left', l('current'))}; ${setL('right', r('current'))};
      ${setL('current', r('dummy'))}; ${setR('current', l('dummy'))}; root = current;
    }
    function insert(key) {
      if (root === ${nil}) { root = make(key); return; }
      splay(key);
      if (${k('root')} === key) return;
      const n = make(key);
      if (key > ${k('root')}) { ${setL('n', 'root')}; ${setR('n', r('root'))}; ${setR('root', nil)}; }
      else { ${setR('n', 'root')}; ${setL('n', l('root'))}; ${setL('root', nil)}; }
      root = n;
    }
    return { splay, insert };`;
  const heapSplay = (acc) => new Function('G', 'S', 'make', 'dummy', splaySource(
    (x) => `G.key(${x})`, (x) => `G.left(${x})`, (x) => `G.right(${x})`,
    (x, v) => `S.left(${x}, ${v})`, (x, v) => `S.right(${x}, ${v})`, '0'))(acc.get, acc.set, (key) => SNode.alloc({ key }), SNode.alloc());
  class PN { constructor(key) { this.key = key; this.left = null; this.right = null; } }
  const plainSplay = () => new Function('G', 'S', 'make', 'dummy', splaySource(
    (x) => `${x}.key`, (x) => `${x}.left`, (x) => `${x}.right`,
    (x, v) => `${x}.left = ${v}`, (x, v) => `${x}.right = ${v}`, 'null'))(null, null, (key) => new PN(key), new PN(NaN));
  const variants = [['splay checked', heapSplay(SNode)], ['splay unchecked', heapSplay(SNode.unchecked)], ['v8 plain splay', plainSplay()]];
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (const [, v] of variants) { seed = 1; for (let i = 0; i < SIZE; i++) v.insert(random()); }
  const res = variants.map(() => []);
  for (let r = 0; r < reps; r++) {
    variants.forEach(([, v], k) => {
      const c0 = cpu();
      for (let i = 0; i < SPLAYS; i++) v.splay(random());
      res[k].push((cpu() - c0) / SPLAYS);
    });
  }
  variants.forEach(([name], k) => {
    const x = res[k].sort((a, b) => a - b);
    console.log(`${name.padEnd(18)} min ${x[0].toFixed(1)} med ${x[x.length >> 1].toFixed(1)} ns/splay`);
  });
}
await heap.close();
