// An HTTP cache whose records AND index live in a forkgc heap: the LRU cache
// recipe of the README, runnable.
//
//   npm run build && node examples/http-cache.mjs [--records 100000] [--capacity 200000] [--port 8080]
//   curl localhost:8080/item/42            # a record (built on a miss, as if fetched from a backend)
//   curl -X PUT -d '{"name":"Ada"}' localhost:8080/item/42
//   curl localhost:8080/stats
//   node examples/http-cache.mjs --self-test   # starts on a free port, checks a few requests, exits
//
// What lives where:
//
//   forkgc heap (one root)                          V8 heap
//   ─────────────────────────────────────────      ──────────────────────────────────────
//   Cache  | map | head | tail | size |              the Heap, the struct types (accessors),
//     map: heap map 'item:<id>' -> Record            ONE RootHandle (`cacheRoot`),
//   Record | key | name | email | tags | address |   the http server and its sockets,
//          | prev | next | score | visits |          per-request strings (URL, body, JSON),
//     tags: RefArray of String                       what a request holds across an await
//     address: Address | street | city | zip |       (keys and plain values, never a Ref)
//
// Rooting contract, as it applies to a server:
//   - A Ref (a plain number) is valid until the code yields: an `await`, a
//     callback, the return to the event loop, or heap.safepoint(). A cycle can
//     start at any of those and free what no root reaches.
//   - So a request handler gets everything afresh from the root
//     (`cacheRoot.get()` -> map -> record) in each synchronous stretch, and
//     holds across an await only JS values: the key string, parsed input,
//     copies of fields it read. After the await it looks the record up AGAIN:
//     the record may have been evicted, replaced or updated meanwhile.
//   - Nothing else needs rooting: the records are reachable from the map, the
//     map from the Cache struct, the Cache from the one handle.
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Heap } from '../dist/index.js';

const args = parseArgs(process.argv.slice(2));
const heap = new Heap({ maxHeap: args.maxHeap });
const { maps, strings, arrays } = heap;

// ---- the heap's types -------------------------------------------------------------
const Cache = heap.defineStruct('Cache', { map: 'ref', head: 'ref', tail: 'ref', size: 'u32' });
const Record = heap.defineStruct('Record', {
  key: 'ref', name: 'ref', email: 'ref', tags: 'ref', address: 'ref', prev: 'ref', next: 'ref',
  score: 'f64', visits: 'u32',
});
const Address = heap.defineStruct('Address', { street: 'ref', city: 'ref', zip: 'u32' });
const C = Cache.get, CS = Cache.set, R = Record.get, RS = Record.set;

// The only root. (A capacity hint sizes the map's table once.)
const cacheRoot = heap.root(Cache.alloc({ map: maps.alloc(args.capacity + 1) }));

// ---- the LRU list, threaded through the records (intrusive links) ---------------
// Every function below takes Refs and runs synchronously: no yield inside.
function unlink(cache, r) {
  const p = R.prev(r), n = R.next(r);
  if (p !== 0) RS.next(p, n); else CS.head(cache, n);
  if (n !== 0) RS.prev(n, p); else CS.tail(cache, p);
  RS.prev(r, 0);
  RS.next(r, 0);
}
function pushFront(cache, r) {
  const h = C.head(cache);
  RS.next(r, h);
  RS.prev(r, 0);
  if (h !== 0) RS.prev(h, r); else CS.tail(cache, r);
  CS.head(cache, r);
}

/** A plain JS copy of a record: what may travel across an await or into JSON. */
function toJson(r) {
  const tags = R.tags(r), a = R.address(r);
  return {
    key: strings.read(R.key(r)),
    name: strings.read(R.name(r)),
    email: strings.read(R.email(r)),
    tags: [0, 1, 2].map((i) => strings.read(arrays.get(tags, i))),
    address: { street: strings.read(Address.get.street(a)), city: strings.read(Address.get.city(a)), zip: Address.get.zip(a) },
    score: R.score(r),
    visits: R.visits(r),
  };
}

/** Builds a record from plain data and caches it under `key`, evicting the LRU record if full. */
function insert(key, data) {
  const cache = cacheRoot.get();
  const m = C.map(cache);
  const old = maps.get(m, key);
  if (old !== 0) {            // another request inserted it meanwhile: replace it
    unlink(cache, old);
    CS.size(cache, C.size(cache) - 1);
  }
  const tags = arrays.alloc(3);
  data.tags.forEach((t, i) => arrays.set(tags, i, strings.alloc(t)));
  const address = Address.alloc({ zip: data.address.zip });
  Address.set.street(address, strings.alloc(data.address.street));
  Address.set.city(address, strings.alloc(data.address.city));
  const r = Record.alloc({ score: data.score, visits: data.visits ?? 0 });
  RS.key(r, strings.alloc(key));
  RS.name(r, strings.alloc(data.name));
  RS.email(r, strings.alloc(data.email));
  RS.tags(r, tags);
  RS.address(r, address);
  maps.set(m, key, r);       // replaces `old` in the map: nothing reaches it any more
  pushFront(cache, r);
  CS.size(cache, C.size(cache) + 1);
  if (C.size(cache) > args.capacity) {
    const victim = C.tail(cache);
    unlink(cache, victim);
    maps.delete(m, strings.read(R.key(victim)));   // the victim is garbage from here on
    CS.size(cache, C.size(cache) - 1);
  }
  return r;
}

