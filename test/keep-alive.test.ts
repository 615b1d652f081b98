// While anyone awaits a cycle, the cycle keeps Node's event loop alive
// (src/collector/collector.ts, holdEventLoop): a collect() joined behind an
// automatic cycle - whose pipe and watchdog are unref'd - used to let Node
// exit with the await unsettled (code 13 with top-level await, silently 0
// inside an async main()).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runNodeFixture } from './helpers/fixture.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/collect-behind-auto.mjs', import.meta.url));

describe('await heap.collect() behind an automatic cycle', () => {
  for (const how of ['tla', 'main']) {
    it(`keeps Node alive until it settles (${how === 'tla' ? 'top-level await' : 'async main()'})`, async () => {
      const r = await runNodeFixture(FIXTURE, [how]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('collected 2\ndone\n');
      expect(r.code).toBe(0);
    }, 40_000);
  }
});
