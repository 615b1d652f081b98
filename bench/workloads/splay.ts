/**
 * splay: Octane's Splay / SplayLatency at a larger live size. A splay tree of
 * `size` nodes, each carrying a payload tree of depth 5 (leaves hold a 10-element
 * array and a string); each operation inserts a node with a fresh random key and
 * removes the greatest key below it (or itself), so the live size stays constant
 * while payloads churn. One meter tick per operation (insert + remove).
 *
 * forkgc layout:
 *   SplayNode | key: f64 | value: ref | left: ref | right: ref |
 *   Payload   | left: ref | right: ref |
 *   Leaf      | array: ref (Bytes, 10) | string: ref (String) |
 *   Holder    | root: ref |             (rooted by one handle)
 */
import { mulberry32 } from '../lib/rng.js';
import type { Ref } from '../lib/forkgc.js';
import { accessorsOf, needHeap, type RunContext, type Workload, type WorkloadResult } from './types.js';

export interface SplayParams extends Record<string, number> {
  size: number;
  ops: number;
  payloadDepth: number;
}

// ---- plain JavaScript objects (Octane's code, in a class) ------------------------

class SNode {
  left: SNode | null = null;
  right: SNode | null = null;
  constructor(
    public key: number,
    public value: unknown,
  ) {}
}

class SplayTree {
  root: SNode | null = null;

  insert(key: number, value: unknown): void {
    if (this.root === null) {
      this.root = new SNode(key, value);
      return;
    }
    this.splay(key);
    const root = this.root!;
    if (root.key === key) return;
    const node = new SNode(key, value);
    if (key > root.key) {
      node.left = root;
      node.right = root.right;
      root.right = null;
    } else {
      node.right = root;
      node.left = root.left;
      root.left = null;
    }
    this.root = node;
  }

  remove(key: number): SNode {
    if (this.root === null) throw new Error(`Key not found: ${key}`);
    this.splay(key);
    const removed = this.root!;
    if (removed.key !== key) throw new Error(`Key not found: ${key}`);
    if (removed.left === null) {
      this.root = removed.right;
    } else {
      const right = removed.right;
      this.root = removed.left;
      this.splay(key);
      this.root!.right = right;
    }
    return removed;
  }

  find(key: number): SNode | null {
    if (this.root === null) return null;
    this.splay(key);
    return this.root!.key === key ? this.root : null;
  }

  findMax(start: SNode | null): SNode | null {
    let current = start ?? this.root;
    if (current === null) return null;
    while (current.right !== null) current = current.right;
    return current;
  }

  findGreatestLessThan(key: number): SNode | null {
    if (this.root === null) return null;
    this.splay(key);
    if (this.root!.key < key) return this.root;
    if (this.root!.left !== null) return this.findMax(this.root!.left);
    return null;
  }

  private splay(key: number): void {
    if (this.root === null) return;
    const dummy = new SNode(NaN, null);
    let left = dummy;
    let right = dummy;
    let current = this.root;
    for (;;) {
      if (key < current.key) {
        if (current.left === null) break;
        if (key < current.left.key) {
          const tmp: SNode = current.left;
          current.left = tmp.right;
          tmp.right = current;
          current = tmp;
          if (current.left === null) break;
        }
        right.left = current;
        right = current;
        current = current.left!;
      } else if (key > current.key) {
        if (current.right === null) break;
        if (key > current.right.key) {
          const tmp: SNode = current.right;
          current.right = tmp.left;
          tmp.left = current;
          current = tmp;
          if (current.right === null) break;
        }
        left.right = current;
        left = current;
        current = current.right!;
      } else {
        break;
      }
    }
    left.right = current.left;
    right.left = current.right;
    current.left = dummy.right;
    current.right = dummy.left;
    this.root = current;
  }
}

function generatePayloadTree(depth: number, tag: string): unknown {
  if (depth === 0) {
    return { array: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], string: 'String for key ' + tag + ' in leaf node' };
  }
  return { left: generatePayloadTree(depth - 1, tag), right: generatePayloadTree(depth - 1, tag) };
}

function summary(nodes: number, keySum: number): string {
  return `nodes: ${nodes} keysum: ${keySum.toFixed(6)}`;
}

