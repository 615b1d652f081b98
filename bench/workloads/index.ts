import type { Params, Workload } from './types.js';
import { binaryTrees } from './binary-trees.js';
import { gcBench } from './gcbench.js';
import { lruCache } from './lru-cache.js';
import { splay } from './splay.js';
import { pauseScaling } from './pause-scaling.js';
import { forkPauseV8 } from './fork-pause-v8.js';
import { httpCache } from './http-cache.js';
import { syncBinaryTrees } from './sync-binary-trees.js';

export const WORKLOADS: Workload<Params>[] = [binaryTrees, gcBench, lruCache, splay, pauseScaling, forkPauseV8, httpCache, syncBinaryTrees] as unknown as Workload<Params>[];

export function workloadByName(name: string): Workload<Params> {
  const w = WORKLOADS.find((x) => x.name === name);
  if (!w) throw new Error(`unknown workload ${name}; known: ${WORKLOADS.map((x) => x.name).join(', ')}`);
  return w;
}
