// While anyone awaits a cycle, the cycle keeps Node's event loop alive
// (src/collector/collector.ts, holdEventLoop): a collect() joined behind an
// automatic cycle - whose pipe and watchdog are unref'd - used to let Node
// exit with the await unsettled (code 13 with top-level await, silently 0
// inside an async main()).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/collect-behind-auto.mjs', import.meta.url));

function run(how: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [FIXTURE, how], { timeout: 30_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: child.exitCode ?? (err ? -1 : 0), stdout, stderr });
    });
  });
}

describe('await heap.collect() behind an automatic cycle', () => {
  for (const how of ['tla', 'main']) {
    it(`keeps Node alive until it settles (${how === 'tla' ? 'top-level await' : 'async main()'})`, async () => {
      const r = await run(how);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('collected 2\ndone\n');
      expect(r.code).toBe(0);
    }, 40_000);
  }
});
