// A fixture run under one of V8's trace flags (--trace-turbo-inlining,
// --trace-deopt): the tests that read V8's own account of the compiled code
// (not timings) start it the same way, bounded, and check it finished.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

/** Runs test/fixtures/`name` under `flag` (with `args`); returns its stdout's lines (the trace and the fixture's own 'done'). */
export function traceFixture(name: string, flag: string, timeoutMs = 60_000, args: string[] = []): string[] {
  const file = fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
  const r = spawnSync(process.execPath, [flag, file, ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 * 2 ** 20 });
  expect(r.error).toBeUndefined();
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain('done');
  return r.stdout.split('\n');
}
