/**
 * binary-trees, Computer Language Benchmarks Game rules: a stretch tree of depth
 * max+1, a long-lived tree of depth max, then for d = 4, 6, ..., max,
 * 2^(max-d+4) trees of depth d built bottom-up and checked (a tree of depth d has
 * 2^(d+1)-1 nodes, which is its check value). Output lines must match the
 * reference output byte for byte (see expectedOutput / REFERENCE_OUTPUT).
 *
 * The meter ticks every 1024 nodes allocated or checked; between trees the mutator reaches a
 * safepoint (forkgc) and yields to the event loop when a yield is due.
 */
import type { Heap, Ref } from '../lib/forkgc.js';
import { needHeap, type RunContext, type Workload, type WorkloadResult } from './types.js';

export interface BinaryTreesParams extends Record<string, number> {
  depth: number;
}

const MIN_DEPTH = 4;

/** The benchmarks game's output for a given max depth, from the closed form. */
export function expectedBinaryTrees(n: number): string[] {
  const maxDepth = Math.max(MIN_DEPTH + 2, n);
  const nodes = (d: number) => 2 ** (d + 1) - 1;
  const lines = [`stretch tree of depth ${maxDepth + 1}\t check: ${nodes(maxDepth + 1)}`];
  for (let d = MIN_DEPTH; d <= maxDepth; d += 2) {
    const iterations = 2 ** (maxDepth - d + MIN_DEPTH);
    lines.push(`${iterations}\t trees of depth ${d}\t check: ${iterations * nodes(d)}`);
  }
  lines.push(`long lived tree of depth ${maxDepth}\t check: ${nodes(maxDepth)}`);
  return lines;
}

/** The published reference outputs (benchmarksgame binarytrees-output.txt, n=10 and n=21). */
export const REFERENCE_OUTPUT: Record<number, string> = {
  10: [
    'stretch tree of depth 11\t check: 4095',
    '1024\t trees of depth 4\t check: 31744',
    '256\t trees of depth 6\t check: 32512',
    '64\t trees of depth 8\t check: 32704',
    '16\t trees of depth 10\t check: 32752',
    'long lived tree of depth 10\t check: 2047',
  ].join('\n'),
  21: [
    'stretch tree of depth 22\t check: 8388607',
    '2097152\t trees of depth 4\t check: 65011712',
    '524288\t trees of depth 6\t check: 66584576',
    '131072\t trees of depth 8\t check: 66977792',
    '32768\t trees of depth 10\t check: 67076096',
    '8192\t trees of depth 12\t check: 67100672',
    '2048\t trees of depth 14\t check: 67106816',
    '512\t trees of depth 16\t check: 67108352',
    '128\t trees of depth 18\t check: 67108736',
    '32\t trees of depth 20\t check: 67108832',
    'long lived tree of depth 21\t check: 4194303',
  ].join('\n'),
};

// ---- plain JavaScript objects ------------------------------------------------

export class TreeNode {
  constructor(
    public left: TreeNode | null,
    public right: TreeNode | null,
  ) {}
}

/** The plain variant's tree builder and checker (a meter tick per 1024 nodes built or checked); sync-binary-trees uses them too. */
export function plainTrees(meter: { tick(): void }): { bottomUp(d: number): TreeNode; check(t: TreeNode): number } {
  let allocs = 0;
  const bottomUp = (d: number): TreeNode => {
    if (++allocs === 1024) {
      allocs = 0;
      meter.tick();
    }
    return d > 0 ? new TreeNode(bottomUp(d - 1), bottomUp(d - 1)) : new TreeNode(null, null);
  };
  // Checking ticks too: a check of the long-lived tree visits 4M nodes and
  // allocates none, and without ticks its time would read as a stall.
  let visits = 0;
  const check = (t: TreeNode): number => {
    if (++visits === 1024) {
      visits = 0;
      meter.tick();
    }
    return t.left === null ? 1 : 1 + check(t.left) + check(t.right!);
  };
  return { bottomUp, check };
}

