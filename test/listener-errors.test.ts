// A listener or diagnostics_channel subscriber that throws must never
// change a cycle (src/api/listener-errors.ts): its exception reaches
// 'uncaughtException' on the next tick, and the heap goes on - every cycle
// settles, no child is left behind, no descriptor leaks after close().
// Each case runs in a fixture process (test/fixtures/listener-throws.mjs)
// so the rethrown error cannot disturb the test runner.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/listener-throws.mjs', import.meta.url));

interface Report {
  outcomes: string[]; caught: string[]; thrown: number; phase: string; chain: number; objects: number;
  fdsBefore: number; fdsAfter: number; present: number[];
}

function run(o: Record<string, unknown>): Promise<Report> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [FIXTURE, JSON.stringify(o)], { timeout: 45_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`fixture failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Report);
    });
  });
}

const CASES: Array<{ event: string; mode?: string; fault?: string; sweepThreads?: number; first?: string }> = [
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

describe('a throwing listener never changes the cycle', () => {
  for (const via of ['emitter', 'channel'] as const) {
    for (const c of CASES) {
      if (via === 'channel' && c.event === 'cycle') continue;  // a Heap event only ('sweepEnd' is its channel)
      const name = `${via === 'emitter' ? "heap.on('" + c.event + "')" : 'diagnostics_channel ' + c.event}` +
        `${c.mode ? ` (${c.mode})` : ''}${c.sweepThreads ? ' (sweeper thread)' : ''}`;
      it(name, async () => {
        const r = await run({ mode: 'fork', sweepThreads: 0, fault: null, ...c, via });
        expect(r.caught, 'the exception is reported, once').toEqual([`listener-boom:${c.event}`]);
        expect(r.outcomes).toEqual([c.first ?? 'ok:freed', 'ok:freed', 'ok:freed']);
        expect(r.phase).toBe('idle');
        expect(r.chain).toBe(600);
        expect(r.objects).toBe(600);  // all garbage freed: nothing wedged
        expect(r.present, 'no child left').toEqual([]);
        expect(r.fdsAfter, 'no descriptor leaked after close()').toBe(r.fdsBefore);
      }, 60_000);
    }
  }

  it("a 'once' listener that throws is removed and reported; the cycle completes", async () => {
    const r = await run({ event: 'fork', via: 'once' });
    expect(r.caught).toEqual(['listener-boom:fork']);
    expect(r.thrown).toBe(1);
    expect(r.outcomes).toEqual(['ok:freed', 'ok:freed', 'ok:freed']);
    expect(r.fdsAfter).toBe(r.fdsBefore);
  }, 60_000);
});
