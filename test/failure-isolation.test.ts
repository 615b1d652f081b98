/**
 * Failure model, part 4: things the child must never do to the application
 * (issue 4; docs/design.md, 'The child'). Each with a real fork, real signals, real
 * sockets on 127.0.0.1:
 *
 *   - outlive its parent: a Node process with a cycle in flight (child held
 *     by delay-before-mark 60 s) is SIGKILLed, or exits on its own: the child
 *     is gone within 1 s (PR_SET_PDEATHSIG);
 *   - hold the application's sockets: a connection the application closes
 *     while a child is alive is seen closed by the peer at once, and a closed
 *     listening socket refuses connections at once (close_range in the child);
 *   - be dumpable: the child's RLIMIT_CORE is 0 (soft and hard) even when the
 *     application's is unlimited, and, for an unprivileged application, its
 *     /proc/PID files belong to root (PR_SET_DUMPABLE 0: no ptrace, no
 *     /proc/PID/mem for the application's user);
 *   - react to the application's signals: SIGTERM / SIGINT sent to the
 *     process group during a cycle do exactly what they do to the same process
 *     without forkgc, and leave no child;
 *   - touch the event loop: timers and loopback sockets keep working during
 *     and after cycles whose child is held for 500 ms.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Heap } from '../src/index.js';
import { childrenOf, closeHeapsAfterEach, makeHeap, procStat, withTimeout } from './helpers/common.js';
import { startFixture } from './helpers/fixture.js';

closeHeapsAfterEach();

const FIXTURE = fileURLToPath(new URL('./fixtures/long-cycle.mjs', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Subprocesses.

/** A process is dead: no /proc entry, or a zombie that is no longer `parent`'s (its new parent reaps it). */
function dead(pid: number, parent: number): boolean {
  const st = procStat(pid);
  return st === null || (st.state === 'Z' && st.ppid !== parent);
}

/** Milliseconds until pid is dead, or Infinity if it is not within `ms`. */
async function timeToDeath(pid: number, parent: number, ms: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (dead(pid, parent)) return performance.now() - t0;
    await sleep(5);
  }
  return dead(pid, parent) ? performance.now() - t0 : Infinity;
}

function alive(pid: number): boolean {
  const st = procStat(pid);
  return st !== null && st.state !== 'Z';
}

// ---------------------------------------------------------------------------

