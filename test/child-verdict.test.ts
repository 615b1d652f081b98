/**
 * One exit-status -> abort-reason mapping (src/collector/child-session.ts,
 * childVerdict) on every path that learns how the child ended.
 *
 * Pins the formerly divergent path: a child whose marker meets a reference
 * that is not an object exits with the heap-corrupt status before writing a
 * byte. On the event-loop path that was HEAP_CORRUPT; when an allocation
 * found the heap full and waited for the child (finishMarkingSync) the same
 * child was reported STREAM_SHORT. Both must say HEAP_CORRUPT.
 */
import { describe, expect, it } from 'vitest';
import { CycleAbortedError, HeapExhaustedError, type Heap } from '../src/index.js';
import { heapInternals } from '../src/internal.js';
import { closeHeapsAfterEach, describeError, makeHeap, withTimeout } from './helpers/common.js';

closeHeapsAfterEach();

/** Roots a RefArray and points its first slot into its own interior: a reference that is no object. */
function corrupt(heap: Heap): void {
  const a = heap.arrays.alloc(10);  // 48 bytes: 3 granules, so a + 1 is inside it
  heap.root(a);
  const core = heapInternals(heap);
  const g = core.refs.any(a);
  core.views.u32[g * 4 + 2] = g + 1;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected the cycle to abort');
}

describe('the child exits with the heap-corrupt status', () => {
  it('event-loop path: collect() rejects with HEAP_CORRUPT', async () => {
    const heap = makeHeap({ maxHeap: '16MiB', sweepThreads: 0 });
    corrupt(heap);
    const e = await withTimeout(rejection(heap.collect()), 20_000, 'corrupt cycle');
    expect(e, describeError(e)).toBeInstanceOf(CycleAbortedError);
    expect((e as CycleAbortedError).reason, (e as Error).message).toBe('HEAP_CORRUPT');
  }, 30_000);

  it('allocation-waits path (finishMarkingSync): also HEAP_CORRUPT, not STREAM_SHORT', async () => {
    const heap = makeHeap({ maxHeap: '16MiB', sweepThreads: 0 });
    corrupt(heap);
    const aborts: CycleAbortedError[] = [];
    heap.on('abort', (e) => aborts.push(e));
    const cycle = rejection(heap.collect());  // forks now; the child marks while we fill the heap
    expect(heap.stats().phase).toBe('marking');
    let exhausted: unknown;
    try {
      for (let i = 0; i < 64; i++) heap.bytes.alloc(1 << 20);
    } catch (e) {
      exhausted = e;
    }
    // The full heap made an allocation wait for the child synchronously; the
    // cycle was decided there, before any event-loop turn.
    expect(exhausted, describeError(exhausted)).toBeInstanceOf(HeapExhaustedError);
    expect(heap.stats().phase).toBe('idle');
    const e = await withTimeout(cycle, 20_000, 'corrupt cycle');
    expect(e, describeError(e)).toBeInstanceOf(CycleAbortedError);
    expect((e as CycleAbortedError).reason, (e as Error).message).toBe('HEAP_CORRUPT');
    expect(aborts.map((a) => a.reason)).toEqual(['HEAP_CORRUPT']);
  }, 30_000);
});
