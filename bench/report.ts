/**
 * Renders a results file (run.ts --json) as Markdown (bench/results/latest.md) and
 * hand-written SVG plots (bench/results/*.svg). Also runnable on its own:
 *   node dist/bench/report.js bench/results/latest.json [outDir]
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PALETTE, chart, fmtNum, svgDocument, type Series } from './lib/svg.js';

export interface ResultsFile {
  machine: Record<string, unknown>;
  node: string;
  kernel: string;
  date: string;
  mode: 'quick' | 'full';
  /** Runs per workload × case × system (run.ts --repeat); absent in files made before it. */
  repeat?: number;
  /** The CPU every Node run's main thread was held to (run.ts --main-cpu, lib/main-cpu.ts); null or absent: free. */
  mainCpu?: number | null;
  /** FORKGC_BENCH_DETACH_BUFFER=1: every Node run detached an ArrayBuffer first (bench/child.ts says why). */
  detachedBuffer?: boolean;
  skipped: string[];
  results: Row[];
}

// Rows are ResultRow (child.ts) or peer rows: everything optional here.
export type Row = Record<string, any> & { workload: string; system: string; case: string };

/** The longest gap's window split into on-CPU / waiting for a CPU / neither (lib/thread-clock.ts), or – without one. */
function gapSplit(r: Row): string {
  const g = (r.topGapsMs as { runMs?: number; runDelayMs?: number; offMs?: number }[] | undefined)?.[0];
  if (!g || g.runMs === undefined) return '–';
  return `${num(g.runMs, 1)} / ${num(g.runDelayMs ?? null, 1)} / ${num(g.offMs ?? null, 1)}`;
}

/**
 * Where the main thread ran, as shares of the thread clock's samples ("0:
 * 97%, 1: 3%"), or – for runs without it (peers, runs before it was kept).
 * On the project's VM a memory-bound thread runs at half speed on vCPU 1.
 */
function cpuShares(v: unknown): string {
  if (!v || typeof v !== 'object') return '–';
  const parts = Object.entries(v as Record<string, number>).map(([cpu, share]) => `${cpu}: ${Math.round(share * 100)}%`);
  return parts.length ? parts.join(', ') : '–';
}

const num = (v: unknown, digits = 1): string =>
  typeof v === 'number' && Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(digits)) : '–';
const mibStr = (v: unknown) => (typeof v === 'number' ? (v / 1048576).toFixed(0) : '–');
const kibStr = (v: unknown) => (typeof v === 'number' ? (v / 1024).toFixed(0) : '–');

/** Cycles, and of them how many a fork-mode heap marked in-process (inProcessMarkUs), if any. */
function cyclesCell(r: Row): string {
  if (typeof r.cycles !== 'number') return '–';
  const inProcess = r.forkgcInProcessCycles;
  return typeof inProcess === 'number' && inProcess > 0 && r.system.startsWith('forkgc-fork') ? `${r.cycles} (${inProcess} in-process)` : `${r.cycles}`;
}

function verifiedMark(r: Row): string {
  if (!r.ok) return `✗ ${String(r.error ?? 'failed').slice(0, 60)}`;
  if (r.verified === false) return `✗ ${r.verifyNote ?? 'check failed'}`;
  return r.verified === true ? '✓' : '–';
}

const MAIN = ['binary-trees', 'gcbench', 'lru-cache', 'splay'];

/**
 * The walls of all runs of a repeated row; a V8 row's with the scavenges of
 * each run in brackets, which tell V8's two modes apart (a pretenured splay
 * makes 1-2, one that is not 60 and more).
 */
function repeatWalls(r: Row): string {
  const walls = r.repeats?.wallMs as number[] | undefined;
  if (!walls) return '–';
  const scavenges = r.repeats?.scavenges as (number | null)[] | undefined;
  if (r.system !== 'v8' || !scavenges) return walls.join(', ');
  return walls.map((w, i) => (scavenges[i] === null ? String(w) : `${w} [${scavenges[i]}]`)).join(', ');
}

/**
 * With --repeat: the median over rounds of this row's wall over V8's in the
 * same round. A round runs a case's systems one after another, so on a
 * machine whose speed drifts from one round to the next (walls of every
 * system 30-50% slower in two rounds of five, seen on the project's VM)
 * this compares runs made minutes apart at most, where the ratio of the two
 * median runs may pair a fast round's with a slow one's.
 */