describe('the child never outlives its parent', () => {
  it('parent SIGKILLed during a 60 s cycle: its child is gone within 1 s', async () => {
    const f = startFixture(FIXTURE, { forkgc: true, delay: 60_000 });
    try {
      const ready = await f.next('ready');
      const { childPid } = (await f.next('fork')) as { childPid: number };
      expect(childPid).toBeGreaterThan(0);
      await sleep(50);
      expect(alive(childPid), 'the child is alive before the parent dies').toBe(true);
      expect(procStat(childPid)!.ppid).toBe(ready.pid);
      process.kill(ready.pid as number, 'SIGKILL');
      const ended = await withTimeout(f.exited, 5000, 'fixture exit');
      expect(ended.signal).toBe('SIGKILL');
      const ms = await timeToDeath(childPid, ready.pid as number, 1000);
      expect(ms, `child ${childPid} still alive: ${JSON.stringify(procStat(childPid))}`).toBeLessThan(1000);
    } finally {
      f.kill();
    }
  }, 30_000);

  it('a child SIGSTOPped after its first instruction still dies with its SIGKILLed parent (PDEATHSIG reaches stopped tasks)', async () => {
    const f = startFixture(FIXTURE, { forkgc: true, delay: 60_000 });
    let childPid = 0;
    try {
      const ready = await f.next('ready');
      childPid = ((await f.next('fork')) as { childPid: number }).childPid;
      // Past its first instruction: asleep in delay-before-mark.
      await sleep(100);
      process.kill(childPid, 'SIGSTOP');
      for (let i = 0; i < 200 && procStat(childPid)?.state !== 'T'; i++) await sleep(5);
      expect(procStat(childPid)?.state, 'the child is stopped').toBe('T');
      process.kill(ready.pid as number, 'SIGKILL');
      await withTimeout(f.exited, 5000, 'fixture exit');
      const ms = await timeToDeath(childPid, ready.pid as number, 1000);
      expect(ms, `stopped child ${childPid} outlived its parent: ${JSON.stringify(procStat(childPid))}`).toBeLessThan(1000);
    } finally {
      f.kill();
      if (childPid && alive(childPid)) {
        try { process.kill(childPid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
  }, 30_000);

  it('parent exits (process.exit) during a 60 s cycle without closing the heap: its child is gone within 1 s', async () => {
    const f = startFixture(FIXTURE, { forkgc: true, delay: 60_000, exitAfterFork: true });
    try {
      const ready = await f.next('ready');
      const { childPid } = (await f.next('fork')) as { childPid: number };
      const ended = await withTimeout(f.exited, 5000, 'fixture exit');
      expect(ended.code).toBe(0);
      const ms = await timeToDeath(childPid, ready.pid as number, 1000);
      expect(ms, `child ${childPid} still alive: ${JSON.stringify(procStat(childPid))}`).toBeLessThan(1000);
    } finally {
      f.kill();
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------

/** A loopback server and a connected client; `server` is the accepted side. */
async function connectedPair(): Promise<{ listener: net.Server; server: net.Socket; client: net.Socket; port: number }> {
  const listener = net.createServer();
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const port = (listener.address() as net.AddressInfo).port;
  const client = net.connect(port, '127.0.0.1');
  await withTimeout(new Promise((r) => client.once('connect', r)), 5000, 'connect');
  const server = await withTimeout(accepted, 5000, 'accept');
  return { listener, server, client, port };
}

/** A heap whose child sleeps `ms` before marking; resolves the child's pid at the fork. */
function heldHeap(ms: number): { heap: Heap; pid: Promise<number> } {
  const heap = makeHeap({ sweepThreads: 0, faultInjectionForTesting: { kind: 'delay-before-mark', arg: ms } });
  const T = heap.defineStruct('T', { next: 'ref', v: 'i32' });
  const top = heap.arrays.alloc(64);
  heap.root(top);
  for (let i = 0; i < 64; i++) heap.arrays.set(top, i, T.alloc({ v: i }));
  const pid = new Promise<number>((r) => heap.once('fork', (e) => r(e.pid)));
  return { heap, pid };
}

describe('the child never holds the application’s sockets', () => {
  it('a connection the server closes during a cycle is seen closed by the client at once, while the child lives', async () => {
    const { listener, server, client } = await connectedPair();
    try {
      const { heap, pid } = heldHeap(1500);
      const cycle = heap.collect();
      const childPid = await withTimeout(pid, 5000, 'fork');
      await sleep(50); // the child has long closed its inherited descriptors
      expect(alive(childPid)).toBe(true);
      const closed = new Promise<number>((r) => client.once('end', () => r(performance.now())));
      client.resume();
      const t0 = performance.now();
      server.destroy();
      const seenAt = await withTimeout(closed, 1000, 'the client to see the close (the child would hold it until it exits)');
      // Half the hold: a close held by the child would be seen only when it
      // exits, ~1.45 s later; the margin is for a loaded 2-core machine.
      expect(seenAt - t0).toBeLessThan(750);
      expect(alive(childPid), 'the child was still alive when the client saw the close').toBe(true);
      const c = await withTimeout(cycle, 15_000, 'cycle');
      expect(c.childPid).toBe(childPid);
    } finally {
      client.destroy();
      server.destroy();
      listener.close();
    }
  }, 30_000);

  it('a listening socket closed during a cycle refuses new connections at once', async () => {
    const { listener, server, client, port } = await connectedPair();
    client.destroy();
    server.destroy();
    const { heap, pid } = heldHeap(1500);
    const cycle = heap.collect();
    const childPid = await withTimeout(pid, 5000, 'fork');
    await sleep(50);
    await new Promise<void>((r) => listener.close(() => r()));
    expect(alive(childPid)).toBe(true);
    const outcome = await withTimeout(new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve('connected'); });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    }), 2000, 'connect to the closed port');
    expect(outcome, 'if the child held the listening socket, the kernel would still accept').toBe('ECONNREFUSED');
    expect(alive(childPid)).toBe(true);
    await withTimeout(cycle, 15_000, 'cycle');
  }, 30_000);
});

// ---------------------------------------------------------------------------

function coreLimit(pid: number): string {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max core file size'));
  return (line ?? '').replace('Max core file size', '').trim().split(/\s+/).slice(0, 2).join(' ');
}

function unprivilegedPrefix(): string[] | string {
  if (process.getuid?.() !== 0) return 'the test does not run as root (needs to switch to uid 65534)';
  if (spawnSync('setpriv', ['--version']).error) return 'setpriv(1) is not installed';
  if (spawnSync('prlimit', ['--version']).error) return 'prlimit(1) is not installed';
  const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e',
    `require('fs').readFileSync(${JSON.stringify(FIXTURE)})`]);
  if (probe.status !== 0) return `uid 65534 cannot run the fixture: ${probe.stderr}`;
  return ['prlimit', '--core=unlimited:unlimited', 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
}

describe('the child is not dumpable', () => {
  it('in this process: the child’s RLIMIT_CORE is 0/0', async () => {
    const { heap, pid } = heldHeap(800);
    const cycle = heap.collect();
    const childPid = await withTimeout(pid, 5000, 'fork');
    // The child lowers its limit just after the fork; on a loaded machine that
    // can take longer than a few ms (until then it reads the inherited '0 unlimited').
    const deadline = Date.now() + 600;
    while (coreLimit(childPid) !== '0 0' && Date.now() < deadline) await sleep(10);
    expect(alive(childPid)).toBe(true);
    expect(coreLimit(childPid)).toBe('0 0');
    await withTimeout(cycle, 15_000, 'cycle');
  }, 30_000);

  const prefix = unprivilegedPrefix();
  if (typeof prefix === 'string') console.warn(`skipping the unprivileged dumpability test: ${prefix}`);
  it.skipIf(typeof prefix === 'string')('in an unprivileged process with unlimited cores: the child has no core limit left and its /proc files belong to root', async () => {
    const f = startFixture(FIXTURE, { forkgc: true, delay: 3000 }, { prefix: prefix as string[] });
    try {
      const ready = await f.next('ready');
      expect(ready.uid).toBe(65534);
      const { childPid } = (await f.next('fork')) as { childPid: number };
      await sleep(100);
      expect(alive(childPid)).toBe(true);
      const parent = ready.pid as number;
      // The application may dump core; its child may not.
      expect(coreLimit(parent)).toBe('unlimited unlimited');
      expect(coreLimit(childPid)).toBe('0 0');
      // PR_SET_DUMPABLE 0: the kernel hands the child's /proc files to root.
      expect(statSync(`/proc/${parent}/status`).uid).toBe(65534);
      expect(statSync(`/proc/${childPid}/status`).uid, 'the child is still dumpable').toBe(0);
      const status = readFileSync(`/proc/${childPid}/status`, 'utf8');
      expect(/^Uid:\s+65534\b/m.test(status), 'the child runs as the same user').toBe(true);
      // The application's user cannot read the child's memory map.
      const peek = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', `/proc/${childPid}/maps`], { encoding: 'utf8' });
      expect(peek.status, `uid 65534 read /proc/${childPid}/maps`).not.toBe(0);
      const peekParent = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', `/proc/${parent}/maps`], { encoding: 'utf8' });
      expect(peekParent.status, 'but it can read the application’s own (the control)').toBe(0);
      const cycle = await f.next('cycle', 15_000);
      expect(cycle.childPid).toBe(childPid);
      expect((await withTimeout(f.exited, 10_000, 'exit')).code).toBe(0);
    } finally {
      f.kill();
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------

describe('the child does not react to the application’s signals', () => {
  const cases: { signal: NodeJS.Signals; handler: boolean }[] = [
    { signal: 'SIGTERM', handler: false },
    { signal: 'SIGINT', handler: false },
    { signal: 'SIGINT', handler: true },
  ];
  for (const { signal, handler } of cases) {
    it(`${signal} to the process group ${handler ? 'with' : 'without'} a handler: same outcome as without forkgc, no child left`, async () => {
      const outcomes: { forkgc: boolean; code: number | null; signal: string | null; events: string[] }[] = [];
      for (const forkgc of [false, true]) {
        const f = startFixture(FIXTURE, { forkgc, delay: 1500, sigint: handler }, { detached: true });
        try {
          const ready = await f.next('ready');
          const { childPid } = (await f.next('fork')) as { childPid: number };
          await sleep(100);
          if (forkgc) {
            expect(alive(childPid)).toBe(true);
            // Same process group: the group signal reaches the child too.
            const pgrp = Number(readFileSync(`/proc/${childPid}/stat`, 'utf8').split(') ')[1].split(' ')[2]);
            expect(pgrp).toBe(ready.pid);
          }
          process.kill(-(ready.pid as number), signal);
          const ended = await withTimeout(f.exited, 10_000, 'fixture exit');
          outcomes.push({ forkgc, code: ended.code, signal: ended.signal, events: f.events.map((e) => String(e.event)) });
          if (forkgc) {
            const ms = await timeToDeath(childPid, ready.pid as number, 1000);
            expect(ms, `child ${childPid} left behind: ${JSON.stringify(procStat(childPid))}`).toBeLessThan(1000);
            if (handler) {
              // The cycle was not disturbed: it completed, with the child's marks.
              const cycle = f.events.find((e) => e.event === 'cycle');
              expect(cycle, JSON.stringify(f.events)).toBeDefined();
              expect(cycle!.childPid).toBe(childPid);
              expect(cycle!.objectsFreed).toBe(50);
            }
          }
        } finally {
          f.kill();
        }
      }
      const [without, withGc] = outcomes;
      expect({ code: withGc.code, signal: withGc.signal }).toEqual({ code: without.code, signal: without.signal });
      expect(withGc.events).toEqual(without.events);
      if (handler) {
        expect(withGc.code).toBe(0);
        expect(withGc.events).toContain('sigint');
      } else {
        expect(withGc.signal).toBe(signal);
      }
    }, 40_000);
  }
});

// ---------------------------------------------------------------------------

/**
 * Milliseconds the main thread has spent runnable but waiting for a CPU
 * (/proc/thread-self/schedstat, field 2): on a loaded 2-core machine the
 * scheduler, not forkgc, can delay a timer; such waits are not counted
 * against forkgc.
 */
function runQueueMs(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return 0;
  }
}

describe('the child does not touch the event loop', () => {
  // The bound is half the hold: a main thread that waited for the child
  // would show a gap of ~500 ms at least. It was 100 ms until CI, on a loaded
  // 2-core VM, once saw a 158 ms gap that was not run-queue wait (a test
  // worker's own V8 collection, or the hypervisor's steal, counts as neither).
  it('a 5 ms interval keeps firing (no gap > 250 ms) and a loopback echo answers, during and after 3 cycles held 500 ms each', async () => {
    const { heap } = heldHeap(500);
    // The server side may still be echoing when the client is destroyed at
    // the end: its ECONNRESET is the test's own teardown, not a failure.
    const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const client = net.connect((echo.address() as net.AddressInfo).port, '127.0.0.1');
    await withTimeout(new Promise((r) => client.once('connect', r)), 5000, 'connect');
    const ticks: number[] = [];
    const waits: number[] = [];
    const interval = setInterval(() => { ticks.push(performance.now()); waits.push(runQueueMs()); }, 5);
    const rtts: number[] = [];
    const rawRtts: number[] = [];
    let pending: { n: number; t: number; q: number } | undefined;
    let n = 0;
    let acc = '';
    client.on('data', (d: Buffer) => {
      acc += d.toString();
      while (pending && acc.includes(`#${pending.n};`)) {
        rawRtts.push(performance.now() - pending.t);
        rtts.push(performance.now() - pending.t - (runQueueMs() - pending.q));
        acc = acc.slice(acc.indexOf(`#${pending.n};`) + `#${pending.n};`.length);
        pending = undefined;
      }
    });
    const pinger = setInterval(() => {
      if (pending) return;
      pending = { n: ++n, t: performance.now(), q: runQueueMs() };
      client.write(`#${pending.n};`);
    }, 10);
    try {
      const childMs: number[] = [];
      for (let i = 0; i < 3; i++) {
        const c = await withTimeout(heap.collect(), 15_000, `cycle ${i}`);
        childMs.push(c.childMs);
      }
      const duringTicks = ticks.length;
      const duringRtts = rtts.length;
      await sleep(200); // after the cycles
      let maxGap = 0;
      let maxRawGap = 0;
      for (let i = 1; i < ticks.length; i++) {
        maxRawGap = Math.max(maxRawGap, ticks[i] - ticks[i - 1]);
        maxGap = Math.max(maxGap, ticks[i] - ticks[i - 1] - (waits[i] - waits[i - 1]));
      }
      if (maxRawGap >= 250) console.log(`largest raw gap ${maxRawGap.toFixed(1)} ms, ${maxGap.toFixed(1)} ms once the run-queue wait is taken out`);
      expect(Math.min(...childMs), 'each child was held ~500 ms').toBeGreaterThanOrEqual(490);
      expect(maxGap, `largest gap between 5 ms ticks over ${ticks.length} ticks (raw ${maxRawGap.toFixed(1)} ms)`).toBeLessThan(250);
      expect(duringTicks, 'ticks during 1.5 s of cycles').toBeGreaterThan(100);
      expect(ticks.length).toBeGreaterThan(duringTicks + 10);
      expect(duringRtts, 'echo round trips during the cycles').toBeGreaterThan(50);
      expect(rtts.length).toBeGreaterThan(duringRtts + 5);
      expect(Math.max(...rtts), `slowest loopback echo (raw ${Math.max(...rawRtts).toFixed(1)} ms)`).toBeLessThan(250);
    } finally {
      clearInterval(interval);
      clearInterval(pinger);
      client.destroy();
      echo.close();
    }
    expect(childrenOf().filter((c) => c.state === 'Z')).toEqual([]);
  }, 30_000);
});

describe('process.exit() and uncaught exceptions with a child in flight', () => {
  // Node runs the addon's cleanup hook only when the event loop ends on its
  // own; the child died by PDEATHSIG but stayed a zombie under a parent that
  // does not reap (found in review).
  it.each(['exit', 'throw'])('%s: the child is killed and reaped before the process goes', async (how) => {
    const fixture = fileURLToPath(new URL('./fixtures/exit-reaps.mjs', import.meta.url));
    const out = await new Promise<string>((done) => {
      execFile(process.execPath, [fixture, how], { timeout: 30_000 }, (_e, stdout) => done(stdout));
    });
    const r = JSON.parse(out.trim().split('\n').pop()!);
    expect(r.childPid).toBeGreaterThan(0);
    expect(r.childLeft).toBe('gone');
  }, 60_000);
});
