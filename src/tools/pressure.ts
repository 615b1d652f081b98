// Memory pressure: collect early when the system (or this cgroup) is short of
// memory.
//
//   const watcher = watchMemoryPressure(heap, { thresholdPercent: 10 });
//   watcher.on('pressure', (r) => ...);     // a reading over the threshold
//   watcher.on('collected', (stats) => ...); // the early cycle it started
//   watcher.stop();
//
// Linux's pressure stall information (PSI) says what share of wall time tasks
// were stalled waiting for memory (reclaim, swap-in, thrashing): the line
//
//   some avg10=1.53 avg60=0.40 avg300=0.08 total=123456
//
// means at least one task was stalled 1.53% of the last 10 s. The watcher
// reads, in order of preference:
//
//   1. this process's cgroup v2 `memory.pressure` (the cgroup's own stalls:
//      the right figure in a container with a memory limit);
//   2. `/proc/pressure/memory` (the whole system);
//
// every `intervalMs` (default 2 s) on an unref'd timer (it never keeps the
// process alive), and when `some avg10` reaches `thresholdPercent` (default
// 10) it calls heap.collect() (if no cycle is in flight already). The cycle
// frees the garbage and, at its end, gives empty spans back to the OS beyond
// the policy's small reserve (HeapStats.returnedBytesTotal). avg10 decays
// slowly, so after a pressure cycle the watcher waits `cooldownMs` (default
// 10 s) before it may start another: collecting cannot relieve pressure
// faster than the average forgets it.
//
// Forking under memory pressure has a cost of its own: the child's page
// tables, and every page the parent writes while the child lives (see
// cow-budget.ts). A heap that must not fork then can be built with
// mode: 'stw', or combined with a copy-on-write budget.
//
// Where PSI is absent (kernels before 4.20, CONFIG_PSI off, `psi=0` on the
// kernel command line, no /proc) watchMemoryPressure returns a watcher whose
// `source` is null and which never fires; `pressureSource()` tells in advance.
// The kernel's PSI triggers (poll() for POLLPRI on a threshold written to the
// file) react faster, but Node cannot poll for POLLPRI without a native
// helper; a modest poll is cheap (one small read).
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Heap } from '../index.js';
import type { CycleStats } from '../index.js';
import { Heap as HeapClass } from '../api/heap.js';
import { InvalidArgumentError, InvalidOptionError, describe } from '../api/errors.js';
import { callSafely } from '../api/listener-errors.js';

export interface PressureReading {
  /** The file read. */
  source: string;
  /** Percent of wall time at least one task was stalled on memory, over 10 s, 60 s, 300 s. */
  someAvg10: number;
  someAvg60: number;
  someAvg300: number;
  /** Total stall time (µs) since boot or cgroup creation. */
  someTotalUs: number;
  /** Same for all (non-idle) tasks stalled at once; 0 where the file has no 'full' line. */
  fullAvg10: number;
  fullTotalUs: number;
  timeMs: number;
}

export interface PressureOptions {
  /** `some avg10` (percent) at which to collect. Default 10. */
  thresholdPercent?: number;
  /** Poll interval. Default 2000 ms; at least 100. */
  intervalMs?: number;
  /** After an early collection, wait this long before another. Default 10000 ms. */
  cooldownMs?: number;
  /** The PSI file to read instead of finding one (a test or an unusual mount). */
  source?: string;
  /** Called with each reading over the threshold (also emitted as 'pressure'). */
  onPressure?: (reading: PressureReading) => void;
}

type PressureEvents = {
  /** A reading at or over the threshold. */
  pressure: [PressureReading];
  /** The early cycle started under pressure finished. */
  collected: [CycleStats, PressureReading];
  /** The early cycle failed (aborted, or the heap closed): reported, not thrown. */
  error: [Error];
};

/** Parses the text of a PSI file; null when it has no valid 'some' line. */
export function parsePressure(text: string, source = '', timeMs = performance.now()): PressureReading | null {
  if (typeof text !== 'string') throw new InvalidArgumentError(`parsePressure: text: expected a string, got ${describe(text)}`);
  const line = (kind: string) => {
    const m = new RegExp(`^${kind} avg10=([\\d.]+) avg60=([\\d.]+) avg300=([\\d.]+) total=(\\d+)`, 'm').exec(text);
    return m ? { a10: Number(m[1]), a60: Number(m[2]), a300: Number(m[3]), total: Number(m[4]) } : null;
  };
  const some = line('some');
  if (!some) return null;
  const full = line('full');
  return {
    source, someAvg10: some.a10, someAvg60: some.a60, someAvg300: some.a300, someTotalUs: some.total,
    fullAvg10: full?.a10 ?? 0, fullTotalUs: full?.total ?? 0, timeMs,
  };
}

/** Reads a PSI file; null when it is missing, unreadable (PSI disabled) or malformed. */
export function readPressure(source: string): PressureReading | null {
  // A path only: fs would take a number as a file descriptor (0 reads stdin,
  // blocking until it closes) and -0 aborts Node in its C++ (found in review).
  if (typeof source !== 'string' || source === '' || source.includes('\0')) {
    throw new InvalidArgumentError(`readPressure: source: expected a file path, got ${describe(source)}`);
  }
  try {
    return parsePressure(readFileSync(source, 'utf8'), source);
  } catch {
    return null;
  }
}

