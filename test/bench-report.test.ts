// bench/report.ts: a results file's header says how its runs were made.
import { describe, expect, it } from 'vitest';
import { markdown, type ResultsFile } from '../bench/report.js';

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
