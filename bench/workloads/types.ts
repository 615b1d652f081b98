/**
 * The common interface of the workloads. Every workload is written twice with the
 * same algorithm: once against forkgc's API (`forkgc`) and once as plain
 * JavaScript objects collected by V8 (`plain`). `run()` picks the variant from the
 * system. Both variants call `meter.tick()` at the same points and yield to the
 * event loop at the same points.
 */
import type { Heap, HeapOptions } from '../lib/forkgc.js';
import type { Meter } from '../lib/meter.js';

export type SystemId = 'v8' | 'forkgc-fork' | 'forkgc-stw' | 'forkgc-fork-huge' | 'forkgc-stw-huge' | 'forkgc-fork-unchecked' | 'forkgc-fork-always';

export interface SystemSpec {
  id: SystemId;
  kind: 'v8' | 'forkgc';
  mode?: 'fork' | 'stw';
  hugePages?: boolean;
  /** The workload uses StructType.unchecked accessors (no reference checks; README, "Unchecked accessors"). */
  unchecked?: boolean;
  /** Every cycle forks (inProcessMarkUs: 0): fork mode without its choice of marking small live sets in-process. */
  alwaysFork?: boolean;
}

export const SYSTEMS: Record<SystemId, SystemSpec> = {
  // The library's defaults (huge pages on): what an application gets. pause-scaling
  // asks for 4 KiB pages in these two and huge pages in the -huge ones.
  'forkgc-fork': { id: 'forkgc-fork', kind: 'forkgc', mode: 'fork' },
  'forkgc-stw': { id: 'forkgc-stw', kind: 'forkgc', mode: 'stw' },
  'forkgc-fork-huge': { id: 'forkgc-fork-huge', kind: 'forkgc', mode: 'fork', hugePages: true },
  'forkgc-stw-huge': { id: 'forkgc-stw-huge', kind: 'forkgc', mode: 'stw', hugePages: true },
  'forkgc-fork-unchecked': { id: 'forkgc-fork-unchecked', kind: 'forkgc', mode: 'fork', unchecked: true },
  'forkgc-fork-always': { id: 'forkgc-fork-always', kind: 'forkgc', mode: 'fork', alwaysFork: true },
  v8: { id: 'v8', kind: 'v8' },
};

export type Params = Record<string, number | string | boolean>;

/** A struct type's accessors as the system runs them: checked (the default) or `unchecked`. */
export function accessorsOf<G, S>(type: { get: G; set: S; unchecked: { get: G; set: S } }, system: SystemSpec): { get: G; set: S } {
  return system.unchecked ? type.unchecked : type;
}

export interface RunContext<P extends Params = Params> {
  system: SystemSpec;
  params: P;
  meter: Meter;
  /** The heap for forkgc systems (created and closed by the harness); null for v8. */
  heap: Heap | null;
  /** A line of program output (checked against the expected output when there is one). */
  out(line: string): void;
  /**
   * Runs fn outside the measurement (meter, heartbeat and V8 gc entries ignore it):
   * for forced collections whose pause is reported separately. Returns fn's time in ms.
   */
  unmeasured(fn: () => void): number;
}

/** Workload-specific figures merged into the result row. */
export type Extra = Record<string, number | string | boolean | null | Record<string, unknown>>;

export interface WorkloadResult {
  /** null: this workload has no self-check; false: the self-check failed. */
  verified: boolean | null;
  extra?: Extra;
}

export interface Workload<P extends Params = Params> {
  name: string;
  /** What one meter tick stands for. */
  unit: string;
  cases(full: boolean): P[];
  /** Short description of a case for tables and progress. */
  label(p: P): string;
  /** The systems that run a case (`p`: the case, for workloads whose cases differ). */
  systems(full: boolean, p?: P): SystemId[];
  heapOptions(p: P, sys: SystemSpec): HeapOptions;
  /** Extra node flags for the child process (e.g. --max-old-space-size for v8). */
  nodeFlags?(p: P, sys: SystemSpec): string[];
  timeoutMs(p: P, full: boolean): number;
  expectedOutput?(p: P): string[] | null;
  plain(ctx: RunContext<P>): Promise<WorkloadResult>;
  forkgc(ctx: RunContext<P>): Promise<WorkloadResult>;
}

export function run<P extends Params>(w: Workload<P>, ctx: RunContext<P>): Promise<WorkloadResult> {
  return ctx.system.kind === 'forkgc' ? w.forkgc(ctx) : w.plain(ctx);
}

export function needHeap(ctx: RunContext<Params>): Heap {
  if (!ctx.heap) throw new Error('forkgc variant run without a heap');
  return ctx.heap;
}

export function mib(n: number): number {
  return n * 1024 * 1024;
}