async function plain(ctx: RunContext<BinaryTreesParams>): Promise<WorkloadResult> {
  const meter = ctx.meter;
  const { bottomUp, check } = plainTrees(meter);

  const maxDepth = Math.max(MIN_DEPTH + 2, ctx.params.depth);
  const stretch = maxDepth + 1;
  ctx.out(`stretch tree of depth ${stretch}\t check: ${check(bottomUp(stretch))}`);
  const longLived = bottomUp(maxDepth);
  for (let d = MIN_DEPTH; d <= maxDepth; d += 2) {
    const iterations = 2 ** (maxDepth - d + MIN_DEPTH);
    let sum = 0;
    for (let i = 0; i < iterations; i++) {
      sum += check(bottomUp(d));
      if (meter.yieldDue) await meter.yield();
    }
    ctx.out(`${iterations}\t trees of depth ${d}\t check: ${sum}`);
  }
  ctx.out(`long lived tree of depth ${maxDepth}\t check: ${check(longLived)}`);
  return { verified: null };
}

// ---- forkgc -------------------------------------------------------------------

/**
 * The forkgc variant's tree builder and checker (a meter tick per 1024 nodes
 * built or checked) and a node's size; sync-binary-trees uses them too. Raw Refs in locals are
 * valid because nothing in them yields or reaches a safepoint.
 */
export function forkgcTrees(heap: Heap, meter: { tick(): void }, unchecked = false): {
  bottomUp(d: number): Ref; check(t: Ref): number; nodeBytes: number;
} {
  const Node = heap.defineStruct('TreeNode', { left: 'ref', right: 'ref' });
  const alloc = Node.alloc.bind(Node);
  const { get, set } = unchecked ? Node.unchecked : Node;
  const setLeft = set.left;
  const setRight = set.right;
  const getLeft = get.left;
  const getRight = get.right;
  let allocs = 0;
  const bottomUp = (d: number): Ref => {
    if (++allocs === 1024) {
      allocs = 0;
      meter.tick();
    }
    if (d === 0) return alloc();
    const l = bottomUp(d - 1);
    const r = bottomUp(d - 1);
    const n = alloc();
    setLeft(n, l);
    setRight(n, r);
    return n;
  };
  let visits = 0;
  const check = (t: Ref): number => {
    if (++visits === 1024) {
      visits = 0;
      meter.tick();
    }
    const l = getLeft(t);
    return l === 0 ? 1 : 1 + check(l) + check(getRight(t));
  };
  return { bottomUp, check, nodeBytes: Node.size };
}

async function forkgc(ctx: RunContext<BinaryTreesParams>): Promise<WorkloadResult> {
  const heap = needHeap(ctx);
  const meter = ctx.meter;
  const { bottomUp, check } = forkgcTrees(heap, meter, ctx.system.unchecked);

  const maxDepth = Math.max(MIN_DEPTH + 2, ctx.params.depth);
  const stretch = maxDepth + 1;
  ctx.out(`stretch tree of depth ${stretch}\t check: ${check(bottomUp(stretch))}`);
  const longLived = heap.root(bottomUp(maxDepth));
  for (let d = MIN_DEPTH; d <= maxDepth; d += 2) {
    const iterations = 2 ** (maxDepth - d + MIN_DEPTH);
    let sum = 0;
    for (let i = 0; i < iterations; i++) {
      sum += check(bottomUp(d));
      // Everything live is reachable from `longLived` here.
      if (meter.safepointDue) {
        meter.safepointDue = false;
        heap.safepoint();
      }
      if (meter.yieldDue) await meter.yield();
    }
    ctx.out(`${iterations}\t trees of depth ${d}\t check: ${sum}`);
  }
  ctx.out(`long lived tree of depth ${maxDepth}\t check: ${check(longLived.get())}`);
  longLived.release();
  return { verified: null };
}

export const binaryTrees: Workload<BinaryTreesParams> = {
  name: 'binary-trees',
  unit: '1024 nodes built or checked',
  cases: (full) => [{ depth: full ? 21 : 16 }],
  label: (p) => `depth ${p.depth}`,
  systems: () => ['forkgc-fork', 'forkgc-fork-always', 'forkgc-fork-unchecked', 'forkgc-stw', 'v8'],
  // stretch tree of depth 22: 8M nodes x 16 B = 128 MiB; long-lived 64 MiB.
  heapOptions: (p) => ({ maxHeap: p.depth >= 20 ? '2GiB' : '1GiB' }),
  nodeFlags: (p, sys) => (sys.kind === 'v8' && p.depth >= 20 ? ['--max-old-space-size=4096'] : []),
  timeoutMs: (p, full) => (full ? 900_000 : 120_000),
  expectedOutput: (p) => expectedBinaryTrees(p.depth),
  plain,
  forkgc,
};
