/**
 * Shared plumbing of the test suite: heap bookkeeping (every heap a test makes is
 * closed after it), error assertions, and readers of /proc for the child process.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterEach, expect } from 'vitest';
import { Heap, ForkGcError, type FaultKind } from '../../src/index.js';

export type Ref = number;
export type HeapOptions = NonNullable<ConstructorParameters<typeof Heap>[0]>;
export type RootHandle = ReturnType<Heap['root']>;
export type CycleStats = Awaited<ReturnType<Heap['collect']>>;
export type Mode = 'fork' | 'stw';
export const MODES: readonly Mode[] = ['fork', 'stw'];

/**
 * Every child fault that ends a cycle whole, completed or aborted (for
 * faultInjectionForTesting): all but a sweeper thread's (which frees part of
 * a cycle's garbage, by design) and a selective fork's (which turns
 * selective forking off for good).
 */
export const CHILD_FAULTS: readonly FaultKind[] = [
  'exit-before-mark', 'hang', 'truncate', 'corrupt-chunk', 'wrong-cycle', 'zombie-mark', 'exit-nonzero',
  'signal-after-stream', 'stall-mid-stream', 'delay-before-mark', 'fork-eagain', 'fork-enomem', 'bad-trailer',
  'delay-before-exit', 'slow-stream',
];

// ---------------------------------------------------------------------------
// Heaps: made small, cycles explicit unless asked otherwise, always closed.

const openHeaps = new Set<Heap>();

/**
 * A heap with test defaults (maxHeap 64MiB, auto: false, inProcessMarkUs: 0)
 * that afterEach closes. The suite's heaps are small, and fork mode would
 * mark most of their cycles after the first in-process; what the suite
 * tests of fork mode is the child, so every cycle forks unless a test asks
 * for the choice (test/mark-choice.test.ts).
 */
export function makeHeap(opts: HeapOptions = {}): Heap {
  const heap = new Heap({ maxHeap: '64MiB', auto: false, inProcessMarkUs: 0, ...opts });
  openHeaps.add(heap);
  return heap;
}

/** Close a heap now (errors propagate) and forget it. */
export async function closeHeap(heap: Heap): Promise<void> {
  openHeaps.delete(heap);
  await heap.close();
}

/** Register the afterEach hook that closes every heap the test left open. */
export function closeHeapsAfterEach(): void {
  afterEach(async () => {
    const heaps = [...openHeaps];
    openHeaps.clear();
    for (const h of heaps) await h.close();
  }, 30_000);
}

// ---------------------------------------------------------------------------
// Errors.

/**
 * What a call did, comparable across implementations: its value, or its
 * error's class, code and message (a Ref in the message made generic).
 */
export function outcome(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (e) {
    const err = e as { name?: string; code?: string; message?: string };
    return { error: err.name, code: err.code, message: err.message?.replace(/reference \d+/g, 'reference N') };
  }
}

/** Runs fn and returns what it threw (undefined if it returned). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

export function describeError(e: unknown): string {
  if (e === undefined) return 'no error';
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return `${e.constructor.name}(${String(code)}): ${e.message}`;
  }
  return `non-Error thrown: ${String(e)}`;
}

/**
 * Asserts that fn throws an instance of cls (which must extend ForkGcError) with
 * the given code.
 */
export function expectError(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => Error,
  code: string,
  what = '',
): void {
  const e = thrown(fn);
  expect(e, `${what}: expected ${cls.name}/${code}, got ${describeError(e)}`).toBeInstanceOf(ForkGcError);
  expect(e, `${what}: expected ${cls.name}, got ${describeError(e)}`).toBeInstanceOf(cls);
  expect((e as { code?: unknown }).code, `${what}: ${describeError(e)}`).toBe(code);
}

/** Asserts that fn throws a ForkGcError whose code is one of codes; returns the code. */
export function expectCode(fn: () => unknown, codes: readonly string[], what = ''): string {
  const e = thrown(fn);
  expect(e, `${what}: expected one of ${codes.join('|')}, got ${describeError(e)}`).toBeInstanceOf(ForkGcError);
  const code = (e as { code: string }).code;
  expect(codes, `${what}: got ${describeError(e)}`).toContain(code);
  return code;
}

export async function expectRejection(
  p: Promise<unknown>,
  cls: abstract new (...args: never[]) => Error,
  code: string,
  what = '',
): Promise<void> {
  let e: unknown;
  try {
    await p;
  } catch (err) {
    e = err;
  }
  expect(e, `${what}: expected rejection ${cls.name}/${code}, got ${describeError(e)}`).toBeInstanceOf(ForkGcError);
  expect(e, `${what}: ${describeError(e)}`).toBeInstanceOf(cls);
  expect((e as { code?: unknown }).code, `${what}: ${describeError(e)}`).toBe(code);
}

export const DEAD_CODES = ['ERR_STALE_REF', 'ERR_INVALID_REF'] as const;

/**
 * The code of the ForkGcError thrown by heap.typeOf(ref), or null if it returned.
 * Anything that is not a ForkGcError is rethrown (a crash, not a typed error).
 */
export function typeOfError(heap: Heap, ref: Ref): string | null {
  const e = thrown(() => heap.typeOf(ref));
  if (e === undefined) return null;
  if (e instanceof ForkGcError) return (e as { code: string }).code;
  throw e;
}

/** True iff accessing ref reports a freed object (StaleReferenceError or InvalidReferenceError). */
export function isFreed(heap: Heap, ref: Ref): boolean {
  const code = typeOfError(heap, ref);
  return code !== null && (DEAD_CODES as readonly string[]).includes(code);
}

// ---------------------------------------------------------------------------
// Event loop.

export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** `what` may be a function, called at the timeout: what was going on then. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${typeof what === 'function' ? what() : what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// /proc.

export interface ProcStat {
  pid: number;
  state: string;
  ppid: number;
}

/** /proc/<pid>/stat parsed (comm may hold spaces and parentheses), or null if gone. */
export function procStat(pid: number): ProcStat | null {
  let txt: string;
  try {
    txt = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const rest = txt.slice(txt.lastIndexOf(')') + 2).split(' ');
  return { pid, state: rest[0], ppid: Number(rest[1]) };
}

/** Direct children of ppid (default: this process), by a scan of /proc. */
export function childrenOf(ppid: number = process.pid): ProcStat[] {
  const out: ProcStat[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const st = procStat(Number(e));
    if (st && st.ppid === ppid) out.push(st);
  }
  return out;
}

/**
 * Children of this process (forked by any of its threads), cheaply, from
 * /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN); falls back to a scan.
 */
export function mainThreadChildren(): number[] {
  try {
    const out: number[] = [];
    for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
      let txt: string;
      try {
        txt = readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').trim();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && tid === String(process.pid)) throw e;
        continue; // thread exited
      }
      if (txt !== '') out.push(...txt.split(/\s+/).map(Number));
    }
    return out;
  } catch {
    return childrenOf().map((c) => c.pid);
  }
}

/** Resident anonymous memory of this process in bytes (RssAnon, else VmRSS). */
export function rssBytes(): number {
  const txt = readFileSync('/proc/self/status', 'utf8');
  const m = /^RssAnon:\s+(\d+)\s*kB/m.exec(txt) ?? /^VmRSS:\s+(\d+)\s*kB/m.exec(txt);
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

export const MiB = 1024 * 1024;
