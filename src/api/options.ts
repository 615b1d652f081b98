// Validation of the options of `new Heap()`. Every rejection is an
// InvalidOptionError that names the option and what it accepts.
import os from 'node:os';
import { InvalidArgumentError, InvalidOptionError, describe } from './errors.js';
import { reportLater } from './listener-errors.js';
import { MAX_ARENA_BYTES, SPAN_BYTES } from '../memory/layout.js';

export type Mode = 'fork' | 'stw';

export interface HeapOptions {
  /** Largest the heap may grow: bytes, or a string such as '512MiB' or '2GiB'. Default '1GiB'; at most 4GiB. */
  maxHeap?: number | string;
  /** 'fork' (default): mark in a forked child. 'stw': the same marker in-process, stop-the-world. */
  mode?: Mode;
  /**
   * Ask for transparent huge pages on the arena (MADV_HUGEPAGE): fork() then
   * copies one page-table entry per 2 MiB instead of 512. Default true (at
   * 1 GiB live the fork pause measured ~5x shorter; see README, Figures).
   */
  hugePages?: boolean;
  /**
   * With huge pages: after each cycle, merge back (MADV_COLLAPSE, on a thread
   * of the heap's) the huge pages that the mutator's writes split while the
   * child shared them. Without it a split range stays in small pages and every
   * later fork copies 512 entries for it (1 GiB live: fork CPU 1.9 ms in the
   * first cycle, 9-15 ms in later ones). Costs about 1 ms of background CPU
   * per split 2 MiB range. Default true; ignored without hugePages or before
   * Linux 6.1.
   */
  restoreHugePages?: boolean;
  /**
   * Fork mode: once each cycle's sweep is over (its child long reaped), a
   * thread of the heap's makes the heap's resident pages writable again
   * (MADV_POPULATE_WRITE, Linux 5.14) before the application writes them
   * (not during the sweep, whose CPUs it would take). fork() write-protects every page
   * the child shares, and after the child is gone the application's first
   * write to each still faults (measured on the project's VM: 20-44 µs a
   * fault with 4 KiB pages; the thread does it for 0.2-0.3 µs a page). The
   * next fork then write-protects those pages again, which lengthens it a
   * little (README, Figures). Default true; ignored before Linux 5.14 and
   * for a heap on huge pages, where it measured worse (the next fork and
   * the child's mark took longer than the faults it saved).
   */
  restoreWritable?: boolean;
  /**
   * Fault in the arena just above the heap's top on a thread of the heap's,
   * a window ahead of the allocator (an eighth of the heap in use, 4-64
   * MiB), so that a growing heap does not pay for fresh memory on the
   * application's thread: on the project's VM 0.25-5.9 ms a fresh 2 MiB
   * huge page (native/growth_prefault.cc). The window stays resident when
   * the heap stops growing. In fork mode a cycle the pacer starts waits,
   * from one safepoint to the next, while the thread is faulting a page in
   * (the fork would wait for it). In fork mode only with selectiveFork, which leaves
   * the arena above the top out of the child (a page there that the child
   * shared would be copied at the first write). Default true.
   */
  prefaultGrowth?: boolean;
  /**
   * Selective fork: just before fork(), mark MADV_DONTFORK the private
   * anonymous mappings the child never reads (V8's heap, other threads'
   * stacks and malloc arenas) and restore them right after, so the fork pause
   * follows what the child reads, not the size of the process. If a child
   * crashes while it is on, that cycle aborts and the heap forks plainly for
   * the rest of its life (warning FORKGC_SELECTIVE_FORK_OFF). Default true.
   */
  selectiveFork?: boolean;
  /** Checked mode: references carry an epoch tag and every use is verified (slower). Default false. */
  checked?: boolean;
  /** Start a cycle when the bytes allocated since the last one reach this percentage of the live heap. Default 100. */
  gcPercent?: number;
  /**
   * The smallest goal: a cycle should end before this many bytes more are allocated, however small the live
   * heap; the pacer starts it earlier (at 25% of the goal at the earliest; near maxHeap sooner still: docs/design.md,
   * "Policy"). Default '16MiB' (a cycle costs the main thread about 2-3 ms whatever the heap's size).
   */
  minTriggerBytes?: number | string;
  /** Schedule cycles automatically from the event loop when the policy asks. Default true. */
  auto?: boolean;
  /** Kill a child that has not finished after this long. Default: 10 s plus 20 ms per MiB of heap in use at the fork. */
  childTimeoutMs?: number;
  /**
   * Capacity of the marker's explicit stack (entries). Default: one per 16 granules, at least 64 Ki (reserved, not
   * committed: a page costs memory only once the marker reaches it). The stack holds edges, references not yet
   * tested (native/marker.cc), which a long list of many-field objects piles up: a 1M-record LRU cache reached 4.5M.
   */
  markStackEntries?: number;
  /** Maximum number of live root handles. Default 4 Mi. */
  maxRoots?: number;
  /** After this many consecutive aborted fork cycles, the next cycle runs stop-the-world. Default 3. */
  maxConsecutiveAborts?: number;
  /**
   * Sweeper threads (a piscina pool) that sweep in the background while the
   * application runs. 0: sweep on the main thread only (lazily, and in small
   * slices between event-loop turns). Default: one less than the CPUs, at
   * least 1, at most 4.
   */
  sweepThreads?: number;
  /**
   * A sweep the main thread expects to finish within this many microseconds
   * (from its own measured speed and the heap's span count) it does itself,
   * at once, when marking ends: for a small heap that costs less than
   * handing the sweep to a thread and learning that it is done. A sweep that
   * runs over twice this hands the rest to the sweeper threads. 0: always
   * use the threads. Default 1000.
   */
  inlineSweepUs?: number;
  /**
   * Fork mode: a cycle whose mark the heap expects to take at most this many
   * microseconds on the main thread (its measured marking speed times the
   * bytes the last cycle marked), or no longer than the median of its recent
   * fork pauses if that is longer, marks in-process instead of forking: for
   * a small live set the fork and the child cost the program more than the
   * mark they save (src/collector/mark-choice.ts). A cycle that starts late
   * (past twice the pacer's goal of allocation since the last one) forks all
   * the same. 0: every cycle forks. Default 1000.
   */
  inProcessMarkUs?: number;
  /** Run sweeps on this Piscina pool instead of a pool of our own (sweepThreads is then ignored). */
  piscina?: PiscinaPool;
  /** Testing only: make the child (or fork, or a sweeper) fail in a chosen way; see FaultKind. */
  faultInjectionForTesting?: FaultInjection;
}

