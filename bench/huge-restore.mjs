// What the huge-page restore costs (HeapOptions.restoreHugePages,
// native/huge_page_restore.cc): a heap of `mib` MiB of live trees on huge
// pages; per round, one cycle while the mutator writes scattered leaves (its
// first writes to shared 2 MiB pages split them), a pause for the restore
// thread to merge them back, and the next cycle, whose CycleStats report the
// ranges the thread restored (hugeRangesRestored) and its time
// (hugeRestoreMs). Prints both per round, the time per range, and the fork
// pause of the cycle with writes and of the one after.
//
//   node bench/huge-restore.mjs [dist] [mib] [rounds]
//
// Needs transparent huge pages (madvise or always) and Linux 6.1+
// (MADV_COLLAPSE); where the kernel gives the arena no huge pages, the
// ranges read 0.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = path.resolve(process.argv[2] ?? 'dist');
const mib = Number(process.argv[3] ?? 256);
const rounds = Number(process.argv[4] ?? 4);
const { Heap } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
const MiB = 1 << 20;

const heap = new Heap({ maxHeap: `${mib * 4}MiB`, hugePages: true, auto: false });
const Node = heap.defineStruct('PNode', { left: 'ref', right: 'ref', w: 'f64' });
const tree = (d) => {
  const n = Node.alloc();
  if (d > 0) {
    Node.set.left(n, tree(d - 1));
    Node.set.right(n, tree(d - 1));
  }
  return n;
};
const chunks = Math.floor((mib * MiB) / (2047 * Node.size));
const spine = heap.root(heap.arrays.alloc(chunks));
for (let i = 0; i < chunks; i++) heap.arrays.set(spine.get(), i, tree(10));
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
/** 1000 writes, each to a random leaf. */
const write = () => {
  for (let k = 0; k < 1000; k++) {
    let n = heap.arrays.get(spine.get(), Math.floor(rnd() * chunks));
    for (let d = 0; d < 10; d++) n = rnd() < 0.5 ? Node.get.left(n) : Node.get.right(n);
    Node.set.w(n, Node.get.w(n) + 1);
  }
};

await heap.collect();
for (let r = 0; r < rounds; r++) {
  let done = false;
  const cycle = heap.collect().finally(() => { done = true; });
  while (!done) {
    write();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const written = await cycle;
  await new Promise((resolve) => setTimeout(resolve, 3000));  // time for the thread to merge
  const next = await heap.collect();
  const per = next.hugeRangesRestored > 0 ? (next.hugeRestoreMs / next.hugeRangesRestored).toFixed(2) : '-';
  console.log(`${mib} MiB live: ${next.hugeRangesRestored} ranges restored in ${next.hugeRestoreMs.toFixed(1)} ms ` +
    `(${per} ms a range); fork pause ${(written.pauseUs / 1000).toFixed(2)} ms with writes, ` +
    `${(next.pauseUs / 1000).toFixed(2)} ms after the restore`);
}
spine.release();
await heap.close();
