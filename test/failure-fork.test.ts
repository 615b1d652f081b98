/**
 * Failure model, part 3: fork() itself fails (issue 4).
 *
 *   - injected (faultInjectionForTesting fork-eagain / fork-enomem: the addon
 *     reports the errno without forking): every such cycle runs stop-the-world
 *     instead and completes (stats.fallback true, childPid 0, exactly the
 *     garbage freed, live data intact); no 'abort' event; the 'fallback' event
 *     and the process warning FORKGC_FALLBACK come ONCE per heap however many
 *     cycles and allocations follow; when fork() works again, cycles fork again;
 *   - for real, in a subprocess run as an unprivileged user (RLIMIT_NPROC is not
 *     enforced for root) that lowers its own RLIMIT_NPROC to 1: the kernel's
 *     EAGAIN reaches the heap, which falls back to stw and says so once.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { FaultKind, Heap } from '../src/index.js';
import { childrenOf, closeHeapsAfterEach, isFreed, makeHeap, withTimeout, type Ref } from './helpers/common.js';

closeHeapsAfterEach();

const FIXTURE = fileURLToPath(new URL('./fixtures/nproc-fallback.mjs', import.meta.url));
const REPO = fileURLToPath(new URL('..', import.meta.url));

function world(heap: Heap, records: number) {
  const Rec = heap.defineStruct('Rec', { next: 'ref', v: 'i32', w: 'f64' });
  const top = heap.arrays.alloc(records);
  const root = heap.root(top);
  for (let i = 0; i < records; i++) {
    heap.arrays.set(top, i, Rec.alloc({ next: i ? heap.arrays.get(top, i - 1) : 0, v: i, w: i / 3 }));
  }
  return {
    garbage(n: number): Ref[] {
      const out: Ref[] = [];
      for (let i = 0; i < n; i++) out.push(Rec.alloc({ next: heap.arrays.get(root.get(), i % records), v: -1 }));
      return out;
    },
    check(): void {
      const t = root.get();
      for (let i = 0; i < records; i++) {
        const r = heap.arrays.get(t, i);
        expect(Rec.get.v(r)).toBe(i);
        expect(Rec.get.w(r)).toBe(i / 3);
        expect(Rec.get.next(r)).toBe(i ? heap.arrays.get(t, i - 1) : 0);
      }
    },
  };
}

/** Collects the FORKGC_FALLBACK warnings emitted while fn runs (and one turn after). */
async function warningsDuring(fn: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const on = (w: Error): void => { if ((w as { code?: string }).code === 'FORKGC_FALLBACK') seen.push(w); };
  // A warning emitted before (process.emitWarning delivers it on a later
  // tick; a test whose cycles all complete synchronously never yields for
  // it) must not count here.
  await new Promise((r) => setImmediate(r));
  process.on('warning', on);
  try {
    await fn();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 10));
  } finally {
    process.off('warning', on);
  }
  return seen;
}