/**
 * An application's piscina pool (`new Piscina()`), described by the one method
 * forkgc calls on it: piscina's own types stay out of forkgc's declarations,
 * so a consumer's type check never depends on how piscina's types resolve.
 */
export interface PiscinaPool {
  /**
   * Runs the task on a thread. Its promise must settle only once the thread
   * has stopped running the task, as piscina's does: one rejected while the
   * thread still sweeps (a wrapper with a timeout of its own) lets that
   * thread sweep a span the heap has put back, freeing live objects.
   */
  run(task: unknown, options: { filename: string }): Promise<unknown>;
  /** How many threads the pool may run (forkgc posts one sweep task per thread, at most 4 on a shared pool). */
  readonly maxThreads?: number;
}

export type FaultKind =
  | 'exit-before-mark' | 'hang' | 'truncate' | 'corrupt-chunk' | 'wrong-cycle' | 'zombie-mark'
  | 'exit-nonzero' | 'signal-after-stream' | 'stall-mid-stream' | 'delay-before-mark'
  | 'fork-eagain' | 'fork-enomem' | 'bad-trailer'
  /** The child reads a page that selective fork excluded (a real SIGSEGV when it is on). */
  | 'touch-excluded'
  /** The child writes its whole stream, then sleeps `arg` ms before it exits (closing the pipe). */
  | 'delay-before-exit'
  /** The child sleeps `arg` ms before each chunk of its stream but the first. */
  | 'slow-stream'
  /** Not a child fault: a sweeper worker throws after claiming `arg` spans (default 1). */
  | 'sweep-worker-throw';

/** Mirror of native/child.h's Fault enum. */
export const FAULT_CODES: Record<FaultKind, number> = {
  'exit-before-mark': 1, hang: 2, truncate: 3, 'corrupt-chunk': 4, 'wrong-cycle': 5,
  'zombie-mark': 6, 'exit-nonzero': 7, 'signal-after-stream': 8, 'stall-mid-stream': 9,
  'delay-before-mark': 10, 'fork-eagain': 11, 'fork-enomem': 12, 'bad-trailer': 13, 'touch-excluded': 14,
  'delay-before-exit': 15, 'slow-stream': 16,
  'sweep-worker-throw': 0,
};

export interface FaultInjection {
  kind: FaultKind;
  /** Milliseconds, for the stall and delay faults. */
  arg?: number;
  /** Which cycles get the fault: a predicate on the cycle id, or every cycle. */
  cycles?: (cycleId: number) => boolean;
}

