// `npm run demo`: the same churning workload on two heaps, one collecting
// with a forked child and one stop-the-world, and every cycle's figures side
// by side. The pause column is the point: fork() against a whole marking.
import { Heap } from '../index.js';
import type { CycleStats } from '../index.js';

const seconds = Number(process.env.FORKGC_DEMO_SECONDS ?? 4);
const liveRecords = Number(process.env.FORKGC_DEMO_RECORDS ?? 400_000);

interface Run {
  mode: 'fork' | 'stw';
  cycles: CycleStats[];
  ops: number;
  maxTickMs: number;
  rssMiB: number;
}

/**
 * A cache-like workload: a table of `liveRecords` records (a struct with a
 * string and a small array each) rooted by one array; every step replaces
 * records at random and allocates short-lived garbage. It yields to the
 * event loop between batches, which is where cycles start.
 */
async function churn(mode: 'fork' | 'stw'): Promise<Run> {
  const heap = new Heap({ mode, maxHeap: '1GiB', minTriggerBytes: '32MiB' });
  const Rec = heap.defineStruct('Record', { name: 'ref', tags: 'ref', next: 'ref', id: 'u32', score: 'f64' });
  const cycles: CycleStats[] = [];
  heap.on('cycle', (c) => cycles.push(c));
  heap.on('abort', (e) => console.error(`  ${mode}: ${e.message}`));
  const table = heap.root(heap.arrays.alloc(liveRecords));
  const make = (id: number) => {
    const r = Rec.alloc({ id, score: id / 7 });
    Rec.set.name(r, heap.strings.alloc(`record-${id}`));
    const tags = heap.arrays.alloc(3);
    for (let t = 0; t < 3; t++) heap.arrays.set(tags, t, heap.strings.alloc(`t${(id + t) % 97}`));
    Rec.set.tags(r, tags);
    return r;
  };
  for (let i = 0; i < liveRecords; i++) {
    heap.arrays.set(table.get(), i, make(i));
    if ((i & 0xffff) === 0) await new Promise(setImmediate);
  }
  let seed = 42;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  let ops = 0;
  let maxTickMs = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const t0 = performance.now();
    const arr = table.get();
    for (let k = 0; k < 2000; k++) {
      const i = Math.floor(rand() * liveRecords);
      heap.arrays.set(arr, i, make(ops++));
      // Short-lived garbage: a chain that nothing keeps.
      let head = 0;
      for (let j = 0; j < 4; j++) head = Rec.alloc({ next: head, id: j });
    }
    await new Promise(setImmediate);
    maxTickMs = Math.max(maxTickMs, performance.now() - t0);
  }
  await heap.collect();
  const rssMiB = process.memoryUsage().rss / 2 ** 20;
  table.release();
  await heap.close();
  return { mode, cycles, ops, maxTickMs, rssMiB };
}

function row(cells: Array<string | number>, widths: number[]): string {
  return cells.map((c, i) => String(c).padStart(widths[i])).join('  ');
}

async function main(): Promise<void> {
  console.log(`forkgc demo: ${liveRecords.toLocaleString()} live records, churning for ${seconds} s per mode\n`);
  const fork = await churn('fork');
  const stw = await churn('stw');
  const widths = [5, 12, 11, 11, 9, 12, 11, 9];
  console.log(row(['cycle', 'fork pause', 'child mark', 'marked', 'freed', 'stw pause', 'marked', 'freed'], widths));
  console.log(row(['', 'µs', 'ms', 'objects', 'MiB', 'µs', 'objects', 'MiB'], widths));
  const n = Math.max(fork.cycles.length, stw.cycles.length);
  for (let i = 0; i < n; i++) {
    const f = fork.cycles[i];
    const s = stw.cycles[i];
    console.log(row([
      i + 1,
      // A cycle fork mode marked on the main thread (inProcessMarkUs: a live set
      // small enough that its mark takes no longer than a fork) says so.
      f ? f.pauseUs.toFixed(0) : '', f ? (f.marker === 'in-process' ? 'in-process' : f.markMs.toFixed(1)) : '', f ? f.objectsMarked : '',
      f ? (f.bytesFreed / 2 ** 20).toFixed(1) : '',
      s ? s.pauseUs.toFixed(0) : '', s ? s.objectsMarked : '', s ? (s.bytesFreed / 2 ** 20).toFixed(1) : '',
    ], widths));
  }
  const max = (r: Run) => Math.max(0, ...r.cycles.map((c) => c.pauseUs));
  const median = (r: Run) => {
    const p = r.cycles.map((c) => c.pauseUs).sort((a, b) => a - b);
    return p.length ? p[Math.floor(p.length / 2)] : 0;
  };
  console.log('');
  console.log(`fork mode: ${fork.cycles.length} cycles, pause median ${median(fork).toFixed(0)} µs, max ${max(fork).toFixed(0)} µs; ` +
    `${fork.ops.toLocaleString()} replacements; longest event-loop turn ${fork.maxTickMs.toFixed(1)} ms`);
  console.log(`stw mode:  ${stw.cycles.length} cycles, pause median ${median(stw).toFixed(0)} µs, max ${max(stw).toFixed(0)} µs; ` +
    `${stw.ops.toLocaleString()} replacements; longest event-loop turn ${stw.maxTickMs.toFixed(1)} ms`);
  console.log('(a turn is one batch of 2,000 replacements plus all that ran before the event loop came back: the fork or ' +
    'the stop-the-world marking, sweep slices, reading the child\'s bitmap, V8\'s own GC; so it bounds what the ' +
    'application waited, while the pause columns are the collector\'s alone)');
  if (fork.cycles.length && stw.cycles.length) {
    console.log(`median pause, stw / fork: ${(median(stw) / Math.max(1, median(fork))).toFixed(1)}x`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
