/**
 * lru-cache: a large live map of records (strings and nested objects) kept at a
 * steady size with a constant replacement rate. Keys are drawn uniformly from a
 * key space twice the capacity, so about half the requests miss; a miss builds a
 * new record and evicts the least recently used one. One meter tick per request.
 *
 * Record: { key, value (~64-char string), meta: { id, score, tags: [3 strings],
 * owner: { name, age } } } -> 9 heap objects.
 *
 * forkgc: the whole index is heap-resident and rooted by one handle: a Table struct
 * whose `buckets` RefArray holds chains of Entry structs, plus a doubly linked LRU
 * list through the entries.
 *
 *   Table  | buckets: ref | head: ref (MRU) | tail: ref (LRU) | size: u32 | mask: u32 |
 *   Entry  | key: ref | value: ref | meta: ref | chain: ref | prev: ref | next: ref | hash: u32 |
 *   Meta   | id: u32 | score: f64 | tags: ref (RefArray of 3 String) | owner: ref |
 *   Owner  | name: ref (String) | age: i32 |
 */
import { performance } from 'node:perf_hooks';
import { fnv1a, mulberry32 } from '../lib/rng.js';
import type { Ref } from '../lib/forkgc.js';
import { accessorsOf, needHeap, type RunContext, type Workload, type WorkloadResult } from './types.js';

export interface LruParams extends Record<string, number> {
  capacity: number;
  requests: number;
}
// params.durationMs (optional): wall-clock limit of the request phase (soak); 0 or absent = none.

const keyOf = (k: number) => `key:${k}`;
const valueOf = (k: number, v: number) => `value-${k}-${v}-`.padEnd(64, 'abcdefghijklmnopqrstuvwxyz');
const tagsOf = (k: number, v: number) => [`tag${k % 7}`, `tag-${k % 13}`, `t-${v}`];
const ownerNameOf = (k: number) => `owner-${k % 1000}`;

function summary(hits: number, misses: number, evictions: number, checksum: number): string {
  return `hits: ${hits} misses: ${misses} evictions: ${evictions} checksum: ${checksum}`;
}

// ---- plain JavaScript objects ------------------------------------------------

interface Rec {
  key: string;
  value: string;
  meta: { id: number; score: number; tags: string[]; owner: { name: string; age: number } };
  prev: Rec | null;
  next: Rec | null;
}

