/**
 * Soak test (not in CI): N minutes of cache-like churn at a steady live size on
 * one forkgc heap (the lru-cache workload's forkgc variant with a time limit).
 * Samples RSS, open descriptors (/proc/self/fd) and child processes (/proc/<pid>/stat
 * ppid) at the start, every `--sample-s` seconds, at the end and after heap.close();
 * counts cycles and every error the heap reports (heap.on('abort')). Prints a
 * summary table; exits 1 on an error, an aborted cycle, or a leak after close
 * (descriptors above the start count, a child process or zombie left). The start
 * is taken after a warm-up heap has run one cycle and closed, so process-lifetime
 * descriptors are not mistaken for leaks.
 *
 *   node dist/bench/soak.js [--minutes 10] [--mode fork|stw] [--capacity 200000]
 *                           [--huge-pages] [--sample-s 10] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { Progress } from '../src/tools/progress.js';
import { performance } from 'node:perf_hooks';
import { Meter } from './lib/meter.js';
import { loadForkgc, type CycleStats } from './lib/forkgc.js';
import { childPids, currentRssBytes, openFdCount, openFds, peakRssBytes, zombieChildren } from './lib/proc.js';
import { lruCache } from './workloads/lru-cache.js';
import { SYSTEMS } from './workloads/types.js';

interface Sample {
  atS: number;
  rssMiB: number;
  fds: number | null;
  children: number;
  cycles: number;
}

function args() {
  const a = process.argv.slice(2);
  const o = { minutes: 10, mode: 'fork' as 'fork' | 'stw', capacity: 200_000, hugePages: false, sampleS: 10, json: '' };
  for (let i = 0; i < a.length; i++) {
    const v = () => a[++i];
    if (a[i] === '--minutes') o.minutes = Number(v());
    else if (a[i] === '--mode') o.mode = v() as 'fork' | 'stw';
    else if (a[i] === '--capacity') o.capacity = Number(v());
    else if (a[i] === '--huge-pages') o.hugePages = true;
    else if (a[i] === '--sample-s') o.sampleS = Number(v());
    else if (a[i] === '--json') o.json = v();
    else {
      console.error(`unknown argument ${a[i]}\nusage: node dist/bench/soak.js [--minutes N] [--mode fork|stw] [--capacity N] [--huge-pages] [--sample-s S] [--json FILE]`);
      process.exit(2);
    }
  }
  if (!(o.minutes > 0)) throw new Error('--minutes must be > 0');
  return o;
}

async function main(): Promise<void> {
  const o = args();
  const lib = await loadForkgc();
  const cycles: CycleStats[] = [];
  const errors: string[] = [];
  const t0 = performance.now();
  const sample = (): Sample => ({
    atS: Math.round((performance.now() - t0) / 100) / 10,
    rssMiB: Math.round(currentRssBytes() / 1048576),
    fds: openFdCount(),
    children: childPids().length,
    cycles: cycles.length,
  });
  // Warm-up heap: one cycle, then closed. Descriptors that the process keeps for
  // its lifetime once a first heap has run (worker-thread stdio, caches) are then
  // part of the baseline, and only growth across the soak counts as a leak.
  {
    const warm = new lib.Heap({ mode: o.mode, maxHeap: '64MiB' });
    const T = warm.defineStruct('SoakWarmup', { next: 'ref' });
    const r = warm.root(T.alloc());
    await warm.collect();
    r.release();
    await warm.close();
    await new Promise((res) => setTimeout(res, 100));
  }
  const start = sample();
  const fdsAtStart = openFds();
  const heap = new lib.Heap({ mode: o.mode, hugePages: o.hugePages, maxHeap: o.capacity >= 500_000 ? '3GiB' : '1GiB' });
  heap.on('cycle', (c) => cycles.push(c));
  heap.on('abort', (e) => errors.push(`${new Date().toISOString()} abort ${e.code ?? ''} ${e.reason ?? ''}: ${e.message}`));
  heap.on('fallback', (info) => errors.push(`${new Date().toISOString()} fallback: ${JSON.stringify(info)}`));

  // A bar on a terminal (the sample lines stay above it); elsewhere the sample lines are the progress.
  const progress = new Progress({ total: o.minutes * 60, unit: 's', plainEveryMs: Infinity });
  const samples: Sample[] = [start];
  const maxima = { rssMiB: start.rssMiB, fds: start.fds ?? 0, children: start.children };
  const timer = setInterval(() => {
    const s = sample();
    samples.push(s);
    maxima.rssMiB = Math.max(maxima.rssMiB, s.rssMiB);
    maxima.fds = Math.max(maxima.fds, s.fds ?? 0);
    maxima.children = Math.max(maxima.children, s.children);
    progress.line(
      `soak ${s.atS.toFixed(0)}s / ${o.minutes * 60}s: RSS ${s.rssMiB} MiB, fds ${s.fds}, children ${s.children}, cycles ${s.cycles}, errors ${errors.length}`,
    );
  }, o.sampleS * 1000);
  timer.unref();
  // Children are short-lived (one per cycle): look for them, and for zombies, every second.
  let maxZombies = 0;
  const childTimer = setInterval(() => {
    maxima.children = Math.max(maxima.children, childPids().length);
    maxZombies = Math.max(maxZombies, zombieChildren().length);
    progress.update(Math.round((performance.now() - t0) / 1000), `soak, ${cycles.length} cycles, ${errors.length} errors`);
  }, 1000);
  childTimer.unref();

  const meter = new Meter(lruCache.unit);
  meter.start();
  let verified: boolean | null = null;
  let requestsDone = 0;
  let output = '';
  try {
    const r = await lruCache.forkgc({
      system: SYSTEMS[o.mode === 'fork' ? (o.hugePages ? 'forkgc-fork-huge' : 'forkgc-fork') : o.hugePages ? 'forkgc-stw-huge' : 'forkgc-stw'],
      params: { capacity: o.capacity, requests: Number.MAX_SAFE_INTEGER, durationMs: o.minutes * 60_000 },
      meter,
      heap,
      out: (line) => (output = line),
      unmeasured: (fn) => {
        const s = performance.now();
        fn();
        return performance.now() - s;
      },
    });
    verified = r.verified;
    requestsDone = Number(r.extra?.requestsDone ?? 0);
  } catch (e) {
    errors.push(`workload: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  clearInterval(timer);
  clearInterval(childTimer);
  progress.stop();
  const end = sample();
  samples.push(end);
  // RSS trend after warm-up: from the first sample past a quarter of the run to the end.
  const warm = samples.find((x) => x.atS >= (o.minutes * 60) / 4) ?? start;
  const rssSlope = end.atS > warm.atS ? ((end.rssMiB - warm.rssMiB) / (end.atS - warm.atS)) * 60 : 0;
  const stats = heap.stats();
  await heap.close();
  await new Promise((r) => setTimeout(r, 200)); // let a last child be reaped
  const closed = sample();
  const zombies = zombieChildren();
  const fdsAfter = openFds();
  const newFds = [...fdsAfter].filter(([fd, target]) => fdsAtStart.get(fd) !== target).map(([fd, t]) => `${fd} -> ${t}`);

  const row = (name: string, f: (s: Sample) => unknown, max: unknown) =>
    `| ${name.padEnd(16)} | ${String(f(start)).padStart(8)} | ${String(f(end)).padStart(8)} | ${String(f(closed)).padStart(12)} | ${String(max).padStart(8)} |`;
  const lines = [
    '',
    `forkgc soak: ${o.minutes} min, mode ${o.mode}${o.hugePages ? ' + huge pages' : ''}, ${o.capacity} records`,
    '',
    '| metric           |    start |      end | after close |      max |',
    '|------------------|---------:|---------:|------------:|---------:|',
    row('RSS MiB', (s) => s.rssMiB, maxima.rssMiB),
    row('open fds', (s) => s.fds, maxima.fds),
    row('child processes', (s) => s.children, maxima.children),
    row('cycles', (s) => s.cycles, '–'),
    '',
    `requests ${requestsDone} (${(requestsDone / (o.minutes * 60)).toFixed(0)}/s), ${output}`,
    `cycles ${cycles.length} (heap.stats: ${stats.cycles} done, ${stats.abortedCycles} aborted), max pause ${(stats.maxPauseUs / 1000).toFixed(2)} ms, ` +
      `request latency p99 ${(meter.ticks.percentile(99) / 1e3).toFixed(1)} µs / max ${(meter.ticks.max / 1e6).toFixed(2)} ms`,
    `RSS trend after warm-up (${warm.atS.toFixed(0)}s..${end.atS.toFixed(0)}s): ${rssSlope >= 0 ? '+' : ''}${rssSlope.toFixed(1)} MiB/min; zombies seen during the run (1 s sampling): max ${maxZombies}`,
    `peak RSS ${(peakRssBytes() / 1048576).toFixed(0)} MiB; heap ${(stats.heapBytes / 1048576).toFixed(0)} MiB committed, ${(stats.liveBytes / 1048576).toFixed(0)} MiB live`,
    `errors: ${errors.length}${errors.length ? '\n  ' + errors.slice(0, 20).join('\n  ') : ''}`,
    `zombie children after close: ${zombies.length}; self-check: ${verified === false ? 'FAILED' : 'ok'}`,
    `descriptors open after close that were not open at start: ${newFds.length ? newFds.join(', ') : 'none'}`,
  ];
  console.log(lines.join('\n'));
  const leak =
    (closed.fds !== null && start.fds !== null && closed.fds > start.fds) || closed.children > 0 || zombies.length > 0;
  if (o.json) {
    writeFileSync(o.json, JSON.stringify({ options: o, start, end, closed, maxima, rssSlopeMiBPerMin: rssSlope, maxZombies, samples, errors, zombies, requestsDone, stats, cycles: cycles.length }, null, 1));
  }
  if (leak) console.log('LEAK: descriptors or child processes left after close');
  process.exitCode = errors.length || stats.abortedCycles || leak || verified === false ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
