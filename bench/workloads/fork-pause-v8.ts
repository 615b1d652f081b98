/**
 * fork-pause-v8: the fork pause against the size of V8's heap, at a fixed
 * forkgc arena, plain fork vs selective fork (issue 12 item 4).
 *
 * fork() copies the page tables of every private mapping with pages; V8's heap
 * is thousands of such mappings that the GC child never reads. With selective
 * fork (HeapOptions.selectiveFork, native/fork_exclusion.h) they are marked
 * MADV_DONTFORK around the fork. Each case builds `v8MiB` MiB of plain JS
 * objects (held for the whole run), then `liveMiB` MiB of live forkgc binary
 * trees, then runs one warm-up and `cycles` measured explicit cycles with a
 * little mutator work (scattered writes) between them. One more pair of cases
 * holds `bufferMiB` MiB of Buffers instead of JS objects (each 64 MiB Buffer
 * is its own mmap full of pages: where fork() spends its time, and what
 * selective fork excludes; V8's own 256 KiB pages it leaves to fork, see
 * native/fork_exclusion.cc, kMinExcludedBytes).
 *
 * Figures (median and max over the measured cycles): the fork pause
 * (CycleStats.pauseUs), the fork() system call alone (forkUs), and selective
 * fork's own cost inside the pause (forkPrepareUs: /proc/self/maps read and
 * MADV_DONTFORK before, MADV_DOFORK after), and the pause's CPU time on the
 * forking thread (forkCpuUs: the pause without preemption, the figure to
 * compare on a loaded machine); the process's mapping count.
 *
 *   Tree | left: ref | right: ref | w: f64 |
 */
import { readFileSync } from 'node:fs';
import { mulberry32 } from '../lib/rng.js';
import { percentileOf, round } from '../lib/histogram.js';
import type { CycleStats, Ref } from '../lib/forkgc.js';
import { mib, needHeap, type RunContext, type Workload, type WorkloadResult } from './types.js';

export interface ForkPauseV8Params extends Record<string, number> {
  v8MiB: number;
  /** Buffers held besides (64 MiB each, filled). */
  bufferMiB: number;
  liveMiB: number;
  /** 1: selective fork; 0: plain fork. */
  selective: number;
  cycles: number;
}

const DEPTH = 10;

class Ballast {
  a: Ballast | null = null;
  b: Ballast | null = null;
  n = 0;
  s = '';
}

/** Plain JS objects until V8's heapUsed reaches `bytes`; returned so they stay live. */
function buildV8Heap(bytes: number): Ballast[][] {
  const keep: Ballast[][] = [];
  while (process.memoryUsage().heapUsed < bytes) {
    const row: Ballast[] = [];
    let prev: Ballast | null = null;
    for (let i = 0; i < 4096; i++) {
      const o = new Ballast();
      o.a = prev;
      o.n = i;
      o.s = i % 64 === 0 ? `s${i}` : '';
      row.push(o);
      prev = o;
    }
    keep.push(row);
  }
  return keep;
}

function mappingCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1;
}

