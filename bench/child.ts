/**
 * Runs ONE workload x system x case in this process (spawned by run.ts, so that
 * peak RSS — a per-process high-water mark — belongs to that run alone), then
 * prints one line `@@RESULT <json>` on stdout. Program output lines (check lines)
 * are printed as `@@OUT <line>`.
 *
 *   node dist/bench/child.js '{"workload":"splay","system":"v8","params":{...}}'
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { percentileOf, percentileTable, round } from './lib/histogram.js';
import { Heartbeat, Meter, V8GcObserver, coveredMs } from './lib/meter.js';
import { machineStealMs, peakRssBytes } from './lib/proc.js';
import { loadForkgc, type CycleStats, type Heap } from './lib/forkgc.js';
import { holdMainThread } from './lib/main-cpu.js';
import { workloadByName } from './workloads/index.js';
import { SYSTEMS, run, type Params, type SystemId } from './workloads/types.js';

export interface ChildSpec {
  workload: string;
  system: SystemId;
  params: Params;
  /** Hold the main thread to this CPU once set up (lib/main-cpu.ts); absent: let it run anywhere. */
  mainCpu?: number;
}

/** One row of the results (see run.ts for the file format). */
export interface ResultRow {
  workload: string;
  case: string;
  system: string;
  params: Params;
  ok: boolean;
  error?: string;
  verified: boolean | null;
  output: string[];
  wallMs: number;
  /** GC pauses as reported by the collectors in this process: V8 gc entries + forkgc CycleStats.pauseUs. */
  maxPauseMs: number | null;
  p99PauseMs: number | null;
  p50PauseMs: number | null;
  pauseCount: number;
  pausePercentilesMs: Record<string, number> | null;
  /** Mutator-observed latency between consecutive meter ticks (one tick per `opUnit`). */
  opUnit: string;
  opCount: number;
  opP50Us: number | null;
  opP99Us: number | null;
  opP999Us: number | null;
  opMaxMs: number | null;
  opPercentilesUs: Record<string, number> | null;
  /** Event-loop heartbeat (1 ms interval), gap between callbacks. */
  heartbeatMaxGapMs: number | null;
  heartbeatP99GapMs: number | null;
  /** The main thread over the run: on a CPU, and runnable but waiting for one (lib/thread-clock.ts). */
  mainRunMs: number | null;
  mainRunDelayMs: number | null;
  /** Share of the thread clock's samples on each CPU (lib/thread-clock.ts): where the main thread ran. */
  mainCpuShares: Record<string, number> | null;
  /** The CPU the main thread was held to for the measured phase (lib/main-cpu.ts), or null if free. */
  mainCpuHeld: number | null;
  /** Time the hypervisor took from the machine's CPUs during the run (all CPUs together). */
  machineStealMs: number | null;
  peakRssBytes: number;
  cycles: number;
  abortedCycles: number;
  /** Mutator-blocking GC time: V8 gc entries + forkgc pauses. */
  gcTotalMs: number;
  v8GcCount: number;
  v8GcTotalMs: number;
  v8GcMaxMs: number | null;
  v8GcByKind: Record<string, { count: number; totalMs: number; maxMs: number }>;
  forkgcPauseMaxMs: number | null;
  forkgcPauseTotalMs: number | null;
  forkgcMarkTotalMs: number | null;
  forkgcSweepTotalMs: number | null;
  markNsPerObject: number | null;
  bitmapBytesTotal: number | null;
  cowBytesTotal: number | null;
  [extra: string]: unknown;
}