export function perRoundRatio(r: Row, v8: Row | undefined): string {
  const walls = r.repeats?.wallMs as number[] | undefined;
  const base = v8?.repeats?.wallMs as number[] | undefined;
  if (!r.ok || !walls || !base || walls.length !== base.length || walls.length === 0) return '–';
  const ratios = walls.map((w, i) => w / base[i]).sort((a, b) => a - b);
  const mid = ratios.length >> 1;
  const median = ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
  return median.toFixed(2);
}

export function markdown(f: ResultsFile): string {
  const L: string[] = [];
  const m = f.machine as Record<string, any>;
  L.push(`# forkgc benchmarks (${f.mode} run)`);
  L.push('');
  L.push(
    `${f.date} · ${m.cpu} × ${m.cores} cores · ${(Number(m.memBytes) / 2 ** 30).toFixed(0)} GiB · ` +
      `Linux ${f.kernel} · THP ${m.thp} · Node ${f.node}`,
  );
  L.push('');
  L.push('All systems were run side by side in this one run, each workload × system in its own Node process;');
  L.push('the machine is a noisy 2-core VM, so compare ratios within a row group, not absolute figures across runs.');
  if (typeof f.mainCpu === 'number') {
    L.push(`Every Node run's main thread was held to CPU ${f.mainCpu} once set up (taskset, bench/lib/main-cpu.ts), so that the`);
    L.push('mutators of a case ran on the same CPU (on this VM a memory-bound thread has at times run at half speed on vCPU 1).');
    L.push('Threads that existed by then (V8\'s helpers, forkgc\'s sweepers), forkgc\'s marking child and the peers (D, Boehm) were free.');
  } else if (f.mainCpu === null) {
    L.push('Main threads were free to run on any CPU (the default; --main-cpu N holds them to one); see "main thread\'s CPUs".');
  }
  if (f.detachedBuffer) {
    L.push('Every Node run detached an ArrayBuffer before its workload (FORKGC_BENCH_DETACH_BUFFER=1), as a program that has');
    L.push('called fetch() has: V8\'s ArrayBufferDetaching protector is gone, and every typed-array access checks its buffer.');
  }
  if ((f.repeat ?? 1) > 1) {
    L.push(`Every row is the run of median wall time of ${f.repeat} runs, the rounds interleaved (every figure of a row from that one run;`);
    L.push('the walls of all runs are in the last column; for V8 rows, each with its scavenges in brackets).');
    L.push('"× v8 per round" is the median over the rounds of a row\'s wall over V8\'s in the same round, which a machine');
    L.push('whose speed drifts between rounds moves less than the ratio of the two median runs.');
  }
  L.push('');
  if (f.skipped.length) {
    for (const s of f.skipped) L.push(`- ${s}`);
    L.push('');
  }
  L.push('## Workloads');
  L.push('');
  const repeated = (f.repeat ?? 1) > 1;
  L.push(
    `| workload | case | system | wall ms | × v8 |${repeated ? ' × v8 per round |' : ''} GC pause p50 / p99 / max ms | forkgc pause max ms | GC-attributable stall max / total ms | mutator p99 µs | mutator max ms | longest gap: run / wait / off ms | heartbeat max gap ms | main thread run / wait ms | steal ms | main thread's CPUs | peak RSS MiB | cycles | GC pause total ms | sweep total ms | mark ns/obj | ok |${repeated ? ' walls of all runs ms |' : ''}`,
  );
  L.push(`|---|---|---|--:|--:|${repeated ? '--:|' : ''}--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|:-:|${repeated ? '---|' : ''}`);
  for (const w of MAIN) {
    const rows = f.results.filter((r) => r.workload === w);
    const v8 = rows.find((r) => r.system === 'v8' && r.ok);
    for (const r of rows) {
      const ratio = v8 && r.ok && typeof r.wallMs === 'number' ? (r.wallMs / v8.wallMs).toFixed(2) : '–';
      L.push(
        `| ${w} | ${r.case} | ${r.system} | ${num(r.wallMs, 0)} | ${ratio} |${repeated ? ` ${perRoundRatio(r, v8)} |` : ''} ${num(r.p50PauseMs, 2)} / ${num(r.p99PauseMs, 2)} / ${num(r.maxPauseMs, 2)} | ` +
          `${num(r.forkgcPauseMaxMs, 2)} | ${num(r.forkgcStallMaxMs, 2)} / ${num(r.forkgcStallTotalMs, 0)} | ${num(r.opP99Us)} | ${num(r.opMaxMs, 2)} | ${gapSplit(r)} | ${num(r.heartbeatMaxGapMs, 2)} | ${num(r.mainRunMs, 0)} / ${num(r.mainRunDelayMs, 0)} | ${num(r.machineStealMs, 0)} | ${cpuShares(r.mainCpuShares)} | ${mibStr(r.peakRssBytes)} | ${cyclesCell(r)} | ` +
          `${num(r.gcTotalMs, 1)} | ${num(r.forkgcSweepTotalMs, 0)} | ${num(r.markNsPerObject, 1)} | ${verifiedMark(r)} |` +
          (repeated ? ` ${repeatWalls(r)} |` : ''),
      );
    }
  }
  L.push('');
  const sync = f.results.filter((r) => r.workload === 'sync-binary-trees');
  if (sync.length) {
    L.push('## Synchronous binary-trees (one yield per depth level, safepoint() every 32 trees or every tree, default options)');
    L.push('');
    L.push('| case | system | wall ms | cycles | peak heap MiB | peak live MiB | heap / live | GC-attributable stall max / total ms | ok |');
    L.push('|---|---|--:|--:|--:|--:|--:|--:|:-:|');
    for (const r of sync) {
      L.push(
        `| ${r.case} | ${r.system} | ${num(r.wallMs, 0)} | ${r.syncCycles ?? r.cycles ?? '–'} | ${mibStr(r.syncPeakHeapBytes)} | ${mibStr(r.syncPeakLiveBytes)} | ` +
          `${num(r.syncHeapOverLive, 2)} | ${num(r.forkgcStallMaxMs, 2)} / ${num(r.forkgcStallTotalMs, 0)} | ${verifiedMark(r)} |`,
      );
    }
    L.push('');
  }
  const ps = f.results.filter((r) => r.workload === 'pause-scaling');
  if (ps.length) {
    L.push('## Pause scaling');
    L.push('');
    L.push(
      '| target live | system | live MiB (marked) | objects | fork pause ms (max) | fork CPU ms (max) | huge ranges restored/cycle | child mark ms | stw pause ms (max) | mark ns/obj | bitmap KiB | CoW MiB/cycle | parent minor faults/cycle (CycleStats) | sweep ms/cycle (worker ms) | GC stall ms/cycle (max) | THP MiB | mutator p99 µs / max ms during cycles | peak RSS MiB | ok |',
    );
    L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|');
    for (const r of ps) {
      L.push(
        `| ${r.case.replace(/ live$/, '')} | ${r.system} | ${mibStr(r.liveBytes)} | ${typeof r.objects === 'number' ? fmtNum(r.objects) : '–'} | ` +
          `${num(r.forkPauseMs, 2)} (${num(r.forkPauseMaxMs, 2)}) | ${num(r.forkCpuMs, 2)} (${num(r.forkCpuMaxMs, 2)}) | ${num(r.hugeRangesRestored, 0)} | ${num(r.childMarkMs, 1)} | ${num(r.stwPauseMs, 1)} (${num(r.stwPauseMaxMs, 1)}) | ` +
          `${num(r.markNsPerObject, 1)} | ${kibStr(r.bitmapBytes)} | ${typeof r.cowBytes === 'number' ? (r.cowBytes / 1048576).toFixed(1) : 'n/a'} | ` +
          `${typeof r.minorFaultsPerCycle === 'number' ? fmtNum(r.minorFaultsPerCycle) : '–'} (${typeof r.parentMinorFaultsPerCycle === 'number' ? fmtNum(r.parentMinorFaultsPerCycle) : '–'}) | ${num(r.sweepMs, 0)} (${num(r.workerSweepMs, 0)}) | ${num(r.stallMsPerCycle, 1)} (${num(r.maxStallMs, 1)}) | ${mibStr(r.anonHugePagesBytes)} | ${num(r.opP99Us)} / ${num(r.opMaxMs, 2)} | ${mibStr(r.peakRssBytes)} | ${verifiedMark(r)} |`,
      );
    }
    L.push('');
    L.push(
      'v8 rows: "stw pause" is a forced full collection (`gc()`, --expose-gc), the mutator column is V8 under the same churn with its normal incremental/concurrent GC. ' +
        'THP: AnonHugePages of the process after the live set was built (how much of the arena huge pages really cover).',
    );
    L.push('');
  }
  const fp = f.results.filter((r) => r.workload === 'fork-pause-v8');
  if (fp.length) {
    L.push('## Fork pause vs V8 heap (selective fork)');
    L.push('');
    L.push('| case | mappings | fork pause ms median (max) | pause CPU ms median (max) | fork() ms median | selective prepare ms median (max) | ok |');
    L.push('|---|--:|--:|--:|--:|--:|:-:|');
    for (const r of fp) {
      L.push(
        `| ${r.case} | ${typeof r.mappings === 'number' ? fmtNum(r.mappings) : '–'} | ${num(r.forkPauseMs, 2)} (${num(r.forkPauseMaxMs, 2)}) | ` +
          `${num(r.forkCpuMs, 2)} (${num(r.forkCpuMaxMs, 2)}) | ${num(r.forkSyscallMs, 2)} | ${num(r.forkPrepareMs, 3)} (${num(r.forkPrepareMaxMs, 2)}) | ${verifiedMark(r)} |`,
      );
    }
    L.push('');
    L.push(
      'Pause CPU: the forking thread\'s CPU time in the pause (`CycleStats.forkCpuUs`), the pause without preemption: the figure to compare on a loaded machine. ' +
        'Prepare: selective fork\'s share of the pause (`forkPrepareUs`: /proc/self/maps read when the cached runs are stale, MADV_DONTFORK before, MADV_DOFORK after).',
    );
    L.push('');
  }
  const failed = f.results.filter((r) => !r.ok || r.verified === false);
  if (failed.length) {
    L.push('## Failures');
    L.push('');
    for (const r of failed) {
      L.push(`- **${r.workload} × ${r.system}** (${r.case}): ${r.error ?? r.verifyNote ?? 'failed'}`);
      if (typeof r.stderrTail === 'string' && r.stderrTail) {
        const lines = r.stderrTail.split('\n').filter((l: string) => l.trim()).slice(0, 6);
        L.push('  ```');
        for (const l of lines) L.push(`  ${l}`);
        L.push('  ```');
      }
    }
    L.push('');
  }
  L.push('![pause vs live heap](pause-vs-heap.svg)');
  L.push('');
  L.push('![pause distribution](pause-distribution.svg)');
  L.push('');
  L.push('## Columns');
  L.push('');
  L.push('- **GC pause**: pauses reported by the collectors in the process: V8 `gc` PerformanceObserver entries (a forkgc process still runs V8 for its JS objects) plus forkgc `CycleStats.pauseUs` (fork() time in fork mode, the whole marking in stw mode); **forkgc pause** is the latter alone. Peers: their GC\'s own figures (druntime `GC.profileStats`, Boehm collection start→end). Wall time covers the whole run on both sides, setup included (lru-cache\'s fill, splay\'s first inserts: a quarter to a third of the quick walls); the other figures cover the measured phase (lru-cache, splay and pause-scaling exclude their setup). A cycle still in flight when the run ends is not in the cycle figures. Peak RSS is the parent\'s (copy-on-write copies the child keeps are in `cowBytes`).');
  L.push('- **sweep total**: forkgc `CycleStats.sweepMs` summed (workers and lazy sweeping; not a pause by itself, its main-thread share shows in the mutator columns).');
  L.push('- **mutator p99 / max**: gap between consecutive units of mutator work (a request, a splay op, 1024 tree nodes built or checked in binary-trees, 1024 nodes allocated or counted in gcbench): everything the mutator waited for, including safepoints, sweeping and event-loop turns with collector callbacks.');
  L.push('- **longest gap: run / wait / off**: the main thread over the window of its longest mutator gap (the gap plus at most ~1 ms before it), from /proc/thread-self/schedstat: on a CPU, runnable but waiting for a CPU, and neither (blocked, or stolen by the hypervisor). **main thread run / wait**: the same over the whole run; **steal**: the hypervisor\'s take from all CPUs during the run (/proc/stat).');
  L.push('- **heartbeat max gap**: longest gap between callbacks of a 1 ms `setInterval` (workloads yield every ~2 ms).');
  L.push('- **peak RSS**: VmHWM of the process that ran the case (the GC child\'s copy-on-write pages are not included). **cycles**: forkgc cycles, or V8 gc events for v8.');
  L.push('- **mark ns/obj**: forkgc marking time (in the child in fork mode) × 10⁶ / objects marked. **CoW**: `CycleStats.cowBytes` when the library reports it.');
  L.push('');
  return L.join('\n');
}

