/**
 * http-cache: an HTTP server holding N records in an LRU cache, under load
 * from a separate process over real HTTP on 127.0.0.1 (issue 14).
 *
 * This process (child.ts, one per system x case) is the SERVER: it fills the
 * cache, listens, spawns the load client (http/load-client.ts) and waits for
 * its figures; the harness records the server's GC pauses (V8's 'gc'
 * PerformanceObserver entries, forkgc's CycleStats) and peak RSS, and the
 * client reports latency from its side of the socket.
 *
 * Requests: GET /item/<k>, k uniform in [0, 2N): about half hit (the record
 * is moved to the front of the LRU list and serialised), half miss (a new
 * record is built as if fetched from a backend, inserted, served, and the LRU
 * record evicted). Same logic, same responses in both variants:
 *
 *   plain  : a V8 Map<string, Rec> of plain JS objects, LRU links in the objects.
 *   forkgc : everything in the heap under ONE root: an Lru struct holding a heap
 *            map (heap.maps) from key to record, and head/tail of the LRU list
 *            threaded through the records. V8 keeps no object per record.
 *
 * Record: key, name, email (strings), tags (array of 3 strings), address
 * (struct: street, city, zip), score, visits, version, prev/next.
 * forkgc: 11 heap objects per record, plus the map's own key String.
 *
 * Cases: a closed loop (capacity), then an open loop at rateFraction x the
 * closed-loop throughput of the plain server measured just before in the same
 * run (passed through bench/results/tmp/; `rate` if absent).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot, type Heap, type Ref } from '../lib/forkgc.js';
import { currentRssBytes } from '../lib/proc.js';
import type { LoadResult, LoadSpec } from '../http/load-client.js';
import { needHeap, type RunContext, type Workload, type WorkloadResult } from './types.js';

export interface HttpCacheParams extends Record<string, number | string> {
  capacity: number;
  loop: 'closed' | 'open';
  warmupMs: number;
  durationMs: number;
  connections: number;
  /** Open loop: the fraction of the plain server's closed-loop throughput to offer. */
  rateFraction: number;
  /** Open loop: the rate when no closed-loop figure of the plain server exists. */
  rate: number;
}

// ---- the records' content (deterministic from k and version) -------------------

const nameOf = (k: number) => `name-${k}-`.padEnd(24, 'abcdefghijklmnopqrstuvwxyz');
const emailOf = (k: number) => `user${k}@example.com`;
const tagsOf = (k: number, v: number) => [`tag${k % 7}`, `tag-${k % 13}`, `t-${v}`];
const streetOf = (k: number) => `${k % 1000} Main Street`;
const cityOf = (k: number) => `city-${k % 500}`;

function body(key: string, name: string, email: string, t0: string, t1: string, t2: string,
  street: string, city: string, zip: number, score: number, visits: number, version: number): string {
  return `{"key":"${key}","name":"${name}","email":"${email}","tags":["${t0}","${t1}","${t2}"],` +
    `"address":{"street":"${street}","city":"${city}","zip":${zip}},"score":${score},"visits":${visits},"version":${version}}`;
}

/** What the HTTP layer needs from a cache. */
interface Cache {
  /** The response body for key `item:<k>`: served from the cache, or built, cached and served. */
  request(key: string, k: number): string;
  size(): number;
  counts(): { hits: number; misses: number; evictions: number };
}

// ---- plain JavaScript objects ----------------------------------------------------

interface Rec {
  key: string;
  name: string;
  email: string;
  tags: string[];
  address: { street: string; city: string; zip: number };
  score: number;
  visits: number;
  version: number;
  prev: Rec | null;
  next: Rec | null;
}

function plainCache(capacity: number): Cache {
  const map = new Map<string, Rec>();
  let head: Rec | null = null;
  let tail: Rec | null = null;
  let hits = 0;
  let misses = 0;
  let evictions = 0;
  const unlink = (r: Rec) => {
    if (r.prev !== null) r.prev.next = r.next;
    else head = r.next;
    if (r.next !== null) r.next.prev = r.prev;
    else tail = r.prev;
    r.prev = r.next = null;
  };
  const pushFront = (r: Rec) => {
    r.next = head;
    r.prev = null;
    if (head !== null) head.prev = r;
    else tail = r;
    head = r;
  };
  const serve = (r: Rec) => body(r.key, r.name, r.email, r.tags[0], r.tags[1], r.tags[2], r.address.street,
    r.address.city, r.address.zip, r.score, r.visits, r.version);
  return {
    request(key, k) {
      let r = map.get(key);
      if (r !== undefined) {
        hits++;
        r.visits++;
        unlink(r);
        pushFront(r);
        return serve(r);
      }
      misses++;
      r = {
        key, name: nameOf(k), email: emailOf(k), tags: tagsOf(k, misses),
        address: { street: streetOf(k), city: cityOf(k), zip: k % 100000 },
        score: k * 0.25, visits: 1, version: misses, prev: null, next: null,
      };
      map.set(key, r);
      pushFront(r);
      if (map.size > capacity) {
        const victim = tail!;
        unlink(victim);
        map.delete(victim.key);
        evictions++;
      }
      return serve(r);
    },
    size: () => map.size,
    counts: () => ({ hits, misses, evictions }),
  };
}

