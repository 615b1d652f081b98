/**
 * Failure model, part 2: the child is SIGKILLed at random points, 100 times
 * (issue 4). The kill comes from outside, as an OOM killer or an operator
 * would send it: process.kill(pid, 'SIGKILL') from the heap's 'fork' event
 * after a random short delay.
 *
 * The heap is big enough for a multi-chunk stream (one chunk is 64 KiB of
 * bitmap = 2 Mi granules = 32 MiB of arena; ~55 MiB are in use, so 2 chunks),
 * allocated once and reused by every iteration. The 100 kills, 25 at each point:
 *
 *   before marking  fault delay-before-mark (the child sleeps 150 ms first);
 *                   killed 0-40 ms after the fork: always an abort.
 *   mid-marking     no fault; killed at a random moment within the child's
 *                   usual marking time: an abort, or - if the child finished
 *                   first - a normal cycle.
 *   mid-stream      fault stall-mid-stream (sleeps 300 ms after the first
 *                   chunk); killed in the stall: always an abort, after the
 *                   parent has staged a chunk.
 *   before exit     no fault; killed around the end of the child's usual
 *                   life: an abort or a normal cycle.
 *
 * Every killed cycle must reject with CHILD_SIGNALED, emit 'abort', free
 * nothing (object count, garbage objects still valid, checksums); every cycle
 * the kill missed must be a complete, correct one. After each iteration a
 * normal cycle runs and frees exactly the garbage, no child of this process is
 * a zombie, and the descriptor count is back where it was.
 *
 * A kill is only sent while the cycle is still in its 'marking' phase, i.e.
 * before the parent has reaped the child, so the pid cannot have been reused.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CycleAbortedError, Heap, type FaultKind } from '../src/index.js';
import { childrenOf, describeError, isFreed, procStat, withTimeout, type CycleStats, type Ref } from './helpers/common.js';
import { Rng } from './helpers/graph.js';

interface Rig {
  heap: Heap;
  fault: { on: boolean };
  check(): void;
  garbage: Ref[];
  makeGarbage(n: number): void;
  aborts: CycleAbortedError[];
}

/** CHAINS rooted chains of 4000 records (32 B each; checksummed) and 24 MiB of rooted bytes: 50-64 MiB in use. */
function rig(kind: FaultKind, arg: number, CHAINS: number): Rig {
  const fault = { on: false };
  const heap = new Heap({
    // inProcessMarkUs: 0: every cycle forks (the kills are the point). This
    // live set marks in-process in about the time of a fork, and a fresh
    // clone's run once marked a cycle in-process: no child to kill.
    maxHeap: '256MiB', auto: false, sweepThreads: 0, maxConsecutiveAborts: 1000, inProcessMarkUs: 0,
    faultInjectionForTesting: { kind, arg, cycles: () => fault.on },
  });
  const Rec = heap.defineStruct('Rec', { next: 'ref', a: 'i32', b: 'f64' });
  const LEN = 4000;
  const top = heap.arrays.alloc(CHAINS);
  const root = heap.root(top);
  for (let c = 0; c < CHAINS; c++) {
    let head = 0;
    for (let k = 0; k < LEN; k++) head = Rec.alloc({ next: head, a: k ^ c, b: c * 1e6 + k });
    heap.arrays.set(top, c, head);
  }
  const bulk = heap.arrays.alloc(24);
  heap.root(bulk);
  for (let i = 0; i < 24; i++) {
    const b = heap.bytes.alloc(1 << 20);
    heap.bytes.view(b).fill(i + 1);
    heap.arrays.set(bulk, i, b);
  }
  const garbage: Ref[] = [];
  const aborts: CycleAbortedError[] = [];
  heap.on('abort', (e) => aborts.push(e));
  return {
    heap, fault, garbage, aborts,
    makeGarbage(n: number): void {
      for (let i = 0; i < n; i++) garbage.push(Rec.alloc({ next: heap.arrays.get(root.get(), i % CHAINS), a: -1, b: -1 }));
    },
    // Checks every 8th chain end to end and every bulk block's ends.
    check(): void {
      const t = root.get();
      for (let c = 0; c < CHAINS; c += 8) {
        let r = heap.arrays.get(t, c);
        for (let k = LEN - 1; k >= 0; k--) {
          if (Rec.get.a(r) !== (k ^ c) || Rec.get.b(r) !== c * 1e6 + k) throw new Error(`chain ${c} record ${k} changed`);
          r = Rec.get.next(r);
        }
        if (r !== 0) throw new Error(`chain ${c} is longer than it was`);
      }
      for (let i = 0; i < 24; i++) {
        const v = heap.bytes.view(heap.arrays.get(bulk, i));
        if (v.length !== 1 << 20 || v[0] !== i + 1 || v[v.length - 1] !== i + 1 || v[v.length >> 1] !== i + 1) {
          throw new Error(`bulk block ${i} changed`);
        }
      }
    },
  };
}

