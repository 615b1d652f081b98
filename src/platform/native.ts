// Loads the C++ addon and types its surface. node-gyp-build finds it: a
// local build, or the prebuilt binary the npm package ships; when neither
// loads, the error says what to do.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { NativeLoadError, UnsupportedPlatformError } from '../api/errors.js';

export interface RegionViews {
  id: number;
  /** The arena's address in this process (for pagemap readers). */
  arenaAddress: bigint;
  arena: ArrayBuffer;
  allocBits: ArrayBuffer;
  markBits: ArrayBuffer;
  spans: ArrayBuffer;
  descriptors: ArrayBuffer;
  roots: ArrayBuffer;
  hugePages: boolean;
  wipeOnFork: boolean;
}

export interface ForkOutcome {
  pid: number; fd: number; forkNs: number; errno: number; message: string;
  /** CLOCK_MONOTONIC at the fork() call (ns), when the child's life began; process.hrtime() reads the same clock. */
  forkStartNs: number;
  /** CPU time of the forking thread in the call (ns): the pause without the time it was preempted. */
  cpuNs: number;
  /** Selective fork was in force for this fork (native/fork_exclusion.h). */
  selective: boolean;
  /** Before fork(): reading /proc/self/maps and the MADV_DONTFORK calls (ns). */
  prepareNs: number; readMapsNs: number; adviseNs: number;
  /** After fork(): the MADV_DOFORK calls (ns). */
  restoreNs: number;
  mappings: number; excludedMappings: number; madviseCalls: number; excludedBytes: number; mapsCached: boolean;
}
export interface MarkOutcome {
  objects: number; bytes: number; ns: number; stackHighWater: number;
  overflowRescans: number; status: number; badRef: number;
}
export type ChildEnd =
  | { state: 'exited'; code: number }
  | { state: 'signaled'; signal: number }
  | { state: 'gone'; errno: number };

/** What a heap's restore thread has done so far (native/huge_page_restore.cc). */
export interface RestoreFigures {
  rangesCollapsed: number;
  rangesFailed: number;
  ns: number;
  bytesMadeWritable: number;
  writableNs: number;
  writableFaults: number;
  /** Whether the thread has a piece of work (a range, or 2 MiB to make writable) in progress now. */
  working: boolean;
}

/** What a heap's prefault thread has done so far (native/growth_prefault.cc). */
export interface PrefaultFigures {
  bytes: number;
  ns: number;
  calls: number;
  failures: number;
  /** The minor faults the thread took doing it. */
  faults: number;
  /** A chunk is being faulted in now (a look that does not stop the thread, unlike prefaultQuiesce). */
  working: boolean;
}

