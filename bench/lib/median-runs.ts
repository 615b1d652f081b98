// --repeat's reduction of runs to rows (bench/run.ts): a module of its own so
// that tests can import it without starting a benchmark run.
import type { Row } from '../report.js';

/**
 * One row per workload × case × system: with one run, that run; with more,
 * the run of median wall time (the lower of the two middle ones for an even
 * count), whole, so that every figure of a row comes from the same process,
 * with the walls and main-thread CPU of all its runs attached (`repeats`). A
 * failed run, or one whose output did not check out (`verified: false`; the
 * runner checks every run before this), makes the row that run: a failure
 * is never averaged away.
 */
export function medianRuns(runs: Row[], repeat: number): Row[] {
  if (repeat === 1) return runs;
  const groups = new Map<string, Row[]>();
  for (const r of runs) {
    const key = `${r.workload}|${r.case}|${r.system}`;
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()].map((g) => {
    const bad = (r: Row) => !r.ok || r.verified === false;
    const failed = g.find(bad);
    if (failed) return { ...failed, repeats: { runs: g.length, failed: g.filter(bad).length } };
    const byWall = [...g].sort((a, b) => a.wallMs - b.wallMs);
    const chosen = byWall[(byWall.length - 1) >> 1];
    return {
      ...chosen,
      repeats: {
        runs: g.length,
        wallMs: g.map((r) => Math.round(r.wallMs)),
        mainRunMs: g.map((r) => (typeof r.mainRunMs === 'number' ? Math.round(r.mainRunMs) : null)),
        stealMs: g.map((r) => (typeof r.machineStealMs === 'number' ? Math.round(r.machineStealMs) : null)),
        // V8's scavenges in each run: which of its two modes a V8 splay run
        // was in (pretenured or not; README, Benchmarks) shows here.
        scavenges: g.map((r) => (typeof r.v8GcByKind?.minor?.count === 'number' ? r.v8GcByKind.minor.count as number : null)),
      },
    };
  });
}
