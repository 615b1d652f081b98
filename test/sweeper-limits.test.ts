// Sweeper threads under resource limits (issue 13): a thread that cannot
// start - a pids/thread limit (RLIMIT_NPROC), descriptors exhausted
// (RLIMIT_NOFILE) - leaves the heap sweeping on the main thread: said once
// (a FORKGC_SWEEPER_FALLBACK warning and a 'sweeperFallback' event), every
// cycle completes and frees exactly its garbage, no unhandled 'error'. Each
// case runs test/fixtures/sweeper-limit.mjs in a process of its own with the
// real limit lowered by prlimit(1).
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/sweeper-limit.mjs', import.meta.url));
const prlimitMissing = spawnSync('prlimit', ['--version']).error !== undefined;

/** How to run as uid 65534 (RLIMIT_NPROC is not enforced for root), or why not. */
function unprivileged(): { argv: string[] } | { skip: string } {
  if (process.getuid?.() !== 0) return { argv: [] };
  if (spawnSync('setpriv', ['--version']).error) return { skip: 'setpriv(1) is not installed' };
  const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', '-e', `require('fs').accessSync(${JSON.stringify(FIXTURE)})`]);
  if (probe.status !== 0) return { skip: `uid 65534 cannot run the fixture: ${probe.stderr}` };
  return { argv: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] };
}

interface Out {
  ready: string;
  cycles: Array<{ objectsFreed: number; expected: number; workerSpansSwept: number; intact: boolean }>;
  sweeperFallbackEvents: string[];
  warnings: Array<{ code: string; message: string }>;
  uncaught: string[];
  closed: boolean;
}

function run(kind: string, prefix: string[]): Out {
  const argv = [...prefix, process.execPath, FIXTURE, kind, '4'];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 90_000 });
  expect(r.error, r.stderr).toBeUndefined();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Out;
}

function expectFallback(out: Out, code: RegExp): void {
  expect(out.uncaught).toEqual([]);
  expect(out.closed).toBe(true);
  expect(out.ready).toBe('resolved');
  expect(out.cycles).toHaveLength(4);
  for (const c of out.cycles) {
    expect(c.objectsFreed).toBe(c.expected);
    expect(c.intact).toBe(true);
    expect(c.workerSpansSwept).toBe(0);
  }
  // Said once, with a code, as a warning and as an event.
  expect(out.sweeperFallbackEvents).toHaveLength(1);
  expect(out.sweeperFallbackEvents[0]).toMatch(code);
  expect(out.warnings.filter((w) => w.code === 'FORKGC_SWEEPER_FALLBACK')).toHaveLength(1);
}

describe('sweeper threads under resource limits', () => {
  it.skipIf(prlimitMissing)('descriptors exhausted (RLIMIT_NOFILE): the main thread sweeps, said once', () => {
    expectFallback(run('nofile', []), /EMFILE/);
  }, 120_000);

  const how = unprivileged();
  const skip = prlimitMissing ? 'prlimit(1) is not installed' : 'skip' in how ? how.skip : '';
  if (skip) console.warn(`skipping the real RLIMIT_NPROC sweeper test: ${skip}`);
  it.skipIf(skip !== '')('no thread can be made (RLIMIT_NPROC): the main thread sweeps, said once', () => {
    expectFallback(run('nproc', 'argv' in how ? how.argv : []), /EAGAIN|ERR_WORKER_INIT_FAILED/);
  }, 120_000);
});
