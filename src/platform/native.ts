// Loads the C++ addon and types its surface. The addon is built by node-gyp
// during `npm install`; candidates are tried in order, and when none loads
// the error says what to do.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
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

export interface NativeAddon {
  createHeap(arenaBytes: number, hugePages: boolean, markStackEntries: number, maxRoots: number):
    RegionViews | { errno: number; message: string };
  attachHeap(id: number): RegionViews | null;
  detachHeap(views: RegionViews): void;
  heapDestroyed(id: number): boolean;
  destroyHeap(views: RegionViews): void;
  forkCycle(
    id: number, cycleId: number, topGranule: number, rootCount: number, fault: number, faultArg: number,
    selective: boolean): ForkOutcome;
  markInProcess(id: number, topGranule: number, rootCount: number, granule?: number): MarkOutcome;
  waitChild(pid: number, timeoutMs: number): ChildEnd | null;
  readBlocking(fd: number, into: Uint8Array, timeoutMs: number): number;
  releaseArena(id: number, offset: number, bytes: number): number;
  checksumWords(words: Uint32Array, seed: number): number;
  layoutConstants(): Record<string, number>;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// The package root is two levels up from src/platform/ and dist/platform/,
// three from dist/src/platform/ (the benchmarks compile the library beside
// themselves).
const candidates = [
  path.join(here, '..', '..', 'build', 'Release', 'forkgc.node'),
  path.join(here, '..', '..', 'build', 'Debug', 'forkgc.node'),
  path.join(here, '..', '..', '..', 'build', 'Release', 'forkgc.node'),
];

let loaded: NativeAddon | undefined;

export function native(): NativeAddon {
  if (loaded) return loaded;
  if (process.platform !== 'linux') {
    throw new UnsupportedPlatformError(
      `forkgc needs Linux (fork with copy-on-write, madvise, prctl); this is ${process.platform}`);
  }
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const file of candidates) {
    try {
      loaded = require(file) as NativeAddon;
      return loaded;
    } catch (e) {
      failures.push(`${file}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new NativeLoadError(
    `the forkgc addon is not built (tried ${failures.join('; ')}). ` +
    'Run `npm install` (or `npx node-gyp rebuild`) in the forkgc package; it needs python3, make and a C++ compiler.');
}
