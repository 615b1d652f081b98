/**
 * GCBench (John Ellis and Pete Kovac, Post Communications; modified by Hans Boehm):
 * a stretch tree, a long-lived tree and a long-lived array of doubles, then for
 * depth = kMinTreeDepth..kMaxTreeDepth step 2, NumIters(depth) short-lived trees
 * built top-down (Populate) and the same number built bottom-up (MakeTree).
 * NumIters(i) = 2 * TreeSize(kStretchTreeDepth) / TreeSize(i), TreeSize(i) = 2^(i+1)-1.
 *
 * forkgc: Node is a struct {left, right, i, j}; the array of doubles is a Bytes
 * object written through a DataView (Float64, little endian).
 */
import type { Ref } from '../lib/forkgc.js';
import { accessorsOf, needHeap, type RunContext, type Workload, type WorkloadResult } from './types.js';

export interface GcBenchParams extends Record<string, number> {
  stretchTreeDepth: number;
  longLivedTreeDepth: number;
  arraySize: number;
  minTreeDepth: number;
  maxTreeDepth: number;
}

const ORIGINAL: GcBenchParams = {
  stretchTreeDepth: 18,
  longLivedTreeDepth: 16,
  arraySize: 500000,
  minTreeDepth: 4,
  maxTreeDepth: 16,
};

const treeSize = (i: number) => 2 ** (i + 1) - 1;
const numIters = (p: GcBenchParams, i: number) => Math.floor((2 * treeSize(p.stretchTreeDepth)) / treeSize(i));

function banner(p: GcBenchParams): string[] {
  return [
    'Garbage Collector Test',
    ` Stretching memory with a binary tree of depth ${p.stretchTreeDepth}`,
    ` Creating a long-lived binary tree of depth ${p.longLivedTreeDepth}`,
    ` Creating a long-lived array of ${p.arraySize / 2} doubles`,
  ];
}

function expected(p: GcBenchParams): string[] {
  const lines = banner(p);
  for (let d = p.minTreeDepth; d <= p.maxTreeDepth; d += 2) {
    lines.push(`Creating ${numIters(p, d)} trees of depth ${d}`);
    lines.push(`\tTop down construction: ${numIters(p, d) * treeSize(d)} nodes`);
    lines.push(`\tBottom up construction: ${numIters(p, d) * treeSize(d)} nodes`);
  }
  lines.push('long-lived tree and array intact');
  return lines;
}

// ---- plain JavaScript objects ------------------------------------------------

class GNode {
  left: GNode | null = null;
  right: GNode | null = null;
  i = 0;
  j = 0;
  constructor(l: GNode | null = null, r: GNode | null = null) {
    this.left = l;
    this.right = r;
  }
}

async function plain(ctx: RunContext<GcBenchParams>): Promise<WorkloadResult> {
  const p = ctx.params;
  const meter = ctx.meter;
  let allocs = 0;
  const newNode = (l: GNode | null, r: GNode | null): GNode => {
    if (++allocs === 1024) {
      allocs = 0;
      meter.tick();
    }
    return new GNode(l, r);
  };
  const populate = (depth: number, node: GNode): void => {
    if (depth <= 0) return;
    depth--;
    node.left = newNode(null, null);
    node.right = newNode(null, null);
    populate(depth, node.left);
    populate(depth, node.right);
  };
  const makeTree = (depth: number): GNode =>
    depth <= 0 ? newNode(null, null) : newNode(makeTree(depth - 1), makeTree(depth - 1));
  // Counting ticks too (as binary-trees' check does): a count of a depth-16
  // tree visits 131k nodes and allocates none, and without ticks its time
  // would read as a stall.
  let visits = 0;
  const count = (n: GNode | null): number => {
    if (n === null) return 0;
    if (++visits === 1024) {
      visits = 0;
      meter.tick();
    }
    return 1 + count(n.left) + count(n.right);
  };

  for (const l of banner(p).slice(0, 2)) ctx.out(l);
  makeTree(p.stretchTreeDepth);
  ctx.out(banner(p)[2]);
  const longLived = newNode(null, null);
  populate(p.longLivedTreeDepth, longLived);
  ctx.out(banner(p)[3]);
  const array = new Float64Array(p.arraySize / 2);
  for (let i = 1; i < p.arraySize / 2; i++) array[i] = 1.0 / i;

  for (let d = p.minTreeDepth; d <= p.maxTreeDepth; d += 2) {
    const iters = numIters(p, d);
    ctx.out(`Creating ${iters} trees of depth ${d}`);
    let nodes = 0;
    for (let i = 0; i < iters; i++) {
      const temp = newNode(null, null);
      populate(d, temp);
      nodes += count(temp);
      if (meter.yieldDue) await meter.yield();
    }
    ctx.out(`\tTop down construction: ${nodes} nodes`);
    nodes = 0;
    for (let i = 0; i < iters; i++) {
      nodes += count(makeTree(d));
      if (meter.yieldDue) await meter.yield();
    }
    ctx.out(`\tBottom up construction: ${nodes} nodes`);
  }
  const ok = count(longLived) === treeSize(p.longLivedTreeDepth) && array[1000] === 1.0 / 1000;
  ctx.out(ok ? 'long-lived tree and array intact' : 'Failed');
  return { verified: null };
}

