/**
 * Why the main thread was off its CPU, from the kernel's scheduler trace: how
 * long it was preempted (it left the CPU runnable, state R), asleep (S: a
 * futex, epoll, a timer) or in uninterruptible sleep (D: a lock in the kernel
 * such as the mmap lock a page fault needs, or I/O), and, for the run's
 * longest gaps, what ran on each CPU instead.
 *
 *   perf record -e sched:sched_switch -k mono -a -o sw.data -- \
 *     node dist/bench/child.js '{"workload":"splay","system":"forkgc-fork","params":{...}}' > run.txt
 *   perf script -i sw.data -F comm,pid,tid,cpu,time,event,trace > sw.txt
 *   node dist/bench/sched-waits.js sw.txt [run.txt] [gaps=3]
 *
 * The main thread is that of the process whose threads switched most often
 * (the benchmark's process is the busiest thing on the machine while it
 * runs; its marking children are short-lived processes of their own). Time stolen by
 * the hypervisor never shows here: the guest's scheduler does not see it
 * (lib/thread-clock.ts says how much of a gap was neither running nor
 * waiting). How this was used: docs/performance-log.md, "Where the main thread's time goes".
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export interface Switch {
  /** The process of the thread leaving the CPU. */
  tgid: number;
  cpu: number;
  /** CLOCK_MONOTONIC ms. */
  t: number;
  prev: string;
  prevPid: number;
  /** prev's state as it left the CPU: R (preempted), S, D, ... */
  state: string;
  next: string;
  nextPid: number;
}

// "<comm> <tgid>/<tid> [cpu] <s>: sched:sched_switch: prev_comm=... prev_pid=<tid> ..."
const LINE = /\s(\d+)\/(\d+)\s+\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)/;

export function parse(text: string): Switch[] {
  const out: Switch[] = [];
  for (const l of text.split('\n')) {
    const m = LINE.exec(l);
    if (!m) continue;
    out.push({
      tgid: Number(m[1]), cpu: Number(m[3]), t: Number(m[4]) * 1000, prev: `${m[5]}/${m[6]}`, prevPid: Number(m[6]), state: m[7],
      next: `${m[8]}/${m[9]}`, nextPid: Number(m[9]),
    });
  }
  return out;
}

/** The main thread (its tid is its process's id) of the process that switched most often. */
export function mainThread(ev: Switch[]): number {
  const n = new Map<number, number>();
  for (const e of ev) if (e.tgid !== 0) n.set(e.tgid, (n.get(e.tgid) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1])[0]?.[0] ?? -1;
}

/** The main thread's stretches off its CPU, by the state it left in, and the longest ones. */
export function offCpu(ev: Switch[], main: number): {
  byState: Map<string, { n: number; ms: number; over1: number }>; longest: { state: string; ms: number }[];
} {
  const byState = new Map<string, { n: number; ms: number; over1: number }>();
  const longest: { state: string; ms: number }[] = [];
  let out = -1;
  let state = '';
  for (const e of ev) {
    if (e.prevPid === main) {
      out = e.t;
      state = e.state;
    } else if (e.nextPid === main && out >= 0) {
      const ms = e.t - out;
      const k = byState.get(state) ?? { n: 0, ms: 0, over1: 0 };
      k.n++;
      k.ms += ms;
      if (ms > 1) k.over1++;
      byState.set(state, k);
      longest.push({ state, ms });
      out = -1;
    }
  }
  longest.sort((a, b) => b.ms - a.ms);
  return { byState, longest };
}

function printOffCpu(ev: Switch[], main: number): void {
  const { byState, longest } = offCpu(ev, main);
  console.log(`main thread ${main}, off its CPU by the state it left in:`);
  for (const [s, k] of [...byState].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(`  ${s.padEnd(3)} ${String(k.n).padStart(6)} times, ${k.ms.toFixed(1).padStart(8)} ms, ${k.over1} over 1 ms`);
  }
  console.log(`  longest: ${longest.slice(0, 8).map((l) => `${l.state} ${l.ms.toFixed(1)} ms`).join(', ')}`);
}

interface Gap { gapMs: number; atMs: number }

/** For each of the run's longest gaps: what ran on each CPU, and the main thread's switches. */
function gaps(ev: Switch[], main: number, runPath: string, count: number): void {
  const line = readFileSync(runPath, 'utf8').split('\n').find((l) => l.startsWith('@@RESULT '));
  if (!line) throw new Error(`${runPath}: no @@RESULT line`);
  const row = JSON.parse(line.slice('@@RESULT '.length)) as { runStartMonotonicMs?: number; topGapsMs?: Gap[] };
  if (row.runStartMonotonicMs === undefined || !row.topGapsMs) throw new Error(`${runPath}: no runStartMonotonicMs/topGapsMs`);
  const cpus = [...new Set(ev.map((e) => e.cpu))].sort((a, b) => a - b);
  for (const g of row.topGapsMs.slice(0, count)) {
    const end = row.runStartMonotonicMs + g.atMs;
    const start = end - g.gapMs;
    console.log(`gap of ${g.gapMs} ms ending ${g.atMs} ms into the run:`);
    for (const cpu of cpus) {
      const on = ev.filter((e) => e.cpu === cpu);
      let current = '?';
      for (const e of on) if (e.t <= start) current = e.next;
      const held = new Map<string, number>();
      let t = start;
      for (const e of on) {
        if (e.t <= start || e.t >= end) continue;
        held.set(current, (held.get(current) ?? 0) + (e.t - t));
        if (e.prevPid === main || e.nextPid === main) {
          console.log(`    cpu${cpu} +${(e.t - start).toFixed(2)} ms: ${e.prev} (${e.state}) -> ${e.next}`);
        }
        t = e.t;
        current = e.next;
      }
      held.set(current, (held.get(current) ?? 0) + (end - t));
      const ran = [...held].sort((a, b) => b[1] - a[1]).map(([k, ms]) => `${k} ${ms.toFixed(2)} ms`).join(', ');
      console.log(`  cpu${cpu} ran: ${ran}`);
    }
  }
}

function main(): void {
  const [tracePath, runPath, gapsArg] = process.argv.slice(2);
  if (!tracePath) {
    console.error('usage: sched-waits.js <perf script output> [child output with @@RESULT] [gaps=3]');
    process.exit(2);
  }
  const ev = parse(readFileSync(tracePath, 'utf8'));
  if (ev.length === 0) throw new Error(`${tracePath}: no sched_switch lines (perf script -F comm,pid,tid,cpu,time,event,trace)`);
  const m = mainThread(ev);
  printOffCpu(ev, m);
  if (runPath) gaps(ev, m, runPath, Number(gapsArg ?? 3));
}

// A command when run, a module when imported (test/sched-waits.test.ts).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