// ---- forkgc: the whole cache in the heap under one root --------------------------

function heapCache(heap: Heap, capacity: number): Cache & { release(): void } {
  const { maps, strings, arrays } = heap;
  const Lru = heap.defineStruct('HttpLru', { map: 'ref', head: 'ref', tail: 'ref', size: 'u32' });
  const Record = heap.defineStruct('HttpRecord', {
    key: 'ref', name: 'ref', email: 'ref', tags: 'ref', address: 'ref', prev: 'ref', next: 'ref',
    score: 'f64', visits: 'u32', version: 'u32',
  });
  const Address = heap.defineStruct('HttpAddress', { street: 'ref', city: 'ref', zip: 'u32' });
  const R = Record.get;
  const RS = Record.set;
  const L = Lru.get;
  const LS = Lru.set;
  // The one root. Everything else is reached from it, so nothing but this
  // handle (and the struct types) stays in V8.
  const root = heap.root(Lru.alloc({ map: maps.alloc(capacity + 1) }));
  let hits = 0;
  let misses = 0;
  let evictions = 0;

  // Raw Refs below live within one request: no await, no safepoint inside.
  const unlink = (lru: Ref, r: Ref) => {
    const p = R.prev(r);
    const n = R.next(r);
    if (p !== 0) RS.next(p, n);
    else LS.head(lru, n);
    if (n !== 0) RS.prev(n, p);
    else LS.tail(lru, p);
    RS.prev(r, 0);
    RS.next(r, 0);
  };
  const pushFront = (lru: Ref, r: Ref) => {
    const h = L.head(lru);
    RS.next(r, h);
    RS.prev(r, 0);
    if (h !== 0) RS.prev(h, r);
    else LS.tail(lru, r);
    LS.head(lru, r);
  };
  const serve = (r: Ref) => {
    const tags = R.tags(r);
    const a = R.address(r);
    return body(strings.read(R.key(r)), strings.read(R.name(r)), strings.read(R.email(r)),
      strings.read(arrays.get(tags, 0)), strings.read(arrays.get(tags, 1)), strings.read(arrays.get(tags, 2)),
      strings.read(Address.get.street(a)), strings.read(Address.get.city(a)), Address.get.zip(a),
      R.score(r), R.visits(r), R.version(r));
  };
  return {
    request(key, k) {
      const lru = root.get();
      const m = L.map(lru);
      let r = maps.get(m, key);
      if (r !== 0) {
        hits++;
        RS.visits(r, R.visits(r) + 1);
        unlink(lru, r);
        pushFront(lru, r);
        return serve(r);
      }
      misses++;
      const tagList = tagsOf(k, misses);
      const tags = arrays.alloc(3);
      for (let i = 0; i < 3; i++) arrays.set(tags, i, strings.alloc(tagList[i]));
      // alloc() then setters, not alloc({ ... }): the init-object form
      // validates through Object.keys/Object.entries on every call, which a
      // profile of this server showed at ~5 µs per record.
      const address = Address.alloc();
      Address.set.zip(address, k % 100000);
      Address.set.street(address, strings.alloc(streetOf(k)));
      Address.set.city(address, strings.alloc(cityOf(k)));
      r = Record.alloc();
      RS.score(r, k * 0.25);
      RS.visits(r, 1);
      RS.version(r, misses);
      RS.key(r, strings.alloc(key));
      RS.name(r, strings.alloc(nameOf(k)));
      RS.email(r, strings.alloc(emailOf(k)));
      RS.tags(r, tags);
      RS.address(r, address);
      maps.set(m, key, r);
      pushFront(lru, r);
      const size = L.size(lru) + 1;
      if (size > capacity) {
        const victim = L.tail(lru);
        unlink(lru, victim);
        maps.delete(m, strings.read(R.key(victim)));
        evictions++;
        LS.size(lru, size - 1);
      } else {
        LS.size(lru, size);
      }
      return serve(r);
    },
    size: () => maps.size(L.map(root.get())),
    counts: () => ({ hits, misses, evictions }),
    release: () => root.release(),
  };
}

// ---- the server and the load --------------------------------------------------------

function capacityFile(capacity: number): string {
  return resolve(packageRoot(), 'bench/results/tmp', `http-cache-capacity-${capacity}.json`);
}

function runClient(spec: LoadSpec, timeoutMs: number): Promise<LoadResult> {
  const clientJs = resolve(dirname(fileURLToPath(import.meta.url)), '../http/load-client.js');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [clientJs, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('@@LOAD '));
      if (!line) return reject(new Error(`load client: no result (exit ${code ?? signal}) ${err.trim().split('\n').pop() ?? ''}`));
      const r = JSON.parse(line.slice(7)) as LoadResult & { error?: string };
      if (r.error) reject(new Error(`load client: ${r.error}`));
      else resolvePromise(r);
    });
  });
}

