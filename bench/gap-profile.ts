/**
 * What the main thread was doing during a run's longest gaps between two
 * units of work: the CPU-profile samples that fall inside each gap, by stack.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --cpu-prof-interval 100 \
 *     dist/bench/child.js '{"workload":"splay","system":"forkgc-fork","params":{...}}' > /tmp/run.txt
 *   node dist/bench/gap-profile.js /tmp/prof/<the largest .cpuprofile> /tmp/run.txt [gaps] [stacks]
 *
 * The run's result line carries the top gaps (ms after the run's start) and
 * the start on CLOCK_MONOTONIC, which V8's profile timestamps also use. A gap
 * with few samples in it was spent off the CPU: the result line says how
 * much of its window the main thread ran, waited for a CPU (preempted) or
 * neither (blocked, or stolen by the hypervisor; lib/thread-clock.ts), and
 * `perf record -e sched:sched_switch -k mono` over the same run says more
 * (how this was used: docs/performance-log.md, "The waits at the end of marking").
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; startTime: number; samples: number[]; timeDeltas: number[] }
interface Row {
  runStartMonotonicMs?: number;
  topGapsMs?: {
    gapMs: number; atMs: number; windowMs?: number; runMs?: number; runDelayMs?: number; offMs?: number;
    v8GcMs?: number; forkgcStallMs?: number;
  }[];
}

function main(): void {
  const [profilePath, runPath, gapsArg, stacksArg] = process.argv.slice(2);
  if (!profilePath || !runPath) {
    console.error('usage: gap-profile.js <file.cpuprofile> <child output with @@RESULT> [gaps=3] [stacks=8]');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(profilePath, 'utf8')) as Profile;
  const line = readFileSync(runPath, 'utf8').split('\n').find((l) => l.startsWith('@@RESULT '));
  if (!line) throw new Error(`${runPath}: no @@RESULT line`);
  const row = JSON.parse(line.slice('@@RESULT '.length)) as Row;
  if (row.runStartMonotonicMs === undefined || !row.topGapsMs) throw new Error(`${runPath}: the result has no runStartMonotonicMs/topGapsMs`);

  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stack = (id: number): string => {
    const frames: string[] = [];
    for (let q: number | undefined = id; q !== undefined && frames.length < 7; q = parent.get(q)) {
      const f = byId.get(q)!.callFrame;
      frames.push(f.functionName || `(${f.url.split('/').pop() || 'native'})`);
    }
    return frames.join(' < ');
  };
  // Sample times in microseconds on CLOCK_MONOTONIC.
  const times: number[] = [];
  let t = profile.startTime;
  for (const d of profile.timeDeltas) times.push((t += d));

  const gaps = Number(gapsArg ?? 3);
  const stacks = Number(stacksArg ?? 8);
  for (const g of row.topGapsMs.slice(0, gaps)) {
    const endUs = (row.runStartMonotonicMs + g.atMs) * 1000;
    const startUs = endUs - g.gapMs * 1000;
    const counts = new Map<string, number>();
    let n = 0;
    profile.samples.forEach((s, i) => {
      if (times[i] < startUs || times[i] > endUs) return;
      n++;
      const k = stack(s);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    });
    const split = g.runMs === undefined ? '' :
      `; main thread over a ${g.windowMs} ms window: ${g.runMs} ms on a CPU, ${g.runDelayMs} ms waiting for one, ${g.offMs} ms neither`;
    const covered = g.v8GcMs === undefined ? '' :
      `; covered by V8's collections ${g.v8GcMs} ms${g.forkgcStallMs === undefined ? '' : `, by forkgc's own waits ${g.forkgcStallMs} ms`}`;
    console.log(`gap of ${g.gapMs} ms ending ${g.atMs} ms into the run: ${n} samples${split}${covered}`);
    for (const [k, c] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, stacks)) console.log(`  ${String(c).padStart(5)}  ${k}`);
  }
}

main();
