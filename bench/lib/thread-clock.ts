/**
 * What the main thread was doing around a gap in the mutator's work: on a
 * CPU, runnable but waiting for one, or neither (blocked in the kernel, or
 * its virtual CPU taken by the hypervisor).
 *
 * The kernel keeps per thread, in /proc/thread-self/schedstat, the time it
 * ran and the time it waited on a run queue (ns). This VM's kernel has
 * CONFIG_PARAVIRT_TIME_ACCOUNTING: time the hypervisor steals is in neither
 * figure. So over any window of wall time,
 *
 *   wall = run + runDelay + off
 *
 * where off is time the thread slept or was blocked (a futex, a page-fault
 * wait, a blocking read) or lost to steal. A mutator that never blocks has
 * off = steal.
 *
 * Granularity: the kernel brings a running thread's run time up to date at
 * each scheduler tick (4 ms on this VM, CONFIG_HZ=250) and at each switch,
 * not when schedstat is read, so run (and with it off) can be off by up to a
 * tick at each end of a window; run-queue delay is exact (it only grows
 * while the thread is off a CPU). Figures for gaps of a few ms are rough;
 * for the 10-50 ms gaps this is for, a tick is small.
 *
 * A read costs about 1.5 µs (pread of an fd kept open), too much for every
 * tick (a tick is every 30-100 µs on binary-trees), so the meter samples at
 * most once a millisecond, at the end of every gap over 1 ms, and around
 * each yield (lib/meter.ts); a gap is attributed over the tightest window of
 * samples around it: the gap plus at most ~1 ms before it. Linux only;
 * elsewhere every figure is null.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export interface GapAttribution {
  /** The window the figures cover (it contains the gap). */
  windowMs: number;
  runMs: number;
  runDelayMs: number;
  offMs: number;
}

/**
 * The CPU a thread last ran on, from a /proc/<pid>/task/<tid>/stat line:
 * field 39 ("processor"), counted from after the command's closing
 * parenthesis (the command may hold spaces and parentheses); -1 if absent.
 */
export function statProcessor(line: Uint8Array, length = line.length): number {
  let k = length - 1;
  while (k >= 0 && line[k] !== 0x29) k--;  // the last ')'
  if (k < 0) return -1;
  // After ") " comes field 3; field 39 follows 36 more spaces.
  let field = 2;
  for (k++; k < length && field < 39; k++) if (line[k] === 0x20) field++;
  let cpu = 0;
  let digits = 0;
  for (; k < length && line[k] >= 0x30 && line[k] <= 0x39; k++, digits++) cpu = cpu * 10 + (line[k] - 0x30);
  return digits > 0 && field === 39 ? cpu : -1;
}

export class ThreadClock {
  private fd = -1;
  private statFd = -1;
  private readonly buf = Buffer.alloc(96);
  private readonly statBuf = Buffer.alloc(1024);
  /**
   * Samples per CPU the thread was on. On the project's VM a memory-bound
   * thread runs at half speed on its second vCPU (docs/performance-log.md, "a slow vCPU"),
   * so a run's figures mean little without knowing where it ran.
   */
  private readonly onCpu: number[] = [];
  private readonly at: number[] = [];
  private readonly run: number[] = [];
  private readonly delay: number[] = [];

  /** Opens the main thread's schedstat; call on the main thread. */
  open(): void {
    try {
      this.fd = openSync('/proc/thread-self/schedstat', 'r');
    } catch {
      this.fd = -1;
    }
    try {
      this.statFd = openSync('/proc/thread-self/stat', 'r');
    } catch {
      this.statFd = -1;
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    if (this.statFd >= 0) closeSync(this.statFd);
    this.fd = this.statFd = -1;
  }

  /** Share of the samples taken on each CPU (CPU number -> fraction), or null without samples. */
  cpuShares(): Record<string, number> | null {
    const total = this.onCpu.reduce((a, b) => a + (b ?? 0), 0);
    if (total === 0) return null;
    const out: Record<string, number> = {};
    this.onCpu.forEach((n, cpu) => { if (n) out[cpu] = Math.round((n / total) * 1000) / 1000; });
    return out;
  }

  /** Records (now, run ns, run-queue delay ns). */
  /**
   * `at`: the time to file the sample under, when the caller has just read
   * the clock itself (the meter: the end of a gap, which is the start of the
   * next). Stamped later, the sample fell after the next gap's start, and
   * that gap's window reached back over the previous gap (found in review:
   * a 17.4 ms gap with a 34 ms window).
   */
  sample(at?: number): void {
    if (this.fd < 0) return;
    const n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
    // "<run ns> <run-queue delay ns> <timeslices>\n", parsed without a string.
    let k = 0;
    let run = 0;
    for (; k < n && this.buf[k] !== 0x20; k++) run = run * 10 + (this.buf[k] - 0x30);
    let delay = 0;
    for (k++; k < n && this.buf[k] !== 0x20; k++) delay = delay * 10 + (this.buf[k] - 0x30);
    this.at.push(at ?? performance.now());
    this.run.push(run);
    this.delay.push(delay);
    if (this.statFd >= 0) {
      const cpu = statProcessor(this.statBuf, readSync(this.statFd, this.statBuf, 0, this.statBuf.length, 0));
      if (cpu >= 0) this.onCpu[cpu] = (this.onCpu[cpu] ?? 0) + 1;
    }
  }

  /** The thread's time from the first sample to the last (ms); null without two samples. */
  total(): { runMs: number; runDelayMs: number } | null {
    const n = this.at.length;
    if (n < 2) return null;
    return { runMs: (this.run[n - 1] - this.run[0]) / 1e6, runDelayMs: (this.delay[n - 1] - this.delay[0]) / 1e6 };
  }

  /** The thread's time over the tightest sampled window around [start, end] (performance.now() ms); null without samples on both sides. */
  over(start: number, end: number): GapAttribution | null {
    const at = this.at;
    // The last sample at or before start, the first at or after end.
    let lo = -1;
    let a = 0;
    let b = at.length - 1;
    while (a <= b) {
      const m = (a + b) >> 1;
      if (at[m] <= start) {
        lo = m;
        a = m + 1;
      } else {
        b = m - 1;
      }
    }
    if (lo < 0) return null;
    let hi = lo;
    while (hi < at.length && at[hi] < end) hi++;
    if (hi >= at.length) return null;
    const windowMs = at[hi] - at[lo];
    const runMs = (this.run[hi] - this.run[lo]) / 1e6;
    const runDelayMs = (this.delay[hi] - this.delay[lo]) / 1e6;
    return { windowMs, runMs, runDelayMs, offMs: Math.max(0, windowMs - runMs - runDelayMs) };
  }
}