/** Where this process's cgroup v2 directory is mounted, or null. */
function cgroupV2Dir(): string | null {
  try {
    const cg = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    if (!cg) return null;
    const rel = cg.slice(3).trim();
    // The cgroup2 mount point: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid).
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
    for (const m of mounts) {
      const sep = m.indexOf(' - ');
      if (sep < 0 || !m.slice(sep + 3).startsWith('cgroup2 ')) continue;
      const fields = m.slice(0, sep).split(' ');
      const root = fields[3];
      const mountPoint = fields[4];
      // The mount shows `root` of the hierarchy at `mountPoint` (a container sees its own cgroup as /).
      const inside = rel.startsWith(root) ? rel.slice(root === '/' ? 0 : root.length) : rel;
      return path.join(mountPoint, inside);
    }
  } catch {
    /* no /proc */
  }
  return null;
}

/**
 * The PSI file the watcher would read: this cgroup's memory.pressure if the
 * kernel gives one, else /proc/pressure/memory; null where PSI is absent.
 */
export function pressureSource(): string | null {
  const dir = cgroupV2Dir();
  const candidates = dir ? [path.join(dir, 'memory.pressure')] : [];
  candidates.push('/proc/pressure/memory');
  for (const c of candidates) {
    if (existsSync(c) && readPressure(c) !== null) return c;
  }
  return null;
}

/** The watcher returned by watchMemoryPressure(). */
export class PressureWatcher extends EventEmitter<PressureEvents> {
  /** The PSI file read, or null where PSI is absent (the watcher then does nothing). */
  readonly source: string | null;
  readonly thresholdPercent: number;
  readonly intervalMs: number;
  readonly cooldownMs: number;
  /** The last reading (null before the first, or when the file could not be read). */
  last: PressureReading | null = null;
  /** Early cycles started under pressure. */
  collections = 0;
  private timer: NodeJS.Timeout | undefined;
  private collecting = false;
  private lastCollectMs = -Infinity;

  constructor(private readonly heap: Heap, options: PressureOptions = {}) {
    super();
    if (!(heap instanceof HeapClass)) throw new InvalidArgumentError(`watchMemoryPressure: expected a Heap, got ${describe(heap)}`);
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError(`watchMemoryPressure: options must be an object, got ${describe(options)}`);
    }
    // Each option read once: what was checked is what is used (a getter
    // answering differently got Node's own TypeError; found in review).
    const { onPressure, source, thresholdPercent, intervalMs, cooldownMs } = options;
    if (onPressure !== undefined && typeof onPressure !== 'function') {
      throw new InvalidOptionError(`watchMemoryPressure: onPressure: expected a function, got ${describe(onPressure)}`);
    }
    if (source !== undefined && (typeof source !== 'string' || source === '' || source.includes('\0'))) {
      throw new InvalidOptionError(`watchMemoryPressure: source: expected a file path, got ${describe(source)}`);
    }
    const number = (name: string, value: unknown, fallback: number, min: number, max: number): number => {
      if (value === undefined) return fallback;
      if (typeof value !== 'number' || !(value >= min && value <= max)) {
        throw new InvalidOptionError(`watchMemoryPressure: ${name}: expected a number from ${min} to ${max}, got ${describe(value)}`);
      }
      return value;
    };
    this.thresholdPercent = number('thresholdPercent', thresholdPercent, 10, 0, 100);
    this.intervalMs = Math.max(100, number('intervalMs', intervalMs, 2000, 0, 2 ** 31 - 1));
    this.cooldownMs = number('cooldownMs', cooldownMs, 10_000, 0, Number.MAX_SAFE_INTEGER);
    if (onPressure) this.on('pressure', onPressure);
    this.source = source ?? pressureSource();
    if (this.source === null) return;
    this.timer = setInterval(() => this.poll(), this.intervalMs);
    this.timer.unref();
  }

  /** Reads the source now and reacts as a timer tick would; returns the reading. */
  poll(): PressureReading | null {
    if (this.source === null) return null;
    if (this.heap.isClosed) {
      this.stop();
      return null;
    }
    const r = readPressure(this.source);
    this.last = r;
    if (!r || r.someAvg10 < this.thresholdPercent) return r;
    if (this.listenerCount('pressure') > 0) this.emit('pressure', r);
    // A listener may have closed the heap (a plausible answer to pressure);
    // going on to stats() would throw out of the timer.
    if (this.heap.isClosed) {
      this.stop();
      return r;
    }
    const now = performance.now();
    if (this.collecting || now - this.lastCollectMs < this.cooldownMs) return r;
    if (this.heap.stats().phase !== 'idle') return r;  // a cycle is already under way
    this.collecting = true;
    this.lastCollectMs = now;
    this.collections++;
    // A poll runs from a timer: a safepoint by the rooting contract.
    // What a 'collected' or 'error' listener throws is rethrown on the next
    // tick, as from a heap's own listeners: thrown inside these callbacks,
    // it rejected a promise nobody holds, and an unhandled rejection ends
    // the process (found in review).
    this.heap.collect().then(
      (stats) => { this.collecting = false; callSafely(() => { this.emit('collected', stats, r); }); },
      (e: Error) => {
        this.collecting = false;
        if (this.listenerCount('error') > 0) callSafely(() => { this.emit('error', e); });
      },
    );
    return r;
  }

  /** Stops polling (idempotent). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get running(): boolean { return this.timer !== undefined; }
}

/**
 * Polls memory pressure (PSI) and calls heap.collect() early when
 * `some avg10` reaches `thresholdPercent`. See the top of this file.
 */
export function watchMemoryPressure(heap: Heap, options: PressureOptions = {}): PressureWatcher {
  return new PressureWatcher(heap, options);
}
