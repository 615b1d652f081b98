/**
 * The slice of forkgc's public API (API.md) that the benchmarks use, and a loader.
 *
 * The bench is compiled separately from the library (bench/tsconfig.json) and must
 * also run its plain-JS and peer systems while the library is not built, so the
 * library module is imported dynamically: the package build (`npm run build` ->
 * dist/index.js), else `src/index.js` compiled next to the bench when the project
 * was compiled as a whole (dist/src/index.js). FORKGC_LIB overrides both.
 * lib/api-check.ts binds these structural types to src/index.ts at compile time.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export type Ref = number;
export type FieldKind = 'ref' | 'i32' | 'u32' | 'f64' | 'bool';

type FieldValue<K extends FieldKind> = K extends 'bool' ? boolean : number;

export interface StructType<F extends Record<string, FieldKind>> {
  readonly name: string;
  readonly id: number;
  readonly size: number;
  alloc(init?: Partial<{ [K in keyof F]: FieldValue<F[K]> }>): Ref;
  make(...values: Array<number | boolean | undefined>): Ref;
  readonly get: { readonly [K in keyof F]: (ref: Ref) => FieldValue<F[K]> };
  readonly set: { readonly [K in keyof F]: (ref: Ref, v: FieldValue<F[K]>) => void };
  /** The accessors without reference checks (the library's StructType.unchecked). */
  readonly unchecked: {
    readonly get: { readonly [K in keyof F]: (ref: Ref) => FieldValue<F[K]> };
    readonly set: { readonly [K in keyof F]: (ref: Ref, v: FieldValue<F[K]>) => void };
  };
  is(ref: Ref): boolean;
}

export interface RootHandle {
  get(): Ref;
  set(ref: Ref): void;
  release(): void;
}

export interface CycleStats {
  id: number;
  mode: 'fork' | 'stw';
  trigger: string;
  /** Absent in versions before inProcessMarkUs (FORKGC_LIB may load one). */
  marker?: 'child' | 'in-process';
  pauseUs: number;
  childPid: number;
  markMs: number;
  objectsMarked: number;
  bytesMarked: number;
  bitmapBytes: number;
  objectsFreed: number;
  bytesFreed: number;
  sweepMs: number;
  heapBytesBefore: number;
  heapBytesAfter: number;
  liveBytesAfter: number;
  bytesReturned: number;
  totalMs: number;
  /** Copy-on-write bytes of the cycle (another issue; may be absent). */
  cowBytes?: number;
  /** The fork() system call alone (µs). */
  forkUs?: number;
  /** Selective fork's share of the pause: maps read, MADV_DONTFORK before, MADV_DOFORK after (µs; may be absent). */
  forkPrepareUs?: number;
  /** CPU time of the forking thread in the pause (µs; may be absent). */
  forkCpuUs?: number;
  selectiveFork?: boolean;
  workerSweepMs: number;
  /** The main thread's GC-attributable stall (µs): total, longest, per kind (absent in older builds). */
  stallUs?: number;
  maxStallUs?: number;
  stalls?: Record<string, { us: number; maxUs: number; count: number }>;
  parentMinorFaults?: number;
  /** 2 MiB ranges made (or found) huge again since the previous cycle (restoreHugePages). */
  hugeRangesRestored?: number;
  hugeRestoreMs?: number;
}

export interface HeapStats {
  cycles: number;
  abortedCycles: number;
  heapBytes: number;
  liveBytes: number;
  objects: number;
  allocatedBytesTotal: number;
  maxPauseUs: number;
  totalPauseUs: number;
  totalMarkMs: number;
  totalSweepMs: number;
  freedBytesTotal: number;
  mode: 'fork' | 'stw';
  maxHeap: number;
}

export interface HeapOptions {
  maxHeap?: number | string;
  mode?: 'fork' | 'stw';
  hugePages?: boolean;
  checked?: boolean;
  gcPercent?: number;
  minTriggerBytes?: number | string;
  auto?: boolean;
  childTimeoutMs?: number;
  markStackEntries?: number;
  /** Exclude from fork() the mappings the child never reads (may be absent in older builds). */
  selectiveFork?: boolean;
  /** Fork mode's budget for marking in-process instead of forking; 0: every cycle forks (absent before it existed). */
  inProcessMarkUs?: number;
}

export interface Heap {
  defineStruct<F extends Record<string, FieldKind>>(name: string, fields: F): StructType<F>;
  readonly arrays: {
    alloc(length: number): Ref;
    length(ref: Ref): number;
    get(ref: Ref, i: number): Ref;
    set(ref: Ref, i: number, v: Ref): void;
  };
  readonly bytes: {
    alloc(lengthOrData: number | Uint8Array): Ref;
    length(ref: Ref): number;
    get(ref: Ref, i: number): number;
    set(ref: Ref, i: number, v: number): void;
    view(ref: Ref): Uint8Array;
    copy(ref: Ref): Uint8Array;
  };
  readonly strings: {
    alloc(s: string): Ref;
    read(ref: Ref): string;
    byteLength(ref: Ref): number;
    length(ref: Ref): number;
    equals(ref: Ref, s: string): boolean;
  };
  readonly maps: {
    alloc(capacityHint?: number): Ref;
    get(m: Ref, key: string | number): Ref;
    set(m: Ref, key: string | number, value: Ref): void;
    has(m: Ref, key: string | number): boolean;
    delete(m: Ref, key: string | number): boolean;
    size(m: Ref): number;
    capacity(m: Ref): number;
    clear(m: Ref): void;
    forEach(m: Ref, visit: (key: string | number, value: Ref) => void): void;
  };
  typeOf(ref: Ref): string;
  root(ref: Ref): RootHandle;
  safepoint(): void;
  collect(): Promise<CycleStats>;
  ready(): Promise<void>;
  stats(): HeapStats;
  close(): Promise<void>;
  on(event: 'cycle', fn: (c: CycleStats) => void): unknown;
  on(event: 'abort', fn: (e: Error & { code?: string; reason?: string }) => void): unknown;
  on(event: 'fallback', fn: (info: unknown) => void): unknown;
  on(event: 'stall', fn: (e: { kind: string; startMs: number; endMs: number }) => void): unknown;
}

export interface ForkgcModule {
  Heap: new (opts?: HeapOptions) => Heap;
}

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(resolve(dir, 'package.json')) && existsSync(resolve(dir, 'bench'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

/** Candidate module files, best first. */
export function libraryCandidates(): string[] {
  const root = packageRoot();
  const c: string[] = [];
  if (process.env.FORKGC_LIB) c.push(resolve(process.env.FORKGC_LIB));
  c.push(resolve(root, 'dist/index.js'), resolve(root, 'dist/src/index.js'));
  return c;
}

export async function loadForkgc(): Promise<ForkgcModule> {
  const tried: string[] = [];
  for (const file of libraryCandidates()) {
    if (!existsSync(file)) {
      tried.push(`${file} (missing)`);
      continue;
    }
    return (await import(pathToFileURL(file).href)) as ForkgcModule;
  }
  throw new Error(`forkgc library not built; tried: ${tried.join(', ')} (run: npm run build)`);
}

export function forkgcAvailable(): boolean {
  const root = packageRoot();
  return (
    libraryCandidates().some((f) => existsSync(f)) &&
    addonBuilt(root)
  );
}

/** Whether node-gyp-build finds the addon (build/Release, or a prebuild in prebuilds/). */
function addonBuilt(root: string): boolean {
  try {
    (createRequire(import.meta.url)('node-gyp-build') as { resolve(dir: string): string }).resolve(root);
    return true;
  } catch {
    return false;
  }
}
