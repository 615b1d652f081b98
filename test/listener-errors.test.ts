// A listener or diagnostics_channel subscriber that throws must never
// change a cycle (src/api/listener-errors.ts): its exception reaches
// 'uncaughtException' on the next tick, and the heap goes on - every cycle
// settles, no child is left behind, no descriptor leaks after close().
// The cases run in a fixture process (test/fixtures/listener-throws.mjs),
// so the rethrown errors cannot disturb the test runner.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/listener-throws.mjs', import.meta.url));

interface Case { event: string; via: string; mode?: string; fault?: string; sweepThreads?: number; first?: string }
interface Report extends Case {
  outcomes: string[]; caught: string[]; thrown: number; phase: string; chain: number; objects: number;
  fdsBefore: number; fdsAfter: number; present: number[];
}

const EVENTS: Array<Omit<Case, 'via'>> = [
  { event: 'cycleStart' },
  { event: 'fork' },
  { event: 'childDone' },
  { event: 'stream' },
  { event: 'sweepStart' },
  { event: 'sweepStart', sweepThreads: 1 },
  { event: 'sweepProgress' },
  { event: 'sweepEnd' },
  { event: 'cycle' },
  { event: 'mark', mode: 'stw' },
  { event: 'abort', fault: 'exit-nonzero', first: 'aborted:CHILD_EXIT' },
  { event: 'fallback', fault: 'fork-eagain' },
];
const CASES: Case[] = [
  ...EVENTS.map((c) => ({ ...c, via: 'emitter' })),
  // 'cycle' is a Heap event only ('sweepEnd' is its channel).
  ...EVENTS.filter((c) => c.event !== 'cycle').map((c) => ({ ...c, via: 'channel' })),
  { event: 'fork', via: 'once' },
  { event: 'predicate', via: 'predicate' },
];

const name = (c: Case) => `${c.via} ${c.event}${c.mode ? ` (${c.mode})` : ''}${c.sweepThreads ? ' (sweeper thread)' : ''}`;

function run(cases: Case[]): Promise<Report[]> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [FIXTURE, JSON.stringify(cases)], { timeout: 150_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`fixture failed: ${err.message}\n${stderr}`));
      resolve(stdout.trim().split('\n').map((l) => JSON.parse(l) as Report));
    });
  });
}

describe('a throwing listener never changes the cycle', () => {
  let reports: Report[] = [];
  beforeAll(async () => { reports = await run(CASES); }, 160_000);

  for (const [k, c] of CASES.entries()) {
    it(name(c), () => {
      const r = reports[k];
      expect(r, 'the fixture reported this case').toBeDefined();
      expect(r.caught, 'the exception is reported, once').toEqual([`listener-boom:${c.event}`]);
      expect(r.outcomes).toEqual([c.first ?? 'ok:freed', 'ok:freed', 'ok:freed']);
      expect(r.phase).toBe('idle');
      expect(r.chain).toBe(600);
      expect(r.objects).toBe(600);  // all garbage freed: nothing wedged
      expect(r.present, 'no child left').toEqual([]);
      expect(r.fdsAfter, 'no descriptor leaked after close()').toBe(r.fdsBefore);
      if (c.via === 'once') expect(r.thrown).toBe(1);
    });
  }
});
