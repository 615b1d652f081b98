// The benchmark holds each run's main thread to one CPU once set up
// (bench/lib/main-cpu.ts): only the main thread, so that the threads that
// exist by then (V8's helpers, forkgc's sweepers) stay free.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canHoldMainThread, holdMainThread } from '../bench/lib/main-cpu.js';

/** A thread's (or the process's main thread's) Cpus_allowed_list as a set. */
function cpusOf(path: string): Set<number> {
  const line = /^Cpus_allowed_list:\s*(.*)$/m.exec(readFileSync(`${path}/status`, 'utf8'))![1];
  const out = new Set<number>();
  for (const part of line.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) out.add(c);
  }
  return out;
}

describe.runIf(canHoldMainThread())('holding the main thread to one CPU', () => {
  it('holds the main thread only, and refuses a CPU that is not one', () => {
    const mine = cpusOf('/proc/self');
    const others = readdirSync('/proc/self/task').filter((t) => Number(t) !== process.pid);
    expect(others.length).toBeGreaterThan(0);  // V8's and libuv's threads
    const one = Math.max(...mine);
    try {
      expect(holdMainThread(one)).toBe(one);
      expect([...cpusOf('/proc/self')]).toEqual([one]);
      for (const t of others) {
        try {
          expect(cpusOf(`/proc/self/task/${t}`)).toEqual(mine);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;  // the thread ended meanwhile
        }
      }
    } finally {
      execFileSync('taskset', ['-p', '-c', [...mine].join(','), String(process.pid)], { stdio: 'ignore', timeout: 5000 });
    }
    expect(cpusOf('/proc/self')).toEqual(mine);
    expect(holdMainThread(-1)).toBeNull();
    expect(holdMainThread(1.5)).toBeNull();
    expect(holdMainThread(4096)).toBeNull();  // no such CPU: taskset fails
    expect(cpusOf('/proc/self')).toEqual(mine);
  });
});