async function plain(ctx: RunContext<LruParams>): Promise<WorkloadResult> {
  const { capacity, requests } = ctx.params;
  const meter = ctx.meter;
  const rnd = mulberry32(42);
  const keySpace = capacity * 2;
  // Index: a Map; recency: an intrusive doubly linked list (head = MRU, tail = LRU),
  // the same algorithm as the heap-resident variant.
  const map = new Map<string, Rec>();
  let head: Rec | null = null;
  let tail: Rec | null = null;
  const unlink = (r: Rec): void => {
    if (r.prev !== null) r.prev.next = r.next;
    else head = r.next;
    if (r.next !== null) r.next.prev = r.prev;
    else tail = r.prev;
    r.prev = r.next = null;
  };
  const pushFront = (r: Rec): void => {
    r.next = head;
    r.prev = null;
    if (head !== null) head.prev = r;
    else tail = r;
    head = r;
  };
  let hits = 0;
  let misses = 0;
  let evictions = 0;
  let checksum = 0;

  const request = (k: number, version: number): void => {
    const key = keyOf(k);
    const r = map.get(key);
    if (r !== undefined) {
      hits++;
      unlink(r);
      pushFront(r);
      checksum = (checksum * 31 + r.meta.id + r.meta.owner.age + r.meta.tags[1].length + r.value.length) >>> 0;
      return;
    }
    misses++;
    const rec: Rec = {
      key,
      value: valueOf(k, version),
      meta: { id: k, score: version * 0.5, tags: tagsOf(k, version), owner: { name: ownerNameOf(k), age: k % 90 } },
      prev: null,
      next: null,
    };
    map.set(key, rec);
    pushFront(rec);
    if (map.size > capacity) {
      const victim = tail!;
      unlink(victim);
      map.delete(victim.key);
      evictions++;
    }
  };

  meter.setup();
  for (let i = 0; i < capacity; i++) {
    request(i * 2, 0);
    meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  hits = misses = evictions = checksum = 0;
  meter.begin();
  const deadline = ctx.params.durationMs ? performance.now() + Number(ctx.params.durationMs) : Infinity;
  let done = 0;
  for (let i = 1; i <= requests; i++) {
    request(Math.floor(rnd() * keySpace), i);
    done = i;
    if ((i & 1023) === 0 && performance.now() > deadline) break;
    meter.tick();
    if (meter.yieldDue) await meter.yield();
  }
  meter.end();
  ctx.out(summary(hits, misses, evictions, checksum));
  return { verified: map.size === capacity, extra: { hitRatio: hits / done, requestsDone: done } };
}

// ---- forkgc -------------------------------------------------------------------

async function forkgc(ctx: RunContext<LruParams>): Promise<WorkloadResult> {
  const heap = needHeap(ctx);
  const { capacity, requests } = ctx.params;
  const meter = ctx.meter;
  const rnd = mulberry32(42);
  const keySpace = capacity * 2;
  const { arrays, strings } = heap;

  const Table = heap.defineStruct('LruTable', { buckets: 'ref', head: 'ref', tail: 'ref', size: 'u32', mask: 'u32' });
  const Entry = heap.defineStruct('LruEntry', {
    key: 'ref', value: 'ref', meta: 'ref', chain: 'ref', prev: 'ref', next: 'ref', hash: 'u32',
  });
  const Meta = heap.defineStruct('LruMeta', { id: 'u32', score: 'f64', tags: 'ref', owner: 'ref' });
  const Owner = heap.defineStruct('LruOwner', { name: 'ref', age: 'i32' });
  const { get: E, set: ES } = accessorsOf(Entry, ctx.system);
  const { get: T, set: TS } = accessorsOf(Table, ctx.system);
  const MetaA = accessorsOf(Meta, ctx.system);
  const OwnerA = accessorsOf(Owner, ctx.system);

  let nb = 1;
  while (nb < capacity * 2) nb *= 2;
  const tableRoot = heap.root(Table.alloc({ mask: nb - 1 }));
  TS.buckets(tableRoot.get(), arrays.alloc(nb));

  // All raw refs below live only within one request (no yield, no safepoint inside).
  const unlink = (t: Ref, e: Ref): void => {
    const p = E.prev(e);
    const n = E.next(e);
    if (p !== 0) ES.next(p, n);
    else TS.head(t, n);
    if (n !== 0) ES.prev(n, p);
    else TS.tail(t, p);
    ES.prev(e, 0);
    ES.next(e, 0);
  };
  const pushFront = (t: Ref, e: Ref): void => {
    const h = T.head(t);
    ES.next(e, h);
    ES.prev(e, 0);
    if (h !== 0) ES.prev(h, e);
    else TS.tail(t, e);
    TS.head(t, e);
  };
  const removeFromChain = (t: Ref, e: Ref): void => {
    const buckets = T.buckets(t);
    const b = E.hash(e) & T.mask(t);
    let cur = arrays.get(buckets, b);
    let prev = 0;
    while (cur !== 0 && cur !== e) {
      prev = cur;
      cur = E.chain(cur);
    }
    if (cur === 0) throw new Error('lru: entry missing from its chain');
    if (prev === 0) arrays.set(buckets, b, E.chain(e));
    else ES.chain(prev, E.chain(e));
    ES.chain(e, 0);
  };

  let hits = 0;
  let misses = 0;
  let evictions = 0;
  let checksum = 0;

  const request = (k: number, version: number): void => {
    const t = tableRoot.get();
    const key = keyOf(k);
    const h = fnv1a(key);
    const buckets = T.buckets(t);
    const b = h & T.mask(t);
    let e = arrays.get(buckets, b);
    while (e !== 0 && !(E.hash(e) === h && strings.equals(E.key(e), key))) e = E.chain(e);
    if (e !== 0) {
      hits++;
      unlink(t, e);
      pushFront(t, e);
      const meta = E.meta(e);
      const owner = MetaA.get.owner(meta);
      const tag1 = arrays.get(MetaA.get.tags(meta), 1);
      checksum =
        (checksum * 31 + MetaA.get.id(meta) + OwnerA.get.age(owner) + strings.length(tag1) +
          strings.length(E.value(e))) >>> 0;
      return;
    }
    misses++;
    const tagList = tagsOf(k, version);
    const tags = arrays.alloc(3);
    for (let i = 0; i < 3; i++) arrays.set(tags, i, strings.alloc(tagList[i]));
    // Fields in declaration order (make): Owner {name, age}, Meta {id, score,
    // tags, owner}, Entry {key, value, meta, chain, prev, next, hash}.
    const owner = Owner.make(strings.alloc(ownerNameOf(k)), k % 90);
    const meta = Meta.make(k, version * 0.5, tags, owner);
    e = Entry.make(strings.alloc(key), strings.alloc(valueOf(k, version)), meta, arrays.get(buckets, b), 0, 0, h);
    arrays.set(buckets, b, e);
    pushFront(t, e);
    const size = T.size(t) + 1;
    if (size > capacity) {
      const victim = T.tail(t);
      unlink(t, victim);
      removeFromChain(t, victim);
      evictions++;
      TS.size(t, size - 1);
    } else {
      TS.size(t, size);
    }
  };
  const safepoint = () => {
    if (meter.safepointDue) {
      meter.safepointDue = false;
      heap.safepoint();
    }
  };

  meter.setup();
  for (let i = 0; i < capacity; i++) {
    request(i * 2, 0);
    meter.tick();
    safepoint();
    if (meter.yieldDue) await meter.yield();
  }
  hits = misses = evictions = checksum = 0;
  meter.begin();
  const deadline = ctx.params.durationMs ? performance.now() + Number(ctx.params.durationMs) : Infinity;
  let done = 0;
  for (let i = 1; i <= requests; i++) {
    request(Math.floor(rnd() * keySpace), i);
    done = i;
    if ((i & 1023) === 0 && performance.now() > deadline) break;
    meter.tick();
    safepoint();
    if (meter.yieldDue) await meter.yield();
  }
  meter.end();
  ctx.out(summary(hits, misses, evictions, checksum));
  const ok = T.size(tableRoot.get()) === capacity;
  tableRoot.release();
  return { verified: ok, extra: { hitRatio: hits / done, requestsDone: done } };
}

export const lruCache: Workload<LruParams> = {
  name: 'lru-cache',
  unit: 'request',
  cases: (full) => [full ? { capacity: 1_000_000, requests: 4_000_000 } : { capacity: 100_000, requests: 400_000 }],
  label: (p) => `${p.capacity} records, ${p.requests} requests`,
  systems: () => ['forkgc-fork', 'forkgc-fork-always', 'forkgc-fork-unchecked', 'forkgc-stw', 'v8'],
  heapOptions: (p) => ({ maxHeap: p.capacity >= 500_000 ? '3GiB' : '1GiB' }),
  nodeFlags: (p, sys) => (sys.kind === 'v8' && p.capacity >= 500_000 ? ['--max-old-space-size=4096'] : []),
  timeoutMs: (_p, full) => (full ? 900_000 : 120_000),
  plain,
  forkgc,
};