/** Per stall kind: total and longest ms over the cycles. */
function stallByKind(cycles: Array<{ stalls?: Record<string, { us: number; maxUs: number; count: number }> }>): Record<string, { totalMs: number; maxMs: number; count: number }> {
  const out: Record<string, { totalMs: number; maxMs: number; count: number }> = {};
  for (const c of cycles) {
    for (const [k, f] of Object.entries(c.stalls ?? {})) {
      const o = (out[k] ??= { totalMs: 0, maxMs: 0, count: 0 });
      o.totalMs = round(o.totalMs + f.us / 1000, 3);
      o.maxMs = Math.max(o.maxMs, round(f.maxUs / 1000, 3));
      o.count += f.count;
    }
  }
  return out;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec;
  const workload = workloadByName(spec.workload);
  const system = SYSTEMS[spec.system];
  if (!system) throw new Error(`unknown system ${spec.system}`);
  const output: string[] = [];
  /** When each output line was printed (ms since the run's start): the workload's phases, for diagnosis. */
  const outputAt: number[] = [];
  // A program that has detached any ArrayBuffer (fetch() does on Node 20,
  // as do WebAssembly memories that grow and transfers) has lost V8's
  // ArrayBufferDetaching protector, and every typed-array access it
  // compiles checks its buffer: forkgc's accessors cost more there
  // (bench/lib/histogram.ts says how the harness once did this by
  // accident). FORKGC_BENCH_DETACH_BUFFER=1 measures that case, on every system.
  if (process.env.FORKGC_BENCH_DETACH_BUFFER === '1') {
    const b = new ArrayBuffer(8);
    structuredClone(b, { transfer: [b] });
  }
  const meter = new Meter(workload.unit);
  const heartbeat = new Heartbeat(() => meter.recording);
  const v8gc = new V8GcObserver();
  const allCycles: (CycleStats & { at: number })[] = [];
  let closing = false;
  const aborts: string[] = [];
  const stalls: [number, number][] = [];
  let heap: Heap | null = null;

  if (system.kind === 'forkgc') {
    const lib = await loadForkgc();
    heap = new lib.Heap({
      mode: system.mode,
      ...(system.hugePages === undefined ? {} : { hugePages: system.hugePages }),
      ...(system.alwaysFork ? { inProcessMarkUs: 0 } : {}),
      ...workload.heapOptions(spec.params, system),
      // Diagnosis: e.g. FORKGC_BENCH_HEAP_OPTIONS='{"checked":true}'.
      ...(process.env.FORKGC_BENCH_HEAP_OPTIONS ? JSON.parse(process.env.FORKGC_BENCH_HEAP_OPTIONS) : {}),
    });
    heap.on('cycle', (c) => {
      if (!closing) allCycles.push({ ...c, at: performance.now() });
    });
    // Every wait the collector attributes to itself, to lay over the longest gaps.
    heap.on('stall', (e) => stalls.push([e.startMs, e.endMs]));
    heap.on('abort', (e) => {
      // close() aborts a cycle in flight (reason CLOSED): that is the harness, not an error.
      if (closing && e.reason === 'CLOSED') return;
      aborts.push(`${e.code ?? ''} ${e.reason ?? ''} ${e.message}`);
    });
    // The sweeper threads boot before the clock starts (about 0.1 s and 0.2 s
    // of CPU), as V8's own helper threads do before any JavaScript runs.
    await heap.ready();
  }
  // Set up: from here the main thread may be held to one CPU, the same for every system of the run.
  const mainCpuHeld = spec.mainCpu === undefined ? null : holdMainThread(spec.mainCpu);

  v8gc.start();
  heartbeat.start(1);
  meter.start();
  const t0 = performance.now();
  const steal0 = machineStealMs();
  let verified: boolean | null = null;
  let extra: Record<string, unknown> = {};
  let error: string | undefined;
  try {
    const r = await run(workload, {
      system,
      params: spec.params,
      meter,
      heap,
      unmeasured: (fn) => {
        const wasRecording = meter.recording;
        meter.recording = false;
        heartbeat.pause();
        const s = performance.now();
        let e = s;
        try {
          fn();
        } finally {
          e = performance.now();
          meter.excluded.push([s, e]);
          heartbeat.resume();
          meter.recording = wasRecording;
          meter.resetClock();
        }
        return e - s;
      },
      out: (line) => {
        output.push(line);
        outputAt.push(performance.now() - t0);
        process.stdout.write(`@@OUT ${line}\n`);
      },
    });
    verified = r.verified;
    extra = r.extra ?? {};
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  const wallMs = performance.now() - t0;
  meter.stop();
  const steal1 = machineStealMs();
  const thread = meter.clock.total();
  heartbeat.stop();
  meter.closeIntervals();
  let heapStats = null;
  if (heap) {
    try {
      heapStats = heap.stats();
      closing = true;
      await heap.close();
    } catch (e) {
      error ??= `close: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  for (const iv of meter.excluded) v8gc.exclude(iv[0], iv[1]);
  await v8gc.stop();
  // Figures cover the measured phase only (setup and forced collections excluded).
  const measured = allCycles.filter((c) => !meter.isExcluded(c.at));

  const forkPausesMs = measured.map((c) => c.pauseUs / 1000);
  const pauses = [...v8gc.pausesMs, ...forkPausesMs];
  const v8Total = v8gc.pausesMs.reduce((a, b) => a + b, 0);
  const forkTotal = forkPausesMs.reduce((a, b) => a + b, 0);
  const marked = measured.reduce((a, c) => a + c.objectsMarked, 0);
  const markMs = measured.reduce((a, c) => a + c.markMs, 0);
  const hasCow = measured.length > 0 && measured.every((c) => typeof c.cowBytes === 'number');
  const nz = (v: number) => (Number.isFinite(v) ? v : null);
  const ticks = meter.ticks;
  const usage = process.resourceUsage();
  const row: ResultRow = {
    workload: spec.workload,
    case: workload.label(spec.params),
    system: spec.system,
    params: spec.params,
    ok: !error && aborts.length === 0,
    ...(error ? { error } : aborts.length ? { error: `aborted cycles: ${aborts.join('; ')}` } : {}),
    verified,
    output,
    wallMs: round(wallMs, 1),
    maxPauseMs: pauses.length ? round(Math.max(...pauses), 3) : null,
    p99PauseMs: pauses.length ? round(percentileOf(pauses, 99), 3) : null,
    p50PauseMs: pauses.length ? round(percentileOf(pauses, 50), 3) : null,
    pauseCount: pauses.length,
    pausePercentilesMs: pauses.length ? percentileTable(pauses) : null,
    opUnit: workload.unit,
    opCount: ticks.count,
    opP50Us: nz(round(ticks.percentile(50) / 1e3, 2)),
    opP99Us: nz(round(ticks.percentile(99) / 1e3, 2)),
    opP999Us: nz(round(ticks.percentile(99.9) / 1e3, 2)),
    opMaxMs: nz(round(ticks.max / 1e6, 3)),
    opPercentilesUs: ticks.count ? percentileTable(ticks, 1e-3) : null,
    heartbeatMaxGapMs: nz(round(heartbeat.gaps.max / 1e6, 3)),
    heartbeatP99GapMs: nz(round(heartbeat.gaps.percentile(99) / 1e6, 3)),
    peakRssBytes: peakRssBytes(),
    // The whole process, setup included, for every system alike (issue 11:
    // first-touch faults of memory the heap gave back and took again).
    processMinorFaults: usage.minorPageFault,
    cpuUserMs: round(usage.userCPUTime / 1000, 1),
    cpuSysMs: round(usage.systemCPUTime / 1000, 1),
    mainRunMs: thread ? round(thread.runMs, 1) : null,
    mainRunDelayMs: thread ? round(thread.runDelayMs, 1) : null,
    mainCpuShares: meter.clock.cpuShares(),
    mainCpuHeld,
    machineStealMs: steal0 === null || steal1 === null ? null : steal1 - steal0,
    cycles: heap ? measured.length : v8gc.pausesMs.length,
    abortedCycles: aborts.length,
    // Fork mode's cycles marked on the main thread (CycleStats.marker; inProcessMarkUs), of `cycles`.
    forkgcInProcessCycles: heap ? measured.filter((c) => c.marker === 'in-process').length : null,
    cyclesIncludingSetup: heap ? allCycles.length : null,
    gcTotalMs: round(v8Total + forkTotal, 2),
    v8GcCount: v8gc.pausesMs.length,
    v8GcTotalMs: round(v8Total, 2),
    v8GcMaxMs: v8gc.pausesMs.length ? round(Math.max(...v8gc.pausesMs), 3) : null,
    v8GcByKind: v8gc.byKind,
    v8GcExcluded: v8gc.excludedCount,
    forkgcPauseMaxMs: heap && measured.length ? round(Math.max(...forkPausesMs), 3) : null,
    forkgcPauseTotalMs: heap ? round(forkTotal, 2) : null,
    forkgcMarkTotalMs: heap ? round(markMs, 2) : null,
    forkgcSweepTotalMs: heap ? round(measured.reduce((a, c) => a + c.sweepMs, 0), 2) : null,
    // GC-attributable stall (CycleStats.stallUs / maxStallUs): every wait of the main thread on
    // the collector, the fork included; total, longest, and per kind (src/collector/stalls.ts).
    forkgcStallTotalMs: heap ? round(measured.reduce((a, c) => a + (c.stallUs ?? 0), 0) / 1000, 2) : null,
    forkgcStallMaxMs: heap && measured.length ? round(Math.max(...measured.map((c) => c.maxStallUs ?? 0)) / 1000, 3) : null,
    forkgcStallByKindMs: heap ? stallByKind(measured) : null,
    forkgcWorkerSweepTotalMs: heap ? round(measured.reduce((a, c) => a + c.workerSweepMs, 0), 2) : null,
    forkgcParentMinorFaultsTotal: heap ? measured.reduce((a, c) => a + (c.parentMinorFaults ?? 0), 0) : null,
    markNsPerObject: heap && marked > 0 ? round((markMs * 1e6) / marked, 2) : null,
    bitmapBytesTotal: heap ? measured.reduce((a, c) => a + c.bitmapBytes, 0) : null,
    cowBytesTotal: hasCow ? measured.reduce((a, c) => a + (c.cowBytes ?? 0), 0) : null,
    yields: meter.yields,
    // When each output line was printed (ms since the start of the run): a
    // workload that prints a line per phase (gcbench: one per depth and
    // construction order) is timed phase by phase, e.g. the warm-up apart
    // from the steady state.
    outputAtMs: outputAt.map((t) => round(t, 1)),
    // Diagnostics: where the longest mutator gaps fell relative to the cycles
    // (ms since the start of the run; a cycle spans [startMs, endMs]), and
    // the start of the run on CLOCK_MONOTONIC (ms), which V8's CPU profiles
    // and `perf record -k mono` also use: bench/gap-profile.ts cuts a
    // profile's samples out of each gap with it.
    runStartMonotonicMs: round(Number(process.hrtime.bigint()) / 1e6 - (performance.now() - t0), 3),
    topGapsMs: meter.topGaps.map(([gap, at]) => {
      const a = meter.clock.over(at - gap, at);
      return {
        gapMs: round(gap, 2), atMs: round(at - t0, 1),
        // What covered the gap itself: V8's collections, and waits forkgc attributes to itself.
        v8GcMs: round(v8gc.overlapMs(at - gap, at), 2),
        ...(heap ? { forkgcStallMs: round(coveredMs(at - gap, at, stalls), 2) } : {}),
        ...(a ? { windowMs: round(a.windowMs, 2), runMs: round(a.runMs, 2), runDelayMs: round(a.runDelayMs, 2), offMs: round(a.offMs, 2) } : {}),
      };
    }),
    cycleTimeline: measured.slice(0, 40).map((c) => ({
      id: c.id,
      trigger: c.trigger,
      startMs: round(c.at - c.totalMs - t0, 1),
      endMs: round(c.at - t0, 1),
      pauseMs: round(c.pauseUs / 1000, 2),
      markMs: round(c.markMs, 1),
      sweepMs: round(c.sweepMs, 1),
    })),
    heapStats,
    ...extra,
  };
  // Diagnosis: FORKGC_BENCH_CYCLES_FILE=path writes every cycle's CycleStats (setup ones included).
  if (process.env.FORKGC_BENCH_CYCLES_FILE) writeFileSync(process.env.FORKGC_BENCH_CYCLES_FILE, JSON.stringify(allCycles));
  process.stdout.write(`@@RESULT ${JSON.stringify(row)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stdout.write(
      `@@RESULT ${JSON.stringify({ ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) })}\n`,
    );
    process.exit(1);
  },
);
