/**
 * Micro-benchmark of heap maps (issue 14): N string-key inserts and lookups in
 * a forkgc heap map against a V8 Map of the same keys, side by side in one
 * process, alternating, best of R repetitions; and the V8 heap growth that
 * each leaves behind (process.memoryUsage().heapUsed after a full V8 GC), which
 * shows that a heap map makes no V8 object per entry.
 *
 *   node --expose-gc dist/bench/maps-micro.js [--n 1000000] [--reps 3] [--json FILE]
 *
 * Keys: 'user:<i>:<i*7919 mod 1e6>' (~17 ASCII chars). Two lookup flavours:
 * the same string objects as inserted (V8 caches a string's hash in the
 * string, so its lookups skip hashing) and freshly built strings (what a
 * server parsing keys out of requests has), plus misses.
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { loadForkgc, type Heap, type Ref } from './lib/forkgc.js';

interface Args { n: number; reps: number; json: string | null }

function parse(argv: string[]): Args {
  const a: Args = { n: 1_000_000, reps: 3, json: null };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === '--n') { a.n = Number(v); i++; }
    else if (argv[i] === '--reps') { a.reps = Number(v); i++; }
    else if (argv[i] === '--json') { a.json = v; i++; }
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return a;
}

const gc = (globalThis as { gc?: () => void }).gc;
function settle(): number {
  if (gc) { gc(); gc(); }
  return process.memoryUsage().heapUsed;
}

const keyOf = (i: number) => `user:${i}:${(i * 7919) % 1_000_000}`;

interface Times { insertMs: number; lookupSameMs: number; lookupFreshMs: number; missMs: number; v8HeapGrowthBytes: number }

function timeV8(keys: string[], value: number): Times {
  const n = keys.length;
  const before = settle();
  let t = performance.now();
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) m.set(keys[i], value);
  const insertMs = performance.now() - t;
  t = performance.now();
  let hits = 0;
  for (let i = 0; i < n; i++) if (m.get(keys[i]) === value) hits++;
  const lookupSameMs = performance.now() - t;
  t = performance.now();
  for (let i = 0; i < n; i++) if (m.get(keyOf(i)) === value) hits++;
  const lookupFreshMs = performance.now() - t;
  t = performance.now();
  for (let i = 0; i < n; i++) if (m.get(keyOf(i + n)) !== undefined) hits++;
  const missMs = performance.now() - t;
  if (hits !== 2 * n) throw new Error(`v8 Map: ${hits} hits, expected ${2 * n}`);
  const growth = settle() - before;
  if (m.size !== n) throw new Error('v8 Map lost entries');
  return { insertMs, lookupSameMs, lookupFreshMs, missMs, v8HeapGrowthBytes: growth };
}

function timeHeap(heap: Heap, keys: string[]): Times & { heapBytes: number } {
  const n = keys.length;
  const maps = heap.maps;
  const root = heap.root(maps.alloc());
  const m = root.get();
  const value = heap.strings.alloc('the value');
  const before = settle();
  let t = performance.now();
  for (let i = 0; i < n; i++) maps.set(m, keys[i], value);
  const insertMs = performance.now() - t;
  t = performance.now();
  let hits = 0;
  for (let i = 0; i < n; i++) if (maps.get(m, keys[i]) === value) hits++;
  const lookupSameMs = performance.now() - t;
  t = performance.now();
  for (let i = 0; i < n; i++) if (maps.get(m, keyOf(i)) === value) hits++;
  const lookupFreshMs = performance.now() - t;
  t = performance.now();
  for (let i = 0; i < n; i++) if (maps.get(m, keyOf(i + n)) !== 0) hits++;
  const missMs = performance.now() - t;
  if (hits !== 2 * n) throw new Error(`heap map: ${hits} hits, expected ${2 * n}`);
  const growth = settle() - before;
  if (maps.size(m) !== n) throw new Error('heap map lost entries');
  const heapBytes = heap.stats().liveBytes;
  root.release();
  return { insertMs, lookupSameMs, lookupFreshMs, missMs, v8HeapGrowthBytes: growth, heapBytes };
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  if (!gc) console.error('note: run with --expose-gc for the heapUsed figures');
  const lib = await loadForkgc();
  const keys = Array.from({ length: args.n }, (_, i) => keyOf(i));
  const v8Runs: Times[] = [];
  const heapRuns: (Times & { heapBytes: number })[] = [];
  for (let r = 0; r < args.reps; r++) {
    // Alternate the order so neither side always runs on a warmer machine.
    const order = r % 2 === 0 ? ['heap', 'v8'] : ['v8', 'heap'];
    for (const which of order) {
      if (which === 'v8') v8Runs.push(timeV8(keys, 1));
      else {
        const heap = new lib.Heap({ maxHeap: '2GiB', auto: false });
        try {
          heapRuns.push(timeHeap(heap, keys));
        } finally {
          await heap.close();
        }
      }
    }
  }
  const best = <T extends Times>(runs: T[], k: keyof Times) => Math.min(...runs.map((x) => x[k]));
  const row = (k: keyof Times) => {
    const h = best(heapRuns, k);
    const v = best(v8Runs, k);
    return { heapMap: Math.round(h), v8Map: Math.round(v), ratio: Math.round((h / v) * 100) / 100 };
  };
  const result = {
    n: args.n,
    reps: args.reps,
    node: process.version,
    insertMs: row('insertMs'),
    lookupSameKeysMs: row('lookupSameMs'),
    lookupFreshKeysMs: row('lookupFreshMs'),
    missFreshKeysMs: row('missMs'),
    insertPlusLookupRatio: Math.round(((best(heapRuns, 'insertMs') + best(heapRuns, 'lookupSameMs')) /
      (best(v8Runs, 'insertMs') + best(v8Runs, 'lookupSameMs'))) * 100) / 100,
    insertPlusFreshLookupRatio: Math.round(((best(heapRuns, 'insertMs') + best(heapRuns, 'lookupFreshMs')) /
      (best(v8Runs, 'insertMs') + best(v8Runs, 'lookupFreshMs'))) * 100) / 100,
    v8HeapGrowthBytes: {
      heapMap: Math.max(...heapRuns.map((x) => x.v8HeapGrowthBytes)),
      v8Map: Math.min(...v8Runs.map((x) => x.v8HeapGrowthBytes)),
    },
    heapMapArenaBytes: heapRuns[0].heapBytes,
  };
  console.log(JSON.stringify(result, null, 1));
  if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 1));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
