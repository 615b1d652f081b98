/**
 * Benchmark runner.
 *
 *   node dist/bench/run.js [--full] [--repeat N] [--json FILE] [--only w1,w2] [--systems s1,s2]
 *                          [--no-peers] [--save | --out DIR]
 *
 * Runs every workload × system × case in its own Node process (child.ts) with a
 * timeout, one at a time (the machine has 2 cores and forkgc's marker uses the
 * second), then the peers (peers.ts). Writes the results file
 *   { machine, node, kernel, date, mode, skipped, results: [ {workload, system, wallMs,
 *     maxPauseMs, p99PauseMs, p50PauseMs, peakRssBytes, cycles, ...}, ... ] }
 * to bench/results/local/latest.json (untracked; full runs: .../local/full/), or
 * with --save to the tracked bench/results/latest.json (full: bench/results/full/),
 * and to --json FILE, and renders latest.md and the SVG plots next to it.
 * Nothing is asserted on times: the figures are reported.
 */
import { spawn } from 'node:child_process';
import { cpus, totalmem, release, hostname } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Progress } from './lib/progress.js';
import { cpuModel, thpMode } from './lib/proc.js';
import { forkgcAvailable, packageRoot } from './lib/forkgc.js';
import { buildPeers, peerRuns } from './peers.js';
import { markdown, writeReport, type ResultsFile, type Row } from './report.js';
import { WORKLOADS } from './workloads/index.js';
import { SYSTEMS, type Params, type SystemId } from './workloads/types.js';
import { REFERENCE_OUTPUT, expectedBinaryTrees } from './workloads/binary-trees.js';
import { medianRuns } from './lib/median-runs.js';
import { canHoldMainThread } from './lib/main-cpu.js';

interface Options {
  full: boolean;
  json: string | null;
  only: string[] | null;
  systems: string[] | null;
  peers: boolean;
  out: string;
  /** Write into the tracked bench/results/ (the figures the README quotes) instead of bench/results/local/. */
  save: boolean;
  /** Runs per workload × case × system, interleaved (see medianRuns). */
  repeat: number;
  /** The CPU every Node run's main thread is held to once set up (lib/main-cpu.ts); null: free. */
  mainCpu: number | null;
}

function parseArgs(argv: string[], root: string): Options {
  const o: Options = {
    full: false, json: null, only: null, systems: null, peers: true, out: '', save: false, repeat: 1, mainCpu: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--full') o.full = true;
    else if (a === '--quick') o.full = false;
    else if (a === '--json') o.json = resolve(val());
    else if (a === '--only') o.only = val().split(',');
    else if (a === '--systems') o.systems = val().split(',');
    else if (a === '--no-peers') o.peers = false;
    else if (a === '--save') o.save = true;
    else if (a === '--out') o.out = resolve(val());
    else if (a === '--main-cpu') {
      const v = val();
      o.mainCpu = v === 'none' ? null : Number(v);
      if (o.mainCpu !== null && (!Number.isInteger(o.mainCpu) || o.mainCpu < 0)) throw new Error('--main-cpu needs a CPU number or none');
      if (o.mainCpu !== null && !canHoldMainThread()) throw new Error('--main-cpu: taskset cannot set this process\'s threads here (or one CPU only)');
    } else if (a === '--repeat') {
      o.repeat = Number(val());
      if (!Number.isInteger(o.repeat) || o.repeat < 1 || o.repeat > 15) throw new Error('--repeat needs an integer from 1 to 15');
    }
    else if (a === '--help' || a === '-h') {
      console.log('usage: node dist/bench/run.js [--full] [--repeat N] [--json FILE] [--only w1,w2] [--systems s1,s2] [--no-peers] [--main-cpu N|none] [--save | --out DIR]');
      console.log('--repeat N: run every job N times, the rounds interleaved (odd rounds in reverse order), and report the run of median wall time');
      console.log('results go to bench/results/local/ (untracked; full runs: bench/results/local/full/);');
      console.log('--save writes them to the tracked bench/results/ (full runs: bench/results/full/) instead');
      console.log('--main-cpu N: hold every Node run\'s main thread to CPU N once set up (default none: free)');
      console.log(`workloads: ${WORKLOADS.map((w) => w.name).join(', ')}`);
      console.log(`systems: ${Object.keys(SYSTEMS).join(', ')}, d-gc, d-gc-fork, boehm`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  // Quick and full runs keep separate reports (.../ and .../full/). A run writes
  // to the untracked bench/results/local/ unless --save asks for the tracked
  // bench/results/, the figures the README quotes.
  const base = o.save ? 'bench/results' : 'bench/results/local';
  o.out ||= resolve(root, o.full ? `${base}/full` : base);
  return o;
}

/** druntime's `profile:1` summary, printed at exit; not program output. */
const DRUNTIME_PROFILE = /^(\t(Number of collections|Total GC prep|Total mark|Total sweep|Max Pause|Grand total)|GC summary:)/;

interface ChildOutcome {
  row: Row | null;
  output: string[];
  stderrTail: string;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  wallMs: number;
}

function runProcess(cmd: string, args: string[], timeoutMs: number, cwd: string): Promise<ChildOutcome> {
  return new Promise((resolvePromise) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.length > 16384) stderr = stderr.slice(-8192);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const output: string[] = [];
      let row: Row | null = null;
      for (const line of stdout.split('\n')) {
        if (line.startsWith('@@RESULT ')) row = JSON.parse(line.slice(9)) as Row;
        else if (line.startsWith('@@PEER ')) row = JSON.parse(line.slice(7)) as Row;
        else if (line.startsWith('@@OUT ')) output.push(line.slice(6));
        else if (line.length && !DRUNTIME_PROFILE.test(line)) output.push(line);
      }
      resolvePromise({
        row,
        output,
        stderrTail: stderr.trim().split('\n').slice(-40).join('\n'),
        code,
        signal,
        timedOut,
        wallMs: performance.now() - t0,
      });
    });
  });
}