const PCTS = ['50', '90', '99', '99.9', '99.99', '100'];

export function pauseVsHeapSvg(f: ResultsFile): string {
  const ps = f.results.filter((r) => r.workload === 'pause-scaling' && r.ok && !Number(r.params.betweenMs));
  const series = (name: string, system: string, field: string, dash = false, color?: string): Series => ({
    name,
    color: color ?? PALETTE[system] ?? '#333',
    dash,
    points: ps
      .filter((r) => r.system === system && typeof r[field] === 'number')
      .map((r) => [Number(r.params.liveMiB), r[field] as number] as [number, number])
      .sort((a, b) => a[0] - b[0]),
  });
  const body = chart(
    {
      title: 'Pause vs live heap (log–log)',
      xLabel: 'live heap target (MiB, log scale)',
      yLabel: 'pause (ms, log scale)',
      xLog: true,
      yLog: true,
      width: 890,
      height: 460,
      legendRight: 250,
      xFormat: (v) => (v >= 1024 ? `${+(v / 1024).toFixed(2)} GiB` : `${+v.toFixed(0)} MiB`),
      series: [
        series('forkgc fork pause', 'forkgc-fork', 'forkPauseMs'),
        series('forkgc fork pause (huge pages)', 'forkgc-fork-huge', 'forkPauseMs'),
        series('forkgc stw pause', 'forkgc-stw', 'stwPauseMs'),
        series('forkgc stw pause (huge pages)', 'forkgc-stw-huge', 'stwPauseMs'),
        series('forkgc child marking (concurrent)', 'forkgc-fork', 'childMarkMs', true, '#7f7f7f'),
        series('v8 forced full gc()', 'v8', 'stwPauseMs', true),
        series('v8 max pause under churn', 'v8', 'maxPauseMs'),
        series('forkgc fork: mutator max stall in cycles', 'forkgc-fork', 'opMaxMs', true, '#d62728aa'),
      ],
    },
    0,
    0,
  );
  return svgDocument(890, 460, body, 'forkgc: pause vs live heap size');
}