export interface ResolvedOptions {
  maxHeap: number;
  mode: Mode;
  hugePages: boolean;
  restoreHugePages: boolean;
  restoreWritable: boolean;
  prefaultGrowth: boolean;
  selectiveFork: boolean;
  checked: boolean;
  gcPercent: number;
  minTriggerBytes: number;
  auto: boolean;
  /** null: scaled to the heap in use at each fork (10 s + 20 ms per MiB). */
  childTimeoutMs: number | null;
  markStackEntries: number;
  maxRoots: number;
  maxConsecutiveAborts: number;
  sweepThreads: number;
  inlineSweepUs: number;
  inProcessMarkUs: number;
  piscina: SharedPool | undefined;
  fault: FaultInjection | undefined;
}

/** An application's pool as the options read it, once: its run method and its thread count. */
export interface SharedPool {
  readonly run: (task: unknown, options: { filename: string }) => unknown;
  /** maxThreads, a whole number (1 when the pool does not say). */
  readonly maxThreads: number;
}

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 2 ** 20, mb: 2 ** 20, mib: 2 ** 20,
  g: 2 ** 30, gb: 2 ** 30, gib: 2 ** 30,
};

/** Parses 4096, '4096', '64KiB', '1.5 GiB' (binary units; 'MB' is read as MiB). */
export function parseBytes(name: string, value: number | string): number {
  if (typeof name !== 'string') throw new InvalidArgumentError(`parseBytes: name: expected a string, got ${describe(name)}`);
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
    if (!m || unit === undefined) {
      throw new InvalidOptionError(`${name}: '${value}' is not a size (use bytes or e.g. '512MiB', '2GiB')`);
    }
    bytes = Number(m[1]) * unit;
  } else {
    throw new InvalidOptionError(`${name}: expected a number of bytes or a string such as '512MiB', got ${describe(value)}`);
  }
  if (!Number.isFinite(bytes) || bytes < 0) {
    throw new InvalidOptionError(`${name}: ${String(value)} is not a non-negative finite size`);
  }
  return Math.floor(bytes);
}

function bool(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidOptionError(`${name}: expected true or false, got ${describe(value)}`);
  return value;
}