// ---- forkgc -------------------------------------------------------------------

async function forkgc(ctx: RunContext<GcBenchParams>): Promise<WorkloadResult> {
  const heap = needHeap(ctx);
  const p = ctx.params;
  const meter = ctx.meter;
  const Node = heap.defineStruct('GNode', { left: 'ref', right: 'ref', i: 'i32', j: 'i32' });
  const { left: getLeft, right: getRight } = accessorsOf(Node, ctx.system).get;
  const { left: setLeft, right: setRight } = accessorsOf(Node, ctx.system).set;
  let allocs = 0;
  const newNode = (l: Ref, r: Ref): Ref => {
    if (++allocs === 1024) {
      allocs = 0;
      meter.tick();
    }
    const n = Node.alloc();
    if (l !== 0) setLeft(n, l);
    if (r !== 0) setRight(n, r);
    return n;
  };
  // Raw refs below never cross a yield or a safepoint.
  const populate = (depth: number, node: Ref): void => {
    if (depth <= 0) return;
    depth--;
    setLeft(node, newNode(0, 0));
    setRight(node, newNode(0, 0));
    populate(depth, getLeft(node));
    populate(depth, getRight(node));
  };
  const makeTree = (depth: number): Ref => {
    if (depth <= 0) return newNode(0, 0);
    const l = makeTree(depth - 1);
    const r = makeTree(depth - 1);
    return newNode(l, r);
  };
  let visits = 0;
  const count = (n: Ref): number => {
    if (n === 0) return 0;
    if (++visits === 1024) {
      visits = 0;
      meter.tick();
    }
    return 1 + count(getLeft(n)) + count(getRight(n));
  };
  const safepoint = () => {
    if (meter.safepointDue) {
      meter.safepointDue = false;
      heap.safepoint();
    }
  };

  for (const l of banner(p).slice(0, 2)) ctx.out(l);
  makeTree(p.stretchTreeDepth);
  ctx.out(banner(p)[2]);
  const longLived = heap.root(newNode(0, 0));
  populate(p.longLivedTreeDepth, longLived.get());
  ctx.out(banner(p)[3]);
  const n = p.arraySize / 2;
  const arrayRoot = heap.root(heap.bytes.alloc(n * 8));
  {
    const v = heap.bytes.view(arrayRoot.get());
    const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
    for (let i = 1; i < n; i++) dv.setFloat64(i * 8, 1.0 / i, true);
  }

  for (let d = p.minTreeDepth; d <= p.maxTreeDepth; d += 2) {
    const iters = numIters(p, d);
    ctx.out(`Creating ${iters} trees of depth ${d}`);
    let nodes = 0;
    for (let i = 0; i < iters; i++) {
      const temp = newNode(0, 0);
      populate(d, temp);
      nodes += count(temp);
      safepoint();
      if (meter.yieldDue) await meter.yield();
    }
    ctx.out(`\tTop down construction: ${nodes} nodes`);
    nodes = 0;
    for (let i = 0; i < iters; i++) {
      nodes += count(makeTree(d));
      safepoint();
      if (meter.yieldDue) await meter.yield();
    }
    ctx.out(`\tBottom up construction: ${nodes} nodes`);
  }
  const v = heap.bytes.view(arrayRoot.get());
  const a1000 = new DataView(v.buffer, v.byteOffset, v.byteLength).getFloat64(1000 * 8, true);
  const ok = count(longLived.get()) === treeSize(p.longLivedTreeDepth) && a1000 === 1.0 / 1000;
  ctx.out(ok ? 'long-lived tree and array intact' : 'Failed');
  longLived.release();
  arrayRoot.release();
  return { verified: null };
}

export const gcBench: Workload<GcBenchParams> = {
  name: 'gcbench',
  unit: '1024 nodes allocated or counted',
  cases: (full) => [
    full
      ? ORIGINAL
      : { stretchTreeDepth: 17, longLivedTreeDepth: 15, arraySize: 500000, minTreeDepth: 4, maxTreeDepth: 14 },
  ],
  label: (p) => `stretch ${p.stretchTreeDepth} / long-lived ${p.longLivedTreeDepth} / max ${p.maxTreeDepth}`,
  systems: () => ['forkgc-fork', 'forkgc-fork-always', 'forkgc-fork-unchecked', 'forkgc-stw', 'v8'],
  heapOptions: () => ({ maxHeap: '1GiB' }),
  timeoutMs: (_p, full) => (full ? 600_000 : 120_000),
  expectedOutput: expected,
  plain,
  forkgc,
};