async function forkgc(ctx: RunContext<ForkPauseV8Params>): Promise<WorkloadResult> {
  const heap = needHeap(ctx);
  const meter = ctx.meter;
  const p = ctx.params;
  const rnd = mulberry32(11);
  meter.setup();
  const ballast = buildV8Heap(mib(p.v8MiB));
  const buffers: Buffer[] = [];
  for (let i = 0; i < p.bufferMiB / 64; i++) buffers.push(Buffer.alloc(mib(64), 1));
  const v8HeapUsed = process.memoryUsage().heapUsed;

  const Tree = heap.defineStruct('Tree', { left: 'ref', right: 'ref', w: 'f64' });
  const chunkBytes = (2 ** (DEPTH + 1) - 1) * Tree.size;
  const chunks = Math.ceil(mib(p.liveMiB) / chunkBytes);
  const spine = heap.root(heap.arrays.alloc(chunks));
  const build = (d: number): Ref => {
    const n = Tree.alloc();
    if (d > 0) {
      const l = build(d - 1);
      const r = build(d - 1);
      Tree.set.left(n, l);
      Tree.set.right(n, r);
    }
    return n;
  };
  for (let i = 0; i < chunks; i++) {
    heap.arrays.set(spine.get(), i, build(DEPTH));
    if ((i & 15) === 0) meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  await heap.collect(); // warm-up
  const mappings = mappingCount();

  meter.begin();
  const measured: CycleStats[] = [];
  for (let i = 0; i < p.cycles; i++) {
    // A little mutator work between cycles: scattered writes into the trees.
    for (let k = 0; k < 2000; k++) {
      let n = heap.arrays.get(spine.get(), Math.floor(rnd() * chunks));
      for (let d = 0; d < DEPTH; d++) n = rnd() < 0.5 ? Tree.get.left(n) : Tree.get.right(n);
      Tree.set.w(n, Tree.get.w(n) + 1);
      meter.tick();
    }
    measured.push(await heap.collect());
    await meter.yield();
  }
  meter.end();
  spine.release();

  const ms = (f: (c: CycleStats) => number | undefined) => measured.map((c) => (f(c) ?? 0) / 1000);
  const med = (v: number[]) => round(percentileOf(v, 50), 3);
  const max = (v: number[]) => round(Math.max(...v), 3);
  const pause = ms((c) => c.pauseUs);
  const fork = ms((c) => c.forkUs);
  const prep = ms((c) => c.forkPrepareUs);
  const cpu = ms((c) => c.forkCpuUs);
  return {
    verified: null,
    extra: {
      v8HeapUsed,
      ballastRows: ballast.length + buffers.length,
      mappings,
      selectiveForked: measured.filter((c) => c.selectiveFork).length,
      forkPauseMs: med(pause),
      forkPauseMaxMs: max(pause),
      forkSyscallMs: med(fork),
      forkSyscallMaxMs: max(fork),
      forkCpuMs: med(cpu),
      forkCpuMaxMs: max(cpu),
      forkPrepareMs: med(prep),
      forkPrepareMaxMs: max(prep),
      liveBytes: measured[measured.length - 1].bytesMarked,
    },
  };
}

export const forkPauseV8: Workload<ForkPauseV8Params> = {
  name: 'fork-pause-v8',
  unit: 'scattered write between cycles',
  cases: (full) => {
    const sizes = full ? [0, 512, 1536] : [0, 128, 384];
    const out: ForkPauseV8Params[] = [];
    const liveMiB = full ? 512 : 128;
    const cycles = full ? 25 : 12;
    for (const v8MiB of sizes) {
      for (const selective of [0, 1]) out.push({ v8MiB, bufferMiB: 0, liveMiB, selective, cycles });
    }
    for (const selective of [0, 1]) out.push({ v8MiB: 0, bufferMiB: full ? 1024 : 256, liveMiB, selective, cycles });
    return out;
  },
  label: (p) =>
    `${p.bufferMiB ? `Buffers ${p.bufferMiB} MiB` : `V8 ${p.v8MiB >= 1024 ? `${p.v8MiB / 1024} GiB` : `${p.v8MiB} MiB`}`}, ` +
    `${p.liveMiB} MiB live, ${p.selective ? 'selective' : 'plain'} fork`,
  systems: () => ['forkgc-fork-huge'],
  heapOptions: (p) => ({
    maxHeap: Math.ceil(p.liveMiB * 1.5 + 128) * 2 ** 20,
    auto: false,
    hugePages: true,
    selectiveFork: p.selective === 1,
  }),
  nodeFlags: (p) => [`--max-old-space-size=${Math.ceil(p.v8MiB * 2 + 512)}`],
  timeoutMs: (p, full) => (full ? 600_000 : 120_000) + p.v8MiB * 200,
  plain: () => Promise.reject(new Error('fork-pause-v8 measures forkgc only')),
  forkgc,
};
