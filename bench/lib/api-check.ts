/**
 * Compile-time binding of the bench's structural view of the API (lib/forkgc.ts)
 * to the library's real exports (src/index.ts). Checked by `npm run typecheck`
 * (the root tsconfig includes bench/); excluded from bench/tsconfig.json so that
 * the bench (and its plain-JS and peer systems) builds even while src/ is in flux.
 * Emits nothing at run time.
 */
import type * as Lib from '../../src/index.js';
import type { CycleStats, ForkgcModule, Heap, HeapStats, RootHandle } from './forkgc.js';

type Assert<T extends true> = T;
type Extends<A, B> = [A] extends [B] ? true : false;

export type ApiChecks = [
  Assert<Extends<typeof Lib, ForkgcModule>>,
  Assert<Extends<Lib.Heap, Heap>>,
  Assert<Extends<Lib.RootHandle, RootHandle>>,
  Assert<Extends<Lib.CycleStats, Omit<CycleStats, 'cowBytes'>>>,
  Assert<Extends<Lib.HeapStats, HeapStats>>,
];
