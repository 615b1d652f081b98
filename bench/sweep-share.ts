// How much of the sweep lands on the main thread (issue 3's figure): a
// 256 MiB live-and-dead heap swept while the mutator keeps allocating, with
// 0, 1 and 2 sweeper threads, side by side in one run. Prints, per setting,
// the main thread's share of sweep time (background slices + lazy sweeping,
// against the workers' time), its longest single sweeping stretch, and the
// sweep's wall time. Nothing is asserted.
//
//   node dist/bench/sweep-share.js [--cycles 5] [--heap-mib 256]
import { Heap, type CycleStats } from '../src/index.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const cycles = arg('cycles', 5);
const heapMiB = arg('heap-mib', 256);

async function measure(threads: number): Promise<CycleStats[]> {
  const heap = new Heap({ maxHeap: `${Math.min(4096, heapMiB * 4)}MiB`, auto: false, sweepThreads: threads });
  const Rec = heap.defineStruct('Rec', { next: 'ref', a: 'f64', b: 'u32' });  // 32-byte slots
  const slots = Math.floor((heapMiB * 2 ** 20) / 32);
  const table = heap.root(heap.arrays.alloc(Math.floor(slots / 2)));
  const out: CycleStats[] = [];
  for (let c = 0; c < cycles; c++) {
    // Half the heap live (in the table), half garbage, interleaved in every span.
    const arr = table.get();
    for (let i = 0; i < slots / 2; i++) {
      heap.arrays.set(arr, i, Rec.alloc({ b: i }));
      Rec.alloc();
    }
    const done = heap.collect();
    // The mutator keeps running through the sweep: each event-loop turn it
    // allocates 100 objects (lazy sweeping happens there) and does 0.5 ms of
    // other work, as an application between requests would.
    let sweeping = true;
    void done.then(() => { sweeping = false; }, () => { sweeping = false; });
    while (sweeping) {
      const t = performance.now();
      for (let k = 0; k < 100; k++) Rec.alloc();
      while (performance.now() - t < 0.5) { /* the application's own work */ }
      await new Promise(setImmediate);
    }
    out.push(await done);
  }
  table.release();
  await heap.close();
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`sweep share: ${heapMiB} MiB of 32-byte objects, half garbage, ${cycles} cycles per setting (medians)`);
console.log('threads  main share  main ms  worker ms  longest main stretch ms  sweep wall ms  freed MiB');
for (const threads of [0, 1, 2]) {
  const s = (await measure(threads)).slice(1);  // the first cycle also starts the threads
  const share = s.map((c) => c.mainThreadSweepMs / Math.max(1e-9, c.mainThreadSweepMs + c.workerSweepMs));
  console.log([
    String(threads).padStart(7),
    `${(median(share) * 100).toFixed(1)}%`.padStart(11),
    median(s.map((c) => c.mainThreadSweepMs)).toFixed(1).padStart(8),
    median(s.map((c) => c.workerSweepMs)).toFixed(1).padStart(10),
    median(s.map((c) => c.mainThreadSweepMaxMs)).toFixed(2).padStart(24),
    median(s.map((c) => c.sweepMs)).toFixed(1).padStart(14),
    (median(s.map((c) => c.bytesFreed)) / 2 ** 20).toFixed(0).padStart(10),
  ].join(' '));
}