const fdCount = (): number => readdirSync('/proc/self/fd').length;
const zombies = (): number[] => childrenOf().filter((c) => c.state === 'Z').map((c) => c.pid);

type Point = 'before-mark' | 'mid-mark' | 'mid-stream' | 'before-exit';

describe('SIGKILL the child at random points, 100 times', () => {
  let D: Rig; // delay-before-mark 150 ms when armed; otherwise a normal heap
  let S: Rig; // stall-mid-stream 150 ms when armed
  let baseline: { D: CycleStats; S: CycleStats };
  let childMsD = 0; // median child lifetime of an ordinary cycle of D
  let childMsS = 0; // ... and of S

  beforeAll(async () => {
    // D has more objects, so that its child marks for tens of milliseconds.
    D = rig('delay-before-mark', 150, 300);
    S = rig('stall-mid-stream', 300, 200);
    // Drop the build's transient objects and measure ordinary cycles of each.
    for (const r of [D, S]) await r.heap.collect();
    baseline = { D: await D.heap.collect(), S: await S.heap.collect() };
    const median = async (r: Rig): Promise<number> => {
      const ms: number[] = [];
      for (let i = 0; i < 5; i++) ms.push((await r.heap.collect()).childMs);
      return ms.sort((a, b) => a - b)[2];
    };
    childMsD = await median(D);
    childMsS = await median(S);
    expect(baseline.S.bitmapBytes, 'a multi-chunk stream').toBeGreaterThan(64 * 1024);
  }, 60_000);

  afterAll(async () => {
    await D?.heap.close();
    await S?.heap.close();
  });

  it('every kill aborts with CHILD_SIGNALED and frees nothing; every missed kill is a correct cycle; nothing is left behind', async () => {
    const rng = new Rng(0x5eed4);
    const plan: Point[] = [];
    for (const p of ['before-mark', 'mid-mark', 'mid-stream', 'before-exit'] as Point[]) for (let i = 0; i < 25; i++) plan.push(p);
    // Interleave the points so that heap state (and timing) varies between neighbours.
    for (let i = plan.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [plan[i], plan[j]] = [plan[j], plan[i]];
    }
    const markMs = Math.max(2, childMsD);
    const tally: Record<Point, { aborted: number; completed: number; zombieAtKill: number; exitingAtKill: number; notSent: number }> = {
      'before-mark': { aborted: 0, completed: 0, zombieAtKill: 0, exitingAtKill: 0, notSent: 0 },
      'mid-mark': { aborted: 0, completed: 0, zombieAtKill: 0, exitingAtKill: 0, notSent: 0 },
      'mid-stream': { aborted: 0, completed: 0, zombieAtKill: 0, exitingAtKill: 0, notSent: 0 },
      'before-exit': { aborted: 0, completed: 0, zombieAtKill: 0, exitingAtKill: 0, notSent: 0 },
    };
    let landedButCompleted = 0;
    let lateTimers = 0;
    const fds0 = fdCount();
    const started = performance.now();

    for (let it = 0; it < plan.length; it++) {
      const point = plan[it];
      const r = point === 'mid-stream' ? S : D;
      const heap = r.heap;
      r.garbage.length = 0;
      r.makeGarbage(2000);
      const garbage = [...r.garbage];
      const objects = heap.stats().objects;
      const abortsBefore = r.aborts.length;
      const fdsBefore = fdCount();

      let delay: number;
      switch (point) {
        case 'before-mark': delay = rng.next() * 40; break;
        case 'mid-mark': delay = rng.next() * markMs * 0.8; break;
        case 'mid-stream': delay = childMsS + 30 + rng.next() * 150; break;
        case 'before-exit': delay = markMs * (0.5 + rng.next() * 0.5); break;
      }
      r.fault.on = point === 'before-mark' || point === 'mid-stream';
      let killed = false;
      let pid = 0;
      let stateAtKill = '';
      let exitingAtKill = false;
      let forkedAt = 0;
      let killedAfter = 0;
      let timer: NodeJS.Timeout | undefined;
      heap.once('fork', (e) => {
        pid = e.pid;
        forkedAt = performance.now();
        timer = setTimeout(() => {
          killedAfter = performance.now() - forkedAt;
          // Only while the child is unreaped (phase 'marking'): its pid cannot be anyone else's.
          if (heap.stats().phase !== 'marking') return;
          const st = procStat(e.pid);
          if (!st || st.ppid !== process.pid) return;
          // PF_EXITING (0x4) in /proc/PID/stat's flags: the child is already in _exit().
          const flags = Number(readFileSync(`/proc/${e.pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[6] ?? 0);
          exitingAtKill = (flags & 4) !== 0;
          stateAtKill = st.state;
          process.kill(e.pid, 'SIGKILL');
          killed = true;
        }, delay);
      });
      let outcome: CycleStats | CycleAbortedError;
      try {
        outcome = await withTimeout(heap.collect(), 20_000, `iteration ${it} (${point})`);
      } catch (e) {
        expect(e, `iteration ${it} (${point}): ${describeError(e)}`).toBeInstanceOf(CycleAbortedError);
        outcome = e as CycleAbortedError;
      } finally {
        clearTimeout(timer);
        r.fault.on = false;
      }
      const what = `iteration ${it} (${point}, kill planned after ${delay.toFixed(1)} ms, timer fired after ${killedAfter.toFixed(1)} ms, child ${pid}, state at kill '${stateAtKill}')`;
      expect(pid, what).toBeGreaterThan(0);
      if (stateAtKill === 'Z') tally[point].zombieAtKill++;

      if (outcome instanceof CycleAbortedError) {
        tally[point].aborted++;
        expect(killed, `${what}: aborted without being killed: ${outcome.message}`).toBe(true);
        expect(outcome.reason, `${what}: ${outcome.message}`).toBe('CHILD_SIGNALED');
        expect(r.aborts.length, `${what}: one 'abort' event`).toBe(abortsBefore + 1);
        expect(r.aborts[r.aborts.length - 1]).toBe(outcome);
        expect(heap.stats().objects, `${what}: objects after the abort`).toBe(objects);
        const freed = garbage.filter((g) => isFreed(heap, g)).length;
        expect(freed, `${what}: garbage freed by an aborted cycle`).toBe(0);
        r.check();
        // The next cycle succeeds and frees exactly this garbage.
        const next = await withTimeout(heap.collect(), 20_000, `recovery ${it}`);
        expect(next.fallback).toBe(false);
        expect(next.objectsFreed, `${what}: recovery frees exactly the garbage`).toBe(garbage.length);
      } else {
        tally[point].completed++;
        if (!killed) tally[point].notSent++;
        // A kill that found the child running (not a zombie) must have aborted the cycle,
        // except in the instant between its exit_group() and becoming a zombie.
        // (Or in the microseconds between reading its state and the kill.) Logged, not asserted: that race is real.
        if (killed && stateAtKill !== 'Z' && !exitingAtKill) {
          console.log(`${what}: completed although killed running, not exiting`);
          landedButCompleted++;
        }
        if (killed && stateAtKill !== 'Z' && exitingAtKill) tally[point].exitingAtKill++;
        // Before marking and mid-stream the child sleeps (150 ms; 300 ms after the first chunk):
        // a kill there always lands, unless a loaded machine ran our timer after the sleep.
        const inSleep = (point === 'before-mark' && killedAfter < 140) || (point === 'mid-stream' && killedAfter < childMsS + 280);
        if (point === 'before-mark' || point === 'mid-stream') lateTimers++;
        expect(killed && inSleep && stateAtKill !== 'Z', `${what}: the kill should have landed`).toBe(false);
        expect(r.aborts.length).toBe(abortsBefore);
        expect(outcome.objectsFreed, `${what}: a completed cycle frees exactly the garbage`).toBe(garbage.length);
      }
      r.check();
      expect(heap.stats().objects).toBe(objects - garbage.length);
      expect(procStat(pid)?.ppid === process.pid, `${what}: child not reaped: ${JSON.stringify(procStat(pid))}`).toBe(false);
      expect(zombies(), what).toEqual([]);
      expect(fdCount(), `${what}: descriptors`).toBeLessThanOrEqual(fdsBefore);
    }

    const elapsed = performance.now() - started;
    const aborted = Object.values(tally).reduce((n, t) => n + t.aborted, 0);
    console.log(`100 SIGKILLs in ${elapsed.toFixed(0)} ms (median child ${childMsD.toFixed(1)} ms, late timers ${lateTimers}): ${JSON.stringify(tally)}`);
    // (A timer that fires after the child's sleep, on a loaded machine, is tolerated a few times.)
    expect(lateTimers, 'kill timers that fired too late to land in the sleep').toBeLessThanOrEqual(5);
    expect(tally['before-mark'].aborted).toBeGreaterThanOrEqual(20);
    expect(tally['mid-stream'].aborted).toBeGreaterThanOrEqual(20);
    // The random points inside an ordinary child's life mostly land.
    expect(tally['mid-mark'].aborted, JSON.stringify(tally)).toBeGreaterThanOrEqual(8);
    expect(aborted).toBeGreaterThanOrEqual(50);
    // A SIGKILL that reaches a child before its _exit() must abort the cycle. One
    // exception is tolerated for the race between reading the child's state and the kill.
    expect(landedButCompleted, 'kills that landed on a running child yet the cycle completed').toBeLessThanOrEqual(1);
    expect(fdCount()).toBeLessThanOrEqual(fds0);
    expect(zombies()).toEqual([]);
  }, 60_000);
});