async function serve(ctx: RunContext<HttpCacheParams>, cache: Cache, heap: Heap | null): Promise<WorkloadResult> {
  const p = ctx.params;
  const meter = ctx.meter;
  const keySpace = p.capacity * 2;

  // Fill with the even keys (unmeasured); a forkgc heap gets safepoints and
  // event-loop turns at the same points as the plain one gets turns.
  meter.setup();
  for (let i = 0; i < p.capacity; i++) {
    cache.request(`item:${2 * i}`, 2 * i);
    meter.tick();
    if (heap && meter.safepointDue) {
      meter.safepointDue = false;
      heap.safepoint();
    }
    if (meter.yieldDue) await meter.yield();
  }

  const server: Server = createServer((req, res) => {
    const url = req.url ?? '';
    const k = url.startsWith('/item/') ? Number(url.slice(6)) : NaN;
    if (!Number.isInteger(k) || k < 0) {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
      return;
    }
    // Each request is its own event-loop callback: a safepoint boundary. The
    // handler looks everything up again from the root; it holds no Ref after it returns.
    const text = cache.request(`item:${k}`, k);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;

  let rate = 0;
  let rateSource = '';
  if (p.loop === 'open') {
    const f = capacityFile(p.capacity);
    if (existsSync(f)) {
      const plainThroughput = (JSON.parse(readFileSync(f, 'utf8')) as { throughput: number }).throughput;
      rate = Math.max(1, Math.round(plainThroughput * p.rateFraction));
      rateSource = `${p.rateFraction} x plain closed-loop ${plainThroughput} req/s`;
    } else {
      rate = p.rate;
      rateSource = 'default (no plain closed-loop figure in this run)';
    }
  }
  const before = cache.counts();
  const rssBefore = currentRssBytes();
  meter.begin();
  let load: LoadResult;
  try {
    load = await runClient({
      port,
      loop: p.loop,
      connections: p.connections,
      rate,
      warmupMs: p.warmupMs,
      durationMs: p.durationMs,
      keySpace,
      seed: 42,
    }, p.warmupMs + p.durationMs + 60_000);
  } finally {
    meter.end();
    await new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); });
  }
  const after = cache.counts();
  if (p.loop === 'closed' && ctx.system.kind === 'v8') {
    mkdirSync(dirname(capacityFile(p.capacity)), { recursive: true });
    writeFileSync(capacityFile(p.capacity), JSON.stringify({ throughput: load.throughput }));
  }
  const served = after.hits + after.misses - before.hits - before.misses;
  return {
    verified: cache.size() === p.capacity && load.errors === 0 && load.completed > 0,
    extra: {
      records: cache.size(),
      requestsServed: served,
      hitRatio: Math.round(((after.hits - before.hits) / Math.max(1, served)) * 1000) / 1000,
      offeredRate: p.loop === 'open' ? rate : null,
      rateSource: rateSource || null,
      clientThroughput: load.throughput,
      clientP50Ms: load.p50Ms,
      clientP99Ms: load.p99Ms,
      clientP999Ms: load.p999Ms,
      clientMaxMs: load.maxMs,
      clientErrors: load.errors,
      clientCompleted: load.completed,
      clientMaxQueued: load.maxQueued,
      clientUnsent: load.unsent,
      clientLatencyUs: load.latencyUs,
      rssBeforeLoadBytes: rssBefore,
      rssAfterLoadBytes: currentRssBytes(),
      v8HeapUsedBytes: process.memoryUsage().heapUsed,
    },
  };
}

export const httpCache: Workload<HttpCacheParams> = {
  name: 'http-cache',
  unit: 'request',
  cases: (full) => {
    const base = full
      ? { capacity: 1_000_000, warmupMs: 5_000, durationMs: 200_000, connections: 32, rateFraction: 0.6, rate: 3000 }
      : { capacity: 50_000, warmupMs: 2_000, durationMs: 4_000, connections: 32, rateFraction: 0.6, rate: 3000 };
    return [{ ...base, loop: 'closed' }, { ...base, loop: 'open', connections: 64 }];
  },
  label: (p) => `${p.capacity} records, ${p.loop} loop${p.loop === 'open' ? ` at ${p.rateFraction} x plain` : ''}, ${p.durationMs / 1000} s`,
  // v8 first: the open-loop case takes its rate from v8's closed-loop throughput.
  systems: (full) => (full ? ['v8', 'forkgc-fork'] : ['v8', 'forkgc-fork', 'forkgc-stw']),
  heapOptions: (p) => ({ maxHeap: p.capacity >= 500_000 ? '3GiB' : '1GiB' }),
  nodeFlags: (p, sys) => (sys.kind === 'v8' && p.capacity >= 500_000 ? ['--max-old-space-size=4096'] : []),
  timeoutMs: (p) => p.capacity * 0.2 + p.warmupMs + p.durationMs + 180_000,
  plain: (ctx) => serve(ctx, plainCache(ctx.params.capacity), null),
  forkgc: async (ctx) => {
    const cache = heapCache(needHeap(ctx), ctx.params.capacity);
    try {
      return await serve(ctx, cache, needHeap(ctx));
    } finally {
      cache.release();
    }
  },
};