/** The cached record for key, moved to the front; 0 on a miss. Synchronous. */
function lookup(key) {
  const cache = cacheRoot.get();
  const r = maps.get(C.map(cache), key);
  if (r !== 0) {
    RS.visits(r, R.visits(r) + 1);
    unlink(cache, r);
    pushFront(cache, r);
  }
  return r;
}

// A stand-in for a database: asynchronous, so the handler really awaits.
async function fetchFromBackend(id) {
  await sleep(args.backendMs);
  return {
    name: `name-${id}`, email: `user${id}@example.com`, tags: [`tag${id % 7}`, `tag-${id % 13}`, 'fresh'],
    address: { street: `${id % 1000} Main Street`, city: `city-${id % 500}`, zip: id % 100000 }, score: id * 0.25,
  };
}

async function handle(req, res) {
  const m = /^\/item\/(\d+)$/.exec(req.url ?? '');
  if (req.url === '/stats' && req.method === 'GET') {
    const s = heap.stats();
    return send(res, 200, { records: C.size(cacheRoot.get()), heapBytes: s.heapBytes, liveBytes: s.liveBytes, objects: s.objects,
      cycles: s.cycles, maxPauseUs: s.maxPauseUs, v8HeapUsed: process.memoryUsage().heapUsed });
  }
  if (!m) return send(res, 404, { error: 'not found' });
  const id = Number(m[1]);
  const key = `item:${id}`;   // a JS string: safe to hold across awaits

  if (req.method === 'GET') {
    const hit = lookup(key);
    if (hit !== 0) return send(res, 200, toJson(hit));      // no await between lookup and use
    const data = await fetchFromBackend(id);                 // a yield: hold no Ref across it
    const r = insert(key, data);                             // so insert() starts again from the root
    return send(res, 200, toJson(r));
  }
  if (req.method === 'PUT') {
    const patch = JSON.parse(await readBody(req));           // a yield
    // Look up AGAIN after the await: the record may have been evicted meanwhile.
    let r = lookup(key);
    if (r === 0) r = insert(key, await fetchFromBackend(id));   // data crosses the await; the Ref comes after it
    if (typeof patch.name === 'string') RS.name(r, strings.alloc(patch.name));  // the old String becomes garbage
    if (typeof patch.score === 'number') RS.score(r, patch.score);
    return send(res, 200, toJson(r));
  }
  return send(res, 405, { error: 'method not allowed' });
}

function send(res, status, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let s = '';
    req.setEncoding('utf8').on('data', (d) => { s += d; }).on('end', () => resolve(s)).on('error', reject);
  });
}

function parseArgs(argv) {
  const o = { records: 100_000, capacity: 200_000, port: 8080, backendMs: 1, maxHeap: '2GiB', selfTest: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--self-test') { o.selfTest = true; o.port = 0; o.records = Math.min(o.records, 20_000); }
    else if (a === '--records') o.records = Number(argv[++i]);
    else if (a === '--capacity') o.capacity = Number(argv[++i]);
    else if (a === '--port') o.port = Number(argv[++i]);
    else if (a === '--backend-ms') o.backendMs = Number(argv[++i]);
    else if (a === '--max-heap') o.maxHeap = argv[++i];
    else throw new Error(`unknown argument ${a}`);
  }
  if (o.records > o.capacity) o.capacity = o.records;
  return o;
}

// ---- start ------------------------------------------------------------------------
for (let i = 0; i < args.records; i++) {
  insert(`item:${i}`, {
    name: `name-${i}`, email: `user${i}@example.com`, tags: [`tag${i % 7}`, `tag-${i % 13}`, 'prefilled'],
    address: { street: `${i % 1000} Main Street`, city: `city-${i % 500}`, zip: i % 100000 }, score: i * 0.25,
  });
  // A long synchronous loop: give the collector its safepoints.
  if ((i & 4095) === 0) heap.safepoint();
}

const server = createServer((req, res) => {
  handle(req, res).catch((e) => send(res, 500, { error: String(e?.message ?? e), code: e?.code }));
});
server.listen(args.port, '127.0.0.1', async () => {
  const { port } = server.address();
  console.log(`http-cache: ${args.records} records (capacity ${args.capacity}) on http://127.0.0.1:${port}`);
  if (!args.selfTest) return;
  const base = `http://127.0.0.1:${port}`;
  const get = async (p, init) => (await fetch(base + p, init)).json();
  const check = (ok, what) => { if (!ok) { console.error(`self-test FAILED: ${what}`); process.exit(1); } };
  check((await get('/item/7')).name === 'name-7', 'a prefilled record');
  check((await get(`/item/${args.records + 5}`)).tags[2] === 'fresh', 'a miss fetched and cached');
  check((await get('/item/7', { method: 'PUT', body: '{"name":"Ada","score":1.5}' })).name === 'Ada', 'PUT');
  await heap.collect();                   // a whole cycle: everything reachable from the root survives
  check((await get('/item/7')).name === 'Ada', 'the update survives a cycle');
  check((await get('/item/7')).visits >= 3, 'visits counted');
  const stats = await get('/stats');
  check(stats.records === args.records + 1 && stats.cycles >= 1, 'stats');
  console.log('self-test ok:', JSON.stringify(stats));
  server.close();
  cacheRoot.release();
  await heap.close();
});