export function pauseDistributionSvg(f: ResultsFile): string {
  const panelW = 330;
  const panelH = 280;
  const parts: string[] = [];
  MAIN.forEach((w, i) => {
    const rows = f.results.filter((r) => r.workload === w && r.ok);
    const gc: Series[] = rows
      .filter((r) => r.pausePercentilesMs)
      .map((r) => ({
        name: r.system,
        color: PALETTE[r.system] ?? '#333',
        points: PCTS.map((p, j) => [j, r.pausePercentilesMs[p]] as [number, number]),
      }));
    // Peers have only some of the percentiles.
    for (const r of rows.filter((r) => !r.pausePercentilesMs && typeof r.maxPauseMs === 'number')) {
      const pts: [number, number][] = [];
      if (typeof r.p50PauseMs === 'number') pts.push([0, r.p50PauseMs]);
      if (typeof r.p99PauseMs === 'number') pts.push([2, r.p99PauseMs]);
      pts.push([5, r.maxPauseMs]);
      gc.push({ name: r.system, color: PALETTE[r.system] ?? '#333', dash: true, points: pts });
    }
    const op: Series[] = rows
      .filter((r) => r.opPercentilesUs)
      .map((r) => ({
        name: r.system,
        color: PALETTE[r.system] ?? '#333',
        points: PCTS.map((p, j) => [j, r.opPercentilesUs[p] / 1000] as [number, number]),
      }));
    const cats = PCTS.map((p) => (p === '100' ? 'max' : `p${p}`));
    parts.push(
      chart(
        { title: `${w}: GC pauses`, xLabel: 'percentile', yLabel: 'pause (ms, log)', yLog: true, xCategories: cats, series: gc, width: panelW, height: panelH },
        i * panelW,
        0,
      ),
    );
    const unit = rows.find((r) => r.opUnit)?.opUnit ?? 'op';
    parts.push(
      chart(
        { title: `${w}: mutator latency / ${unit}`, xLabel: 'percentile', yLabel: 'latency (ms, log)', yLog: true, xCategories: cats, series: op, width: panelW, height: panelH },
        i * panelW,
        panelH,
      ),
    );
  });
  return svgDocument(panelW * MAIN.length, panelH * 2, parts.join('\n'), 'forkgc: pause distribution per system');
}

export function writeReport(f: ResultsFile, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const files: [string, string][] = [
    ['latest.md', markdown(f)],
    ['pause-vs-heap.svg', pauseVsHeapSvg(f)],
    ['pause-distribution.svg', pauseDistributionSvg(f)],
  ];
  for (const [name, text] of files) writeFileSync(resolve(outDir, name), text);
  return files.map(([n]) => resolve(outDir, n));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node dist/bench/report.js RESULTS.json [outDir]');
    process.exit(2);
  }
  const f = JSON.parse(readFileSync(file, 'utf8')) as ResultsFile;
  for (const p of writeReport(f, process.argv[3] ?? resolve(file, '..'))) console.log(p);
}
