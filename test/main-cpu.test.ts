// The benchmark holds each run's main thread to one CPU once set up
// (bench/lib/main-cpu.ts): only the main thread, so that the threads that
// exist by then (V8's helpers, forkgc's sweepers) stay free.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canHoldMainThread, holdMainThread, setMainThreadCpus } from '../bench/lib/main-cpu.js';
import { allowedCpus } from './helpers/cpus.js';

describe.runIf(canHoldMainThread())('holding the main thread to one CPU', () => {
  it('holds the main thread only, and refuses a CPU that is not one', () => {
    const mine = allowedCpus('self');
    const others = readdirSync('/proc/self/task').filter((t) => Number(t) !== process.pid);
    expect(others.length).toBeGreaterThan(0);  // V8's and libuv's threads
    const one = Math.max(...mine);
    try {
      expect(holdMainThread(one)).toBe(one);
      expect([...allowedCpus('self')]).toEqual([one]);
      for (const t of others) {
        try {
          expect(allowedCpus(`self/task/${t}`)).toEqual(mine);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;  // the thread ended meanwhile
        }
      }
    } finally {
      setMainThreadCpus([...mine]);
    }
    expect(allowedCpus('self')).toEqual(mine);
    expect(holdMainThread(-1)).toBeNull();
    expect(holdMainThread(1.5)).toBeNull();
    expect(holdMainThread(4096)).toBeNull();  // no such CPU: taskset fails
    expect(allowedCpus('self')).toEqual(mine);
  });
});
