// An allocation at maxHeap finishes the marking of the cycle in flight
// synchronously (Collector.finishMarkingSync): it drains the paced intake's
// queue, reads the rest of the pipe and reaps the child. When the queue
// already holds the end of the stream and the child has exited, the drain
// itself judges the end, reaps the child and begins the sweep; nothing may
// judge the child a second time. (Found in review: a second reap found no
// child, the cycle was aborted CHILD_EXIT in the middle of its sweep, the
// abort cleared the marks, and the sweep freed every live object.)
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { heapInternals } from '../src/internal.js';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';

closeHeapsAfterEach();

/** The state letter of a process (/proc/PID/stat), or '' once it is gone. */
function processState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return '';
  }
}

/** Waits, without letting the event loop turn, until `pid` has exited (a zombie nobody reaped yet). */
function waitForZombie(pid: number, timeoutMs: number): void {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + timeoutMs;
  while (processState(pid) !== 'Z') {
    if (Date.now() > deadline) throw new Error(`child ${pid} did not exit within ${timeoutMs} ms (state ${processState(pid)})`);
    Atomics.wait(nap, 0, 0, 1);
  }
}

interface IntakeInside { turnStart: bigint; drainScheduled: boolean; endQueued: boolean; queue: Uint8Array[] }

describe('finishing the marking from an allocation', () => {
  for (const sweepThreads of [0, 1]) {
    it(`when the intake's queue holds the end of the stream: the cycle completes and frees no live object (${sweepThreads} sweeper threads)`, async () => {
      // inlineSweepUs 0: the sweep outlives the call (threads or slices), as a big heap's does.
      const heap = makeHeap({ maxHeap: '32MiB', inlineSweepUs: 0, sweepThreads });
      const core = heapInternals(heap);
      const P = heap.defineStruct('P', { n: 'i32' });
      const N = 20_000;
      const keep = heap.root(heap.arrays.alloc(N));
      for (let i = 0; i < N; i++) heap.arrays.set(keep.get(), i, P.alloc({ n: i }));
      for (let i = 0; i < 4000; i++) heap.bytes.alloc(1000);  // garbage for the sweep
      const aborts: string[] = [];
      heap.on('abort', (e) => aborts.push(e.reason));

      const done = heap.collect();
      done.catch(() => {});  // (awaited below; a failed expectation must not leave it unhandled)
      const collector = core.collector;
      const cycle = (collector as unknown as { cycle: { stats: { childPid: number }; intake: unknown } }).cycle;
      const intake = cycle.intake as IntakeInside;
      // The child writes its whole stream (it fits the pipe) and exits.
      waitForZombie(cycle.stats.childPid, 20_000);
      // Every turn's intake time is spent and its drain not yet run, as a
      // busy application leaves them: what the event loop reads from the
      // pipe is queued, the end of the stream behind it.
      intake.turnStart = 1n;
      intake.drainScheduled = true;
      for (let turn = 0; turn < 5000 && !intake.endQueued; turn++) await new Promise((resolve) => setImmediate(resolve));
      expect(intake.endQueued, 'the end of the stream waits in the queue').toBe(true);
      expect(intake.queue.length).toBeGreaterThan(0);
      expect(collector.phase).toBe('marking');

      // What an allocation that finds the heap at maxHeap calls.
      collector.finishMarkingSync();
      expect(collector.phase, 'the sweep has begun').toBe('sweeping');
      const stats = await done;
      expect(aborts).toEqual([]);
      expect(stats.objectsFreed).toBe(4000);
      for (let i = 0; i < N; i++) expect(P.get.n(heap.arrays.get(keep.get(), i))).toBe(i);
      // The next cycle runs as usual.
      const next = await heap.collect();
      expect(next.objectsFreed).toBe(0);
      expect(heap.stats().abortedCycles).toBe(0);
    }, 60_000);
  }
});
