// bench/report.ts: a results file's header says how its runs were made.
import { describe, expect, it } from 'vitest';
import { markdown, perRoundRatio, type ResultsFile, type Row } from '../bench/report.js';

const file = (extra: Partial<ResultsFile> = {}): ResultsFile => ({
  machine: { cpu: 'cpu', cores: 2, memBytes: 2 ** 34, thp: 'madvise' }, node: 'v20', kernel: '6.x',
  date: '2026-12-02', mode: 'quick', mainCpu: null, skipped: [], results: [], ...extra,
});

describe('the report header', () => {
  it('says when every run detached an ArrayBuffer first (FORKGC_BENCH_DETACH_BUFFER=1), and only then', () => {
    expect(markdown(file({ detachedBuffer: true }))).toContain('detached an ArrayBuffer before its workload');
    expect(markdown(file())).not.toContain('detached an ArrayBuffer');
  });
});

describe('the per-round ratio (--repeat)', () => {
  const row = (system: string, wallMs: number[], ok = true) =>
    ({ workload: 'gcbench', case: 'c', system, ok, wallMs: wallMs[0], repeats: { runs: wallMs.length, wallMs } }) as unknown as Row;

  it('is the median over rounds of the row\'s wall over V8\'s in the same round', () => {
    // Rounds 3 and 4 ran slow for both: the median runs (500 against 310)
    // say 1.61x, four rounds of five 1.1x or less.
    const v8 = row('v8', [300, 310, 600, 620, 305]);
    const fork = row('forkgc-fork', [330, 320, 600, 650, 500]);
    expect(perRoundRatio(fork, v8)).toBe('1.05');
    expect(perRoundRatio(row('x', [10, 20, 30, 40]), row('v8', [10, 10, 10, 10]))).toBe('2.50');
  });

  it('is – without both rows\' walls, with rounds that do not match, or for a failed row', () => {
    const v8 = row('v8', [300, 310, 305]);
    expect(perRoundRatio(row('a', [1, 2]), v8)).toBe('–');
    expect(perRoundRatio(row('a', [1, 2, 3]), undefined)).toBe('–');
    expect(perRoundRatio(row('a', [1, 2, 3], false), v8)).toBe('–');
    expect(perRoundRatio({ ...row('a', [1]), repeats: undefined } as unknown as Row, v8)).toBe('–');
  });

  it('has a column in a repeated run\'s table and none in a single run\'s', () => {
    const results = [row('v8', [300, 600, 310]), row('forkgc-fork', [330, 660, 320])];
    expect(markdown(file({ repeat: 3, results }))).toContain('× v8 per round');
    expect(markdown(file({ repeat: 3, results }))).toMatch(/\| forkgc-fork \| 330 \| 1\.10 \| 1\.10 \|/);
    expect(markdown(file({ results: results.map((r) => ({ ...r, repeats: undefined })) as Row[] }))).not.toContain('per round');
  });
});
