// A cycle the pacer finds due during an allocation starts from the event
// loop (src/api/core.ts, scheduleIfDue) even when the loop then idles. Its
// start was an unref'd immediate alone, which does not stop the loop's poll
// from blocking: made due in a timer's or an immediate's callback, with only
// a far timer left, the cycle forked 5 s later, when that timer woke the
// loop (checked failing before the fix: 5.0-5.3 s in both; from the main
// script too, when nothing else woke the loop). An unref'd timer of a
// millisecond is its backstop now.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runNodeFixture } from './helpers/fixture.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/due-idle-loop.mjs', import.meta.url));

describe('a due cycle starts while the event loop idles', () => {
  for (const where of ['timer', 'immediate']) {
    it(`made due in a${where === 'immediate' ? 'n' : ''} ${where}'s callback, it forks without waiting for the loop's next wake-up`, async () => {
      const r = await runNodeFixture(FIXTURE, [where]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const m = /^forked after ([\d.]+)\n$/.exec(r.stdout);
      expect(m, `stdout: ${r.stdout}`).not.toBeNull();
      // Far below the 5 s timer (a busy CI machine may take a while).
      expect(Number(m![1]), 'ms from the allocation to the fork').toBeLessThan(2500);
    }, 40_000);
  }
});