function int(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(`${name}: expected an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

const KNOWN = new Set([
  'maxHeap', 'mode', 'hugePages', 'restoreHugePages', 'restoreWritable', 'prefaultGrowth', 'selectiveFork', 'checked', 'gcPercent', 'minTriggerBytes', 'auto', 'childTimeoutMs',
  'markStackEntries', 'maxRoots', 'maxConsecutiveAborts', 'faultInjectionForTesting', 'sweepThreads', 'piscina',
  'inlineSweepUs', 'inProcessMarkUs',
]);

function pool(value: unknown): SharedPool | undefined {
  if (value === undefined) return undefined;
  const run = typeof value === 'object' && value !== null ? (value as { run?: unknown }).run : undefined;
  if (typeof run !== 'function') throw new InvalidOptionError('piscina: expected a Piscina instance');
  // Read once here, and only the values read here are used: the sweep sizes
  // its tasks from maxThreads, and a count that is not a whole number posted
  // none (collect() never settled) or sized a buffer wrongly; a getter that
  // answered differently the second time brought both back (found in
  // review). A real Piscina reports an integer.
  const maxThreads = (value as { maxThreads?: unknown }).maxThreads;
  if (maxThreads !== undefined && !(typeof maxThreads === 'number' && Number.isInteger(maxThreads) && maxThreads >= 1)) {
    throw new InvalidOptionError(`piscina: maxThreads: expected a whole number of threads, got ${describe(maxThreads)}`);
  }
  return {
    run: (task, options) => Reflect.apply(run, value, [task, options]),
    maxThreads: (maxThreads as number | undefined) ?? 1,
  };
}

/**
 * Checks a fault injection whole, before any cycle: a bad one found after
 * fork() would throw with a child in flight. Returns a copy, so a later
 * change to the caller's object cannot slip past the checks.
 */
function faultInjection(value: unknown): FaultInjection | undefined {
  if (value === undefined) return undefined;
  const kinds = Object.keys(FAULT_CODES);
  if (typeof value !== 'object' || value === null) {
    throw new InvalidOptionError(`faultInjectionForTesting: expected { kind: one of ${kinds.join(', ')} }`);
  }
  const { kind, arg, cycles } = value as Record<string, unknown>;
  if (typeof kind !== 'string' || !Object.hasOwn(FAULT_CODES, kind)) {
    throw new InvalidOptionError(`faultInjectionForTesting.kind: expected one of ${kinds.join(', ')}, got ${describe(kind)}`);
  }
  if (arg !== undefined && (typeof arg !== 'number' || !Number.isInteger(arg) || arg < 0 || arg > 2 ** 31 - 1)) {
    throw new InvalidOptionError(`faultInjectionForTesting.arg: expected an integer from 0 to 2^31-1, got ${describe(arg)}`);
  }
  if (cycles !== undefined && typeof cycles !== 'function') {
    throw new InvalidOptionError(`faultInjectionForTesting.cycles: expected a function of the cycle id, got ${describe(cycles)}`);
  }
  return { kind: kind as FaultKind, arg, cycles: cycles as FaultInjection['cycles'] };
}

/**
 * Whether cycle `cycleId` gets the injected fault. A `cycles` predicate that
 * throws means no (its exception is reported on the next tick): the test's
 * mistake must not leave a cycle half-started.
 */
export function faultsCycle(fault: FaultInjection | undefined, cycleId: number): boolean {
  if (!fault) return false;
  if (!fault.cycles) return true;
  try {
    return Boolean(fault.cycles(cycleId));
  } catch (e) {
    reportLater(e);
    return false;
  }
}

export function resolveOptions(options: HeapOptions | undefined): ResolvedOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new InvalidOptionError('options: expected an object');
  }
  const o = options ?? {};
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key)) throw new InvalidOptionError(`unknown option '${key}'`);
  }
  // An option given as null is a wrong type, not "use the default" (?? would take it for absent).
  const given = <T>(v: T | undefined, dflt: T): T => (v === undefined ? dflt : v);
  const maxHeap = parseBytes('maxHeap', given(o.maxHeap, '1GiB'));
  if (maxHeap < 2 * SPAN_BYTES || maxHeap > MAX_ARENA_BYTES) {
    throw new InvalidOptionError(
      `maxHeap: ${maxHeap} bytes is out of range (from ${2 * SPAN_BYTES} bytes to 4GiB, the largest arena a Node 20 typed array can view)`);
  }
  const mode = given(o.mode, 'fork');
  if (mode !== 'fork' && mode !== 'stw') {
    throw new InvalidOptionError(`mode: expected 'fork' or 'stw', got ${describe(mode)}`);
  }
  const gcPercent = given(o.gcPercent, 100);
  if (typeof gcPercent !== 'number' || !Number.isFinite(gcPercent) || gcPercent <= 0 || gcPercent > 10000) {
    throw new InvalidOptionError(`gcPercent: expected a number in (0, 10000], got ${describe(gcPercent)}`);
  }
  const minTriggerBytes = parseBytes('minTriggerBytes', given(o.minTriggerBytes, '16MiB'));
  const granules = maxHeap / 16;
  const fault = faultInjection(o.faultInjectionForTesting);
  return {
    maxHeap,
    mode,
    hugePages: bool('hugePages', o.hugePages, true),
    restoreHugePages: bool('restoreHugePages', o.restoreHugePages, true),
    restoreWritable: bool('restoreWritable', o.restoreWritable, true),
    prefaultGrowth: bool('prefaultGrowth', o.prefaultGrowth, true),
    selectiveFork: bool('selectiveFork', o.selectiveFork, true),
    checked: bool('checked', o.checked, false),
    gcPercent,
    minTriggerBytes,
    auto: bool('auto', o.auto, true),
    childTimeoutMs: o.childTimeoutMs === undefined ? null : int('childTimeoutMs', o.childTimeoutMs, 0, 1, 2 ** 31 - 1),
    markStackEntries: int('markStackEntries', o.markStackEntries, Math.max(65536, Math.ceil(granules / 16)), 1, 2 ** 28),
    maxRoots: int('maxRoots', o.maxRoots, 2 ** 22, 1, 2 ** 28),
    maxConsecutiveAborts: int('maxConsecutiveAborts', o.maxConsecutiveAborts, 3, 1, 1000),
    sweepThreads: int('sweepThreads', o.sweepThreads, Math.min(4, Math.max(1, os.availableParallelism() - 1)), 0, 64),
    inlineSweepUs: int('inlineSweepUs', o.inlineSweepUs, 1000, 0, 1_000_000),
    inProcessMarkUs: int('inProcessMarkUs', o.inProcessMarkUs, 1000, 0, 1_000_000),
    piscina: pool(o.piscina),
    fault,
  };
}