async function plain(ctx: RunContext<SplayParams>): Promise<WorkloadResult> {
  const { size, ops, payloadDepth } = ctx.params;
  const meter = ctx.meter;
  const random = mulberry32(1234);
  const tree = new SplayTree();
  const insertNewNode = (): number => {
    let key: number;
    do key = random();
    while (tree.find(key) !== null);
    tree.insert(key, generatePayloadTree(payloadDepth, String(key)));
    return key;
  };
  meter.setup();
  for (let i = 0; i < size; i++) {
    insertNewNode();
    meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  meter.begin();
  for (let i = 0; i < ops; i++) {
    const key = insertNewNode();
    const greatest = tree.findGreatestLessThan(key);
    tree.remove(greatest === null ? key : greatest.key);
    meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  meter.end();
  // In-order walk: count, sortedness, key sum.
  let n = 0;
  let sum = 0;
  let prev = -Infinity;
  let sorted = true;
  const stack: SNode[] = [];
  let cur = tree.root;
  while (cur !== null || stack.length > 0) {
    while (cur !== null) {
      stack.push(cur);
      cur = cur.left;
    }
    const node = stack.pop()!;
    n++;
    sum += node.key;
    if (node.key <= prev) sorted = false;
    prev = node.key;
    cur = node.right;
  }
  ctx.out(summary(n, sum));
  return { verified: sorted && n === size };
}

// ---- forkgc -------------------------------------------------------------------

async function forkgc(ctx: RunContext<SplayParams>): Promise<WorkloadResult> {
  const heap = needHeap(ctx);
  const { size, ops, payloadDepth } = ctx.params;
  const meter = ctx.meter;
  const random = mulberry32(1234);
  const Node = heap.defineStruct('SplayNode', { key: 'f64', value: 'ref', left: 'ref', right: 'ref' });
  const Payload = heap.defineStruct('SplayPayload', { left: 'ref', right: 'ref' });
  const Leaf = heap.defineStruct('SplayLeaf', { array: 'ref', string: 'ref' });
  const Holder = heap.defineStruct('SplayHolder', { root: 'ref' });
  const { get: G, set: S } = accessorsOf(Node, ctx.system);
  const HolderA = accessorsOf(Holder, ctx.system);
  const holder = heap.root(Holder.alloc());
  const DIGITS = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

  // The tree's root lives in the Holder: every operation reads it at its start and
  // writes it back before it returns, so nothing raw survives a yield.
  const getRoot = (): Ref => HolderA.get.root(holder.get());
  const setRoot = (r: Ref): void => HolderA.set.root(holder.get(), r);

  const newNode = (key: number, value: Ref): Ref => Node.make(key, value);

  const splay = (key: number): void => {
    const root = getRoot();
    if (root === 0) return;
    const dummy = newNode(NaN, 0);
    let left = dummy;
    let right = dummy;
    let current = root;
    for (;;) {
      const ck = G.key(current);
      if (key < ck) {
        let cl = G.left(current);
        if (cl === 0) break;
        if (key < G.key(cl)) {
          const tmp = cl;
          S.left(current, G.right(tmp));
          S.right(tmp, current);
          current = tmp;
          cl = G.left(current);
          if (cl === 0) break;
        }
        S.left(right, current);
        right = current;
        current = cl;
      } else if (key > ck) {
        let cr = G.right(current);
        if (cr === 0) break;
        if (key > G.key(cr)) {
          const tmp = cr;
          S.right(current, G.left(tmp));
          S.left(tmp, current);
          current = tmp;
          cr = G.right(current);
          if (cr === 0) break;
        }
        S.right(left, current);
        left = current;
        current = cr;
      } else {
        break;
      }
    }
    S.right(left, G.left(current));
    S.left(right, G.right(current));
    S.left(current, G.right(dummy));
    S.right(current, G.left(dummy));
    setRoot(current);
  };

  const insert = (key: number, value: Ref): void => {
    if (getRoot() === 0) {
      setRoot(newNode(key, value));
      return;
    }
    splay(key);
    const root = getRoot();
    if (G.key(root) === key) return;
    const node = newNode(key, value);
    if (key > G.key(root)) {
      S.left(node, root);
      S.right(node, G.right(root));
      S.right(root, 0);
    } else {
      S.right(node, root);
      S.left(node, G.left(root));
      S.left(root, 0);
    }
    setRoot(node);
  };

  const remove = (key: number): void => {
    if (getRoot() === 0) throw new Error(`Key not found: ${key}`);
    splay(key);
    const removed = getRoot();
    if (G.key(removed) !== key) throw new Error(`Key not found: ${key}`);
    if (G.left(removed) === 0) {
      setRoot(G.right(removed));
    } else {
      const right = G.right(removed);
      setRoot(G.left(removed));
      splay(key);
      S.right(getRoot(), right);
    }
  };

  const find = (key: number): boolean => {
    if (getRoot() === 0) return false;
    splay(key);
    return G.key(getRoot()) === key;
  };

  const findMax = (start: Ref): Ref => {
    let current = start;
    for (let r = G.right(current); r !== 0; r = G.right(current)) current = r;
    return current;
  };

  /** Returns the key, or NaN for none. */
  const findGreatestLessThan = (key: number): number => {
    if (getRoot() === 0) return NaN;
    splay(key);
    const root = getRoot();
    if (G.key(root) < key) return G.key(root);
    const l = G.left(root);
    return l !== 0 ? G.key(findMax(l)) : NaN;
  };

  const generatePayload = (depth: number, tag: string): Ref => {
    // Each object made with its fields' values (make), as the plain variant's
    // object literals are; the values' raw Refs are held only while their
    // siblings are allocated (no yield, no safepoint).
    if (depth === 0) return Leaf.make(heap.bytes.alloc(DIGITS), heap.strings.alloc('String for key ' + tag + ' in leaf node'));
    return Payload.make(generatePayload(depth - 1, tag), generatePayload(depth - 1, tag));
  };

  const insertNewNode = (): number => {
    let key: number;
    do key = random();
    while (find(key));
    // The payload is built before the node that holds it and inserted at once:
    // no yield in between.
    insert(key, generatePayload(payloadDepth, String(key)));
    return key;
  };
  const safepoint = () => {
    if (meter.safepointDue) {
      meter.safepointDue = false;
      heap.safepoint();
    }
  };

  meter.setup();
  for (let i = 0; i < size; i++) {
    insertNewNode();
    meter.tick();
    safepoint();
    if (meter.yieldDue) await meter.yield();
  }
  meter.begin();
  for (let i = 0; i < ops; i++) {
    const key = insertNewNode();
    const greatest = findGreatestLessThan(key);
    remove(Number.isNaN(greatest) ? key : greatest);
    meter.tick();
    safepoint();
    if (meter.yieldDue) await meter.yield();
  }
  meter.end();
  let n = 0;
  let sum = 0;
  let prev = -Infinity;
  let sorted = true;
  const stack: Ref[] = [];
  let cur = getRoot();
  while (cur !== 0 || stack.length > 0) {
    while (cur !== 0) {
      stack.push(cur);
      cur = G.left(cur);
    }
    const node = stack.pop()!;
    const k = G.key(node);
    n++;
    sum += k;
    if (k <= prev) sorted = false;
    prev = k;
    cur = G.right(node);
  }
  ctx.out(summary(n, sum));
  holder.release();
  return { verified: sorted && n === size };
}

export const splay: Workload<SplayParams> = {
  name: 'splay',
  unit: 'op',
  cases: (full) => [full ? { size: 100_000, ops: 1_000_000, payloadDepth: 5 } : { size: 16_000, ops: 80_000, payloadDepth: 5 }],
  label: (p) => `${p.size} nodes, ${p.ops} ops`,
  systems: () => ['forkgc-fork', 'forkgc-fork-always', 'forkgc-fork-unchecked', 'forkgc-stw', 'v8'],
  heapOptions: (p) => ({ maxHeap: p.size >= 50_000 ? '3GiB' : '1GiB' }),
  nodeFlags: (p, sys) => (sys.kind === 'v8' && p.size >= 50_000 ? ['--max-old-space-size=4096'] : []),
  timeoutMs: (_p, full) => (full ? 900_000 : 120_000),
  plain,
  forkgc,
};
