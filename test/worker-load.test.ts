// How piscina loads the sweeper worker module, and when its threads may be
// ended. Piscina require()s it; for an ES module with a default export,
// Node 20.19+ then builds a facade module around it unless the module
// exports `__esModule`, and aborts the process if the thread is terminated
// while it builds one (which heap.close() did when it came right after
// heap.ready()). sweep-worker.ts exports `__esModule`, so require() returns
// the module's own namespace. Node aborts too if the thread is terminated
// while it instantiates the module, so close() ends the threads only once
// they have booted (src/memory/sweep-pool.ts).
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const WORKER = fileURLToPath(new URL('../dist/memory/sweep-worker.js', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./fixtures/close-after-boot.mjs', import.meta.url));
const DURING_BOOT = fileURLToPath(new URL('./fixtures/close-during-boot.mjs', import.meta.url));

/** Runs a fixture of `rounds` heaps in a Node process of its own: it must end normally, Node's aborts included. */
function survivesRounds(fixture: string, rounds: number): void {
  const r = spawnSync(process.execPath, [fixture, String(rounds)], { encoding: 'utf8', timeout: 90_000 });
  expect(r.error).toBeUndefined();
  expect(r.stderr).not.toContain('Assertion failed');
  expect(r.stderr).not.toContain('FATAL ERROR');
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain('done');
}

describe('the sweeper worker module', () => {
  it('is require()d as its own namespace, with no facade around it, and its default export is the task', () => {
    // In a plain Node process, as in piscina's threads (vitest's own loader
    // would answer require() here).
    const script = `
      const required = require(${JSON.stringify(WORKER)});
      import(${JSON.stringify(pathToFileURL(WORKER).href)}).then((imported) => {
        // A facade would be a second namespace object.
        console.log(JSON.stringify({ same: required === imported, esModule: required.__esModule, task: typeof required.default }));
      });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ same: true, esModule: true, task: 'function' });
  }, 60_000);

  it('survives heaps closed the moment their threads have booted, round after round', () => {
    survivesRounds(FIXTURE, 30);
  }, 120_000);

  it('survives heaps closed while their threads are still starting, at staggered moments, round after round', () => {
    // close() waits for the threads to boot before it ends them; terminated
    // while Node instantiated the module, a thread aborted the process (the
    // fixture, 60 rounds: 2 runs in 10 before).
    survivesRounds(DURING_BOOT, 60);
  }, 120_000);
});
