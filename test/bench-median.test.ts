// bench/lib/median-runs.ts: how `npm run bench -- --repeat N` reduces the
// runs of each workload × case × system to the row it reports.
import { describe, expect, it } from 'vitest';
import { medianRuns } from '../bench/lib/median-runs.js';
import { markdown } from '../bench/report.js';

const run = (system: string, wallMs: number, extra: Record<string, unknown> = {}) =>
  ({ workload: 'gcbench', case: 'quick', system, ok: true, wallMs, mainRunMs: wallMs - 10, machineStealMs: 0, marker: `${system}@${wallMs}`, ...extra });

describe('medianRuns', () => {
  it('keeps every run as it is with one run per job', () => {
    const rows = [run('v8', 500), run('forkgc-fork', 1200)];
    expect(medianRuns(rows, 1)).toBe(rows);
  });

  it('reports, per workload × case × system, the whole run of median wall time, with every run\'s walls', () => {
    const rows = [run('v8', 530), run('forkgc-fork', 1300), run('forkgc-fork', 1100), run('v8', 480), run('v8', 510), run('forkgc-fork', 1250)];
    const out = medianRuns(rows, 3);
    expect(out).toHaveLength(2);
    const v8 = out.find((r) => r.system === 'v8')!;
    const fork = out.find((r) => r.system === 'forkgc-fork')!;
    // Every figure from the one median run, not mixed.
    expect(v8.marker).toBe('v8@510');
    expect(v8.mainRunMs).toBe(500);
    expect(fork.marker).toBe('forkgc-fork@1250');
    expect(fork.repeats).toEqual({ runs: 3, wallMs: [1300, 1100, 1250], mainRunMs: [1290, 1090, 1240], stealMs: [0, 0, 0],
      scavenges: [null, null, null] });
    // An even count takes the lower of the two middle runs.
    expect(medianRuns([run('v8', 600), run('v8', 400)], 2)[0].marker).toBe('v8@400');
  });

  it('keeps each run\'s V8 scavenges, which the report shows beside a V8 row\'s walls', () => {
    const minor = (count: number) => ({ v8GcByKind: { minor: { count, totalMs: count * 10 } } });
    const rows = [run('v8', 1529, minor(61)), run('v8', 695, minor(1)), run('v8', 1522, minor(60)),
      run('forkgc-fork', 1900, minor(80)), run('forkgc-fork', 1950, minor(85)), run('forkgc-fork', 2000, minor(90))];
    const out = medianRuns(rows, 3);
    const v8 = out.find((r) => r.system === 'v8')!;
    expect(v8.repeats.scavenges).toEqual([61, 1, 60]);
    const md = markdown({ machine: {}, node: 'v20', kernel: '6.x', date: 'd', mode: 'quick', repeat: 3, skipped: [],
      results: out.map((r) => ({ ...r, case: 'quick' })) });
    expect(md).toContain('1529 [61], 695 [1], 1522 [60]');
    expect(md).toContain('1900, 1950, 2000');  // forkgc's rows: walls alone
  });

  it('reports a failed run when any run of the job failed', () => {
    const rows = [run('v8', 500), run('v8', 490, { ok: false, error: 'timeout after 60 s' }), run('v8', 520)];
    const [r] = medianRuns(rows, 3);
    expect(r.ok).toBe(false);
    expect(r.error).toBe('timeout after 60 s');
    expect(r.repeats).toEqual({ runs: 3, failed: 1 });
    // An output that did not check out counts as a failure too, median or not.
    const [w] = medianRuns([run('v8', 500), run('v8', 900, { verified: false, verifyNote: 'output differs' }), run('v8', 520)], 3);
    expect(w.verified).toBe(false);
    expect(w.repeats).toEqual({ runs: 3, failed: 1 });
  });
});
