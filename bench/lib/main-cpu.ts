/**
 * Holding a benchmark process's main thread to one CPU, the same one for every
 * system of a run (run.ts --main-cpu N; off by default).
 *
 * Why: on the project's VM a memory-bound thread has at times run at about
 * half speed on vCPU 1 (a 256 MiB random pointer walk: 620-760 ms on vCPU 0,
 * 1483-1617 ms on vCPU 1; docs/performance-log.md, "a slow vCPU"; on other days no difference). Where the scheduler puts a process's
 * main thread then decides its wall time as much as the collector does: in
 * one quick run V8's binary-trees took 776-991 ms on vCPU 0 and 1535-2018 on
 * vCPU 1. A ratio between two processes is only fair if both mutators ran
 * on the same CPU.
 *
 * How: `taskset -p -c CPU PID` sets the CPUs of one thread, the one whose id
 * is PID, which is the main thread. It is called after setup (a forkgc heap
 * made and its sweeper threads booted), so the threads that exist by then
 * stay free: V8's platform workers (concurrent marking, parallel scavenge),
 * forkgc's sweeper threads. Threads the main thread starts later inherit its
 * CPU, as a forked process would; the library's marking child and its
 * huge-page restore thread take the heap creator's CPUs as well
 * (native/child.cc, cpusAwayFromHere), so they still run beside it rather
 * than on it. Peers (D, Boehm) are separate binaries and are not held.
 *
 * Why it is not the default: a held main thread cannot move away when
 * another thread is put on its CPU (a sweeper, a V8 helper, a child being
 * born), and waits for it up to a balancing tick (4 ms here). In the full
 * run held to CPU 0, forkgc's longest fork pauses grew to 10-23 ms
 * (binary-trees 21 and gcbench; 1.8 and 3.5 ms free), mostly off the CPU:
 * binary-trees 19 held gave 4.6 ms of pause on 0.9 ms of CPU. That measures
 * the pinning, not the collector, so the committed runs leave main threads
 * free and this is for comparing mutator throughput.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

/** Whether `taskset` can set this process's threads here (util-linux). */
export function canHoldMainThread(): boolean {
  if (availableParallelism() < 2) return false;
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Sets the CPUs of this process's main thread (only: `taskset -p` sets the
 * thread whose id is the pid); false if it could not (no taskset, a CPU the
 * process may not use). Tests use it to put the main thread back.
 */
export function setMainThreadCpus(cpus: readonly number[]): boolean {
  if (cpus.length === 0 || !cpus.every((c) => Number.isInteger(c) && c >= 0)) return false;
  try {
    execFileSync('taskset', ['-p', '-c', cpus.join(','), String(process.pid)], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Holds this process's main thread to `cpu`; returns the CPU it holds to, or
 * null if it could not (no taskset, a CPU the process may not use).
 */
export function holdMainThread(cpu: number): number | null {
  return setMainThreadCpus([cpu]) ? cpu : null;
}