export interface NativeAddon {
  createHeap(arenaBytes: number, hugePages: boolean, markStackEntries: number, maxRoots: number):
    RegionViews | { errno: number; message: string };
  attachHeap(id: number): RegionViews | null;
  detachHeap(views: RegionViews): void;
  heapDestroyed(id: number): boolean;
  /** Threads holding views of a live heap (its owner's and each attached sweeper thread's); 0 once destroyed. */
  heapAttachments(id: number): number;
  destroyHeap(views: RegionViews): void;
  /** JS owns the child's pipe from now on: the environment's cleanup hook no longer closes it. */
  adoptChildPipe(pid: number): void;
  forkCycle(
    id: number, cycleId: number, topGranule: number, rootCount: number, fault: number, faultArg: number,
    selective: boolean): ForkOutcome;
  markInProcess(id: number, topGranule: number, rootCount: number, granule?: number): MarkOutcome;
  waitChild(pid: number, timeoutMs: number): ChildEnd | null;
  readBlocking(fd: number, into: Uint8Array, timeoutMs: number): number;
  releaseArena(id: number, offset: number, bytes: number): number;
  /**
   * Once the child is reaped, on a thread of the heap's: makes the pages of
   * the `writable` spans (one byte per 64 KiB span) and their allocation bits
   * writable again, and merges the `wanted` 2 MiB ranges back into huge pages
   * (native/huge_page_restore.cc); false if the kernel can do neither.
   */
  restorePages(id: number, writable: Uint8Array, wanted: Uint8Array): boolean;
  /**
   * Totals of restorePages so far: ranges merged, ranges refused, time spent
   * merging (ns); bytes made writable, time spent on it (ns), and the minor
   * faults the restore thread took for it.
   */
  hugePageRestoreFigures(id: number): RestoreFigures;
  /** The restore thread takes no new piece of work until restoreResume; whether a piece is in progress now. */
  restoreQuiesce(id: number): boolean;
  restoreResume(id: number): void;
  /** Tests only: the restore thread sleeps `ms` after taking each piece of work, before its madvise (0: off). */
  setHugePageRestoreDelayForTesting(id: number, ms: number): void;
  setGrowthPrefaultDelayForTesting(id: number, ms: number): void;
  /**
   * On a thread of the heap's, faults in arena bytes [from, to) (whole
   * chunks, within the arena), instead of what it was asked before
   * (native/growth_prefault.cc); false if the kernel cannot.
   */
  prefaultGrowth(id: number, from: number, to: number): boolean;
  /** Totals of prefaultGrowth so far: bytes faulted in, time spent (ns), calls, failed calls, the thread's minor faults. */
  growthPrefaultFigures(id: number): PrefaultFigures;
  /** The prefault thread takes no new chunk until prefaultResume; whether a chunk is in flight now. */
  prefaultQuiesce(id: number): boolean;
  prefaultResume(id: number): void;
  /**
   * Checks a bitmap chunk against its checksum and stages it into the heap's
   * mark bitmap at `wordOffset`: the marks staged, or a STAGE_* code (< 0).
   */
  stageChunk(id: number, words: Uint32Array, seed: number, sum: number, wordOffset: number): number;
  checksumWords(words: Uint32Array, seed: number): number;
  /** This thread's scratch for encodeUtf8 (16 KiB, made at the first call; always the same one). */
  utf8Scratch(): Uint8Array;
  /**
   * Writes the string's UTF-8 form at the start of the thread's scratch,
   * then 4 zero bytes; returns its byte length, or -1 if it may not have fit.
   */
  encodeUtf8(s: string): number;
  layoutConstants(): Record<string, number>;
}

let loaded: NativeAddon | undefined;

/**
 * The forkgc package's own directory: the nearest folder above this module
 * whose package.json is forkgc's (one level up from src/ and dist/, two from
 * the benchmarks' dist/src/), so the loader never looks outside the package.
 */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'forkgc') return dir;
      } catch { /* not a manifest we can read: keep going up */ }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new NativeLoadError(`forkgc's package.json was not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/**
 * The addon, through node-gyp-build: build/Release (a local build: a clone,
 * or an install that compiled from source), then the prebuilt binary shipped
 * in prebuilds/<platform>-<arch>/ (linux-x64, glibc). The sweeper threads
 * load it the same way.
 */
export function native(): NativeAddon {
  if (loaded) return loaded;
  if (process.platform !== 'linux') {
    throw new UnsupportedPlatformError(
      `forkgc needs Linux (fork with copy-on-write, madvise, prctl); this is ${process.platform}`);
  }
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  try {
    const load = require('node-gyp-build') as (dir: string) => unknown;
    // A copy of the exports: the object N-API fills is dictionary-mode in V8,
    // so each `addon.f(...)` would be a generic property lookup in optimized
    // code (strings.alloc's encoder call among them); a spread copy has fast
    // properties (test/handle-shapes.test.ts). N-API functions do not use
    // their receiver.
    loaded = { ...(load(root) as NativeAddon) };
    return loaded;
  } catch (e) {
    throw new NativeLoadError(
      `the forkgc addon could not be loaded from ${root} (${(e as Error).message.trim().split('\n')[0]}). ` +
      'The published package ships a prebuilt binary for linux-x64 with glibc 2.34 or newer; anywhere else (or ' +
      'when that binary is missing or does not load) the addon is compiled at install, which needs python3, make ' +
      'and a C++ compiler (Debian/Ubuntu: apt-get install python3 make g++). Then rebuild it: `npm rebuild forkgc` in your app.');
  }
}