describe('injected fork() failure: stop-the-world instead, said once', () => {
  for (const [kind, errno, text] of [['fork-eagain', 11, /Resource temporarily unavailable/], ['fork-enomem', 12, /Cannot allocate memory/]] as const) {
    it(`${kind}: 10 cycles all run stw (fallback true) and are correct; 'fallback' and FORKGC_FALLBACK once; then forking resumes`, async () => {
      const fault = { on: true };
      const heap = makeHeap({ sweepThreads: 0, faultInjectionForTesting: { kind: kind as FaultKind, cycles: () => fault.on } });
      const w = world(heap, 1000);
      const fallbacks: { reason: string }[] = [];
      const aborts: unknown[] = [];
      heap.on('fallback', (e) => fallbacks.push(e));
      heap.on('abort', (e) => aborts.push(e));
      const forks: number[] = [];
      heap.on('fork', (e) => forks.push(e.pid));
      const children0 = new Set(childrenOf().map((c) => c.pid));

      const warnings = await warningsDuring(async () => {
        for (let i = 0; i < 10; i++) {
          const garbage = w.garbage(100 + i);
          // plenty of allocation between cycles: no warning per allocation
          const keep = heap.arrays.alloc(10);
          heap.root(keep).release();
          const c = await withTimeout(heap.collect(), 10_000, `cycle ${i}`);
          expect(c.mode).toBe('fork');
          expect(c.fallback, `cycle ${i}`).toBe(true);
          expect(c.childPid).toBe(0);
          expect(c.objectsFreed).toBe(garbage.length + 1);
          expect(garbage.every((g) => isFreed(heap, g))).toBe(true);
          w.check();
        }
      });
      expect(forks, 'no child was forked').toEqual([]);
      expect(childrenOf().filter((c) => !children0.has(c.pid))).toEqual([]);
      expect(aborts, 'a fork failure is not an aborted cycle').toEqual([]);
      expect(fallbacks.length, 'one fallback event for 10 failed forks').toBe(1);
      expect(fallbacks[0].reason).toMatch(text);
      expect(fallbacks[0].reason).toContain(`errno ${errno}`);
      expect(warnings.length, 'one FORKGC_FALLBACK warning for 10 failed forks').toBe(1);
      expect(warnings[0].message).toMatch(text);
      const s = heap.stats();
      expect(s.cycles).toBe(10);
      expect(s.abortedCycles).toBe(0);
      expect(s.fallbackCycles).toBeGreaterThanOrEqual(10); // exactly 10: see the next test

      // fork() works again: the next cycle forks; the heap does not say "fallback" again.
      fault.on = false;
      const garbage = w.garbage(10);
      const c = await withTimeout(heap.collect(), 10_000, 'fork again');
      expect(c.fallback).toBe(false);
      expect(c.childPid).toBeGreaterThan(0);
      expect(c.objectsFreed).toBe(garbage.length);
      w.check();
      expect(fallbacks.length).toBe(1);
    }, 30_000);
  }

  it('stats().fallbackCycles counts each cycle that fell back once (fork failure and policy fallback alike)', async () => {
    const heap = makeHeap({ sweepThreads: 0, faultInjectionForTesting: { kind: 'fork-eagain' } });
    world(heap, 10);
    for (let i = 0; i < 4; i++) expect((await heap.collect()).fallback).toBe(true);
    const s = heap.stats();
    expect(s.cycles).toBe(4);
    expect(s.fallbackCycles, 'four cycles fell back').toBe(4);
  }, 30_000);

  it('the fallback is said once per heap: a second heap says it too, once', async () => {
    const heaps = [0, 1].map(() => makeHeap({ sweepThreads: 0, faultInjectionForTesting: { kind: 'fork-eagain' } }));
    const counts = [0, 0];
    heaps.forEach((h, i) => h.on('fallback', () => counts[i]++));
    const warnings = await warningsDuring(async () => {
      for (let round = 0; round < 3; round++) for (const h of heaps) expect((await h.collect()).fallback).toBe(true);
    });
    expect(counts).toEqual([1, 1]);
    expect(warnings.length).toBe(2);
  }, 30_000);

  it('a heap with automatic cycles: many allocation-triggered cycles, one fallback event', async () => {
    const heap = makeHeap({ auto: true, minTriggerBytes: 64 * 1024, sweepThreads: 0, faultInjectionForTesting: { kind: 'fork-enomem' } });
    let fallbacks = 0;
    let cycles = 0;
    heap.on('fallback', () => fallbacks++);
    heap.on('cycle', (c) => { cycles++; expect(c.fallback).toBe(true); });
    const T = heap.defineStruct('T', { v: 'i32' });
    const warnings = await warningsDuring(async () => {
      for (let round = 0; round < 40 && cycles < 5; round++) {
        for (let i = 0; i < 5000; i++) T.alloc({ v: i });
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    expect(cycles).toBeGreaterThanOrEqual(5);
    expect(fallbacks).toBe(1);
    expect(warnings.length).toBe(1);
  }, 30_000);
});

// ---------------------------------------------------------------------------

function readableBy65534(path: string): boolean {
  // Every directory on the way must be searchable by others and the file readable by others.
  try {
    let p = path;
    for (;;) {
      const st = statSync(p);
      if (!(st.mode & (st.isDirectory() ? 0o001 : 0o004))) return false;
      const up = p.replace(/\/[^/]+$/, '') || '/';
      if (up === p) return true;
      p = up;
    }
  } catch {
    return false;
  }
}

/** How to run a command as uid/gid 65534 here, or why not. */
function unprivileged(): { argv: string[] } | { skip: string } {
  if (process.getuid?.() !== 0) return { argv: [] }; // already unprivileged: RLIMIT_NPROC applies to us
  const which = spawnSync('setpriv', ['--version']);
  if (which.error) return { skip: 'setpriv(1) is not installed' };
  const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true']);
  if (probe.status !== 0) return { skip: `setpriv cannot switch to uid 65534: ${probe.stderr}` };
  for (const f of [FIXTURE, `${REPO}dist/index.js`, process.execPath]) {
    if (!readableBy65534(f)) return { skip: `${f} is not readable by uid 65534` };
  }
  return { argv: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] };
}

describe('real fork() failure: RLIMIT_NPROC in an unprivileged subprocess', () => {
  const how = unprivileged();
  const prlimitMissing = spawnSync('prlimit', ['--version']).error !== undefined;
  const skip = 'skip' in how ? how.skip : prlimitMissing ? 'prlimit(1) is not installed' : '';
  if (skip) console.warn(`skipping the real RLIMIT_NPROC test: ${skip}`);

  let run: Promise<{ code: number | null; stdout: string; stderr: string }> | undefined;
  /** Runs the fixture once (shared by the tests below); killed if it overruns. */
  function fixture(): Promise<{ code: number | null; stdout: string; stderr: string }> {
    run ??= (async () => {
      accessSync(FIXTURE, constants.R_OK);
      const argv = 'argv' in how ? [...how.argv, process.execPath, FIXTURE, '6'] : [];
      const child = spawn(argv[0], argv.slice(1), { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => { stdout += d; });
        child.stderr.on('data', (d) => { stderr += d; });
        const code = await withTimeout(new Promise<number | null>((r) => child.on('exit', (c) => r(c))), 30_000, 'nproc fixture');
        return { code, stdout, stderr };
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    })();
    return run;
  }

  it.skipIf(skip !== '')('the kernel refuses the fork (EAGAIN): the heap falls back to stw, frees the right objects, and says so once', async () => {
    const { code, stdout, stderr } = await fixture();
    expect(code, `fixture failed: ${stderr}`).toBe(0);
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out.uid).toBe(process.getuid?.() === 0 ? 65534 : process.getuid?.());
    // Before the limit, the heap forked.
    expect(out.before.childPid).toBeGreaterThan(0);
    expect(out.before.fallback).toBe(false);
    expect(out.limit.status).toBe(0);
    expect(out.probe, 'after prlimit --nproc=1, spawning anything fails with EAGAIN').toBe('EAGAIN');
    // After: every cycle falls back and is correct.
    expect(out.cycles).toHaveLength(6);
    for (const c of out.cycles) {
      expect(c).toMatchObject({ childPid: 0, fallback: true, mode: 'fork', intact: true });
      expect(c.objectsFreed).toBe(c.expected);
    }
    expect(out.aborts).toEqual([]);
    expect(out.fallbackEvents).toHaveLength(1);
    expect(out.fallbackEvents[0]).toMatch(/errno 11/);
    expect(out.warnings.filter((w: { code?: string }) => w.code === 'FORKGC_FALLBACK')).toHaveLength(1);
    expect((stderr.match(/FORKGC_FALLBACK/g) ?? []).length, 'one warning printed').toBe(1);
  }, 40_000);

  it.skipIf(skip !== '')('... and its stats().fallbackCycles is the number of cycles that fell back', async () => {
    const { code, stdout, stderr } = await fixture();
    expect(code, `fixture failed: ${stderr}`).toBe(0);
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out.stats.cycles).toBe(7);
    expect(out.stats.fallbackCycles, '6 of 7 cycles fell back').toBe(6);
  }, 40_000);
});

// Regression (found in review): the child opened its /proc/self/pagemap
// after making itself non-dumpable, which hands the file to root: for any
// unprivileged user cowBytes was always -1 (unknown), and watchCowBudget
// never fired.
describe('an unprivileged child counts the pages its parent copied', () => {
  const COW = fileURLToPath(new URL('./fixtures/cow-count.mjs', import.meta.url));
  const how = unprivileged();
  const skip = 'skip' in how ? how.skip : !readableBy65534(COW) ? `${COW} is not readable by uid 65534` : '';
  if (skip) console.warn(`skipping the unprivileged copy-count test: ${skip}`);
  it.skipIf(skip !== '')('cowBytes is a count (not -1) for uid 65534', () => {
    const argv = 'argv' in how ? [...how.argv, process.execPath, COW] : [];
    const r = spawnSync(argv[0] ?? process.execPath, argv.length ? argv.slice(1) : [COW], { cwd: '/', encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { uid: number; cowBytes: number };
    expect(out.uid).not.toBe(0);
    expect(out.cowBytes, 'the child read its pagemap').toBeGreaterThan(0);
  }, 40_000);
});