/** Self-check of the binary-trees closed form against the published outputs. */
function checkReferenceFormula(): void {
  for (const [n, text] of Object.entries(REFERENCE_OUTPUT)) {
    if (expectedBinaryTrees(Number(n)).join('\n') !== text) {
      throw new Error(`binary-trees expected-output formula disagrees with the reference output for n=${n}`);
    }
  }
}

function sameLines(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function main(): Promise<void> {
  const root = packageRoot();
  const opts = parseArgs(process.argv.slice(2), root);
  checkReferenceFormula();
  const childJs = resolve(dirname(fileURLToPath(import.meta.url)), 'child.js');
  const skipped: string[] = [];
  const haveForkgc = forkgcAvailable();
  if (!haveForkgc) skipped.push('skipped forkgc systems (library not built: npm run build / node-gyp rebuild)');

  type Job =
    | { kind: 'node'; workload: string; system: SystemId; params: Params; label: string; flags: string[]; timeoutMs: number }
    | { kind: 'peer'; workload: string; system: string; params: Params; label: string; bin: string; args: string[]; timeoutMs: number };
  const jobs: Job[] = [];
  const expected = new Map<string, string[] | null>();
  for (const w of WORKLOADS) {
    if (opts.only && !opts.only.includes(w.name)) continue;
    for (const params of w.cases(opts.full)) {
      const label = w.label(params);
      expected.set(`${w.name}|${label}`, w.expectedOutput?.(params) ?? null);
      for (const sysId of w.systems(opts.full, params)) {
        if (opts.systems && !opts.systems.includes(sysId)) continue;
        const sys = SYSTEMS[sysId];
        if (sys.kind === 'forkgc' && !haveForkgc) continue;
        jobs.push({
          kind: 'node',
          workload: w.name,
          system: sysId,
          params,
          label,
          flags: w.nodeFlags?.(params, sys) ?? [],
          timeoutMs: w.timeoutMs(params, opts.full),
        });
      }
    }
  }
  if (opts.peers) {
    const bins = buildPeers(root);
    for (const b of bins) if (!b.available) skipped.push(`skipped peer ${b.name} (${b.skipReason})`);
    for (const pr of peerRuns(bins)) {
      if (!pr.binary.available) continue;
      if (opts.only && !opts.only.includes(pr.workload)) continue;
      if (opts.systems && !opts.systems.includes(pr.system)) continue;
      const w = WORKLOADS.find((x) => x.name === pr.workload)!;
      for (const params of w.cases(opts.full)) {
        jobs.push({
          kind: 'peer',
          workload: pr.workload,
          system: pr.system,
          params,
          label: w.label(params),
          bin: pr.binary.binary,
          args: pr.args(params),
          timeoutMs: w.timeoutMs(params, opts.full),
        });
      }
    }
  } else {
    skipped.push('skipped peers (--no-peers)');
  }

  // With --repeat, every job runs once per round and odd rounds run the list
  // backwards, so that the systems of a case alternate in time and a slow
  // spell of the VM (steal, a busy host) falls on each of them alike.
  const order = Array.from({ length: opts.repeat }, (_, r) => (r % 2 === 0 ? jobs : [...jobs].reverse())).flat();
  const progress = new Progress(order.length);
  for (const s of skipped) progress.line(s);
  const runs: Row[] = [];
  const t0 = Date.now();
  for (const job of order) {
    progress.start(`${job.workload} × ${job.system} (${job.label})`);
    const out =
      job.kind === 'node'
        ? await runProcess(
            process.execPath,
            [...job.flags, childJs, JSON.stringify({
              workload: job.workload, system: job.system, params: job.params,
              ...(opts.mainCpu === null ? {} : { mainCpu: opts.mainCpu }),
            })],
            job.timeoutMs,
            root,
          )
        : await runProcess(job.bin, job.args, job.timeoutMs, root);
    let row: Row;
    const base = { workload: job.workload, system: job.system, case: job.label, params: job.params };
    if (out.timedOut) {
      row = { ...base, ok: false, error: `timeout after ${(job.timeoutMs / 1000).toFixed(0)} s`, output: out.output };
    } else if (!out.row || !('wallMs' in out.row)) {
      const why = out.row?.error ?? (out.signal ? `killed by ${out.signal}` : `exit ${out.code}`);
      const firstLines = out.stderrTail.split('\n').filter((l) => l.trim()).slice(0, 1).join('');
      row = {
        ...base,
        ok: false,
        error: `${why}${firstLines ? ` — ${firstLines}` : ''}`,
        stderrTail: out.stderrTail,
        output: out.output,
      };
    } else if (job.kind === 'peer') {
      const p = out.row;
      row = {
        ...base,
        ok: out.code === 0,
        verified: null,
        output: out.output,
        wallMs: p.wallMs,
        processWallMs: Math.round(out.wallMs),
        maxPauseMs: p.maxPauseMs ?? null,
        p99PauseMs: p.p99PauseMs ?? null,
        p50PauseMs: p.p50PauseMs ?? null,
        pausePercentilesMs: null,
        opPercentilesUs: null,
        peakRssBytes: p.maxRssBytes,
        cycles: p.collections,
        gcTotalMs: p.totalPauseMs,
        peer: p,
      };
    } else {
      row = { ...out.row, ...base, processWallMs: Math.round(out.wallMs) } as Row;
      if (out.code !== 0 && row.ok) row = { ...row, ok: false, error: `exit ${out.code}` };
      if (!row.ok && out.stderrTail) row.stderrTail = out.stderrTail;
    }
    runs.push(row);
    const pause = typeof row.maxPauseMs === 'number' ? ` max pause ${row.maxPauseMs.toFixed(2)} ms` : '';
    progress.finish(
      `${row.ok ? 'ok  ' : 'FAIL'} ${job.workload} × ${job.system} (${job.label}): ` +
        (row.ok ? `${Math.round(row.wallMs)} ms,${pause}, peak RSS ${(row.peakRssBytes / 1048576).toFixed(0)} MiB` : row.error),
    );
  }
  progress.end();

  // Output checks: against the expected output where the workload has one, else
  // against the v8 run of the same case (the algorithms are deterministic).
  // Every run is checked, before --repeat keeps one per job: a wrong output
  // in a run that is not the median one must still fail the job.
  for (const r of runs) {
    if (!r.ok || r.workload === 'pause-scaling') continue;
    const exp = expected.get(`${r.workload}|${r.case}`) ?? null;
    const ref = exp ?? runs.find((x) => x.workload === r.workload && x.case === r.case && x.system === 'v8' && x.ok)?.output ?? null;
    if (ref) {
      const match = sameLines(r.output ?? [], ref);
      r.verified = r.verified !== false && match;
      if (!match) r.verifyNote = exp ? 'output differs from the reference output' : 'output differs from the v8 run';
    }
  }
  const results = medianRuns(runs, opts.repeat);

  const file: ResultsFile = {
    machine: { cpu: cpuModel(), cores: cpus().length, memBytes: totalmem(), thp: thpMode(), hostname: hostname() },
    node: process.version,
    kernel: release(),
    date: new Date().toISOString(),
    mode: opts.full ? 'full' : 'quick',
    repeat: opts.repeat,
    mainCpu: opts.mainCpu,
    ...(process.env.FORKGC_BENCH_DETACH_BUFFER === '1' ? { detachedBuffer: true } : {}),
    skipped,
    results,
  };
  mkdirSync(opts.out, { recursive: true });
  const text = JSON.stringify(file, null, 1);
  writeFileSync(resolve(opts.out, 'latest.json'), text);
  if (opts.json) writeFileSync(opts.json, text);
  const written = writeReport(file, opts.out);
  // The tables on stdout too (progress and notes went to stderr).
  const md = markdown(file);
  process.stdout.write(md.slice(md.indexOf('## Workloads'), md.indexOf('![pause vs live heap]')));
  const failed = results.filter((r) => !r.ok || r.verified === false);
  process.stderr.write(
    `${runs.length} runs in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${failed.length} failed or unverified\n` +
      `wrote ${[resolve(opts.out, 'latest.json'), ...(opts.json ? [opts.json] : []), ...written].join(', ')}\n`,
  );
  for (const s of skipped) process.stderr.write(`${s}\n`);
  process.exitCode = failed.length ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
