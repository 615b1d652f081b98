// Bad input at the API's edges (issue 13, "API lapses"): each is a
// ForkGcError with a code, thrown before anything is written or allocated.
import { describe, expect, it } from 'vitest';
import { closeHeapsAfterEach, expectError, makeHeap, withTimeout } from './helpers/common.js';
import { startTrace } from '../src/tools/trace.js';
import { parsePressure, readPressure, watchMemoryPressure } from '../src/tools/pressure.js';
import { CowMapper, watchCowBudget } from '../src/tools/cow-budget.js';
import {
  ByteArrays, FieldValueError, Heap, HeapClosedError, HeapFinalizationRegistry, HeapMaps, InvalidArgumentError, InvalidOptionError, RefArrays,
  RootHandle, Strings, TypeDefinitionError, parseBytes,
} from '../src/index.js';
import { heapInternals } from '../src/internal.js';

closeHeapsAfterEach();

/** An object whose every conversion to a primitive throws (and says so). */
function hostile(): { calls: number } {
  const o = { calls: 0 };
  const no = () => { o.calls++; throw new Error('converted'); };
  Object.assign(o, { valueOf: no, toString: no, [Symbol.toPrimitive]: no });
  return o;
}

describe('finalization registry arguments', () => {
  it('createFinalizationRegistry(non-function) is ERR_INVALID_ARGUMENT', () => {
    const h = makeHeap();
    for (const bad of [undefined, null, 42, 'f', {}, 1n, Symbol('s')]) {
      expectError(() => h.createFinalizationRegistry(bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', String(typeof bad));
    }
  });

  it('register with a non-object token, unregister with a non-object: ERR_INVALID_ARGUMENT, nothing registered', () => {
    const h = makeHeap();
    const T = h.defineStruct('T', { x: 'i32' });
    const r = h.createFinalizationRegistry<number>(() => {});
    const t = T.alloc();
    for (const bad of ['token', 42, true, 1n, Symbol('s'), null]) {
      expectError(() => r.register(t, 1, bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', String(bad?.toString()));
      expectError(() => r.unregister(bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', String(bad?.toString()));
    }
    expect(r.size).toBe(0);
    const token = () => {};  // a function is an object: a valid token, as for FinalizationRegistry
    r.register(t, 1, token);
    expect(r.size).toBe(1);
    expect(r.unregister(token)).toBe(true);
  });
});

describe('indices that are not numbers', () => {
  it('arrays.get/set and bytes.get/set with a BigInt, a Symbol or a hostile object: ERR_INVALID_ARGUMENT, nothing written, no conversion', () => {
    const h = makeHeap();
    const T = h.defineStruct('T', { x: 'i32' });
    const a = h.arrays.alloc(4);
    const b = h.bytes.alloc(4);
    const t = T.alloc();
    const o = hostile();
    for (const bad of [1n, Symbol('i'), o, '1', null, undefined]) {
      const what = typeof bad;
      expectError(() => h.arrays.get(a, bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', `arrays.get ${what}`);
      expectError(() => h.arrays.set(a, bad as never, t), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', `arrays.set ${what}`);
      expectError(() => h.bytes.get(b, bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', `bytes.get ${what}`);
      expectError(() => h.bytes.set(b, bad as never, 7), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', `bytes.set ${what}`);
    }
    expect(o.calls).toBe(0);
    for (let i = 0; i < 4; i++) {
      expect(h.arrays.get(a, i)).toBe(0);
      expect(h.bytes.get(b, i)).toBe(0);
    }
    // A byte value that is a BigInt or hostile: a field value error, no conversion.
    expectError(() => h.bytes.set(b, 0, 1n as never), FieldValueError, 'ERR_FIELD_VALUE', 'BigInt byte');
    expectError(() => h.bytes.set(b, 0, o as never), FieldValueError, 'ERR_FIELD_VALUE', 'hostile byte');
    expect(o.calls).toBe(0);
  });
});

describe('struct definitions', () => {
  it('a BigInt, Symbol or hostile name or kind is ERR_TYPE_DEFINITION (the message never converts it)', () => {
    const h = makeHeap();
    const o = hostile();
    for (const bad of [10n, Symbol('n'), o]) {
      expectError(() => h.defineStruct(bad as never, { x: 'i32' }), TypeDefinitionError, 'ERR_TYPE_DEFINITION', `name ${typeof bad}`);
      expectError(() => h.defineStruct('S', { x: bad as never }), TypeDefinitionError, 'ERR_TYPE_DEFINITION', `kind ${typeof bad}`);
    }
    expect(o.calls).toBe(0);
    // Nothing was defined: the name is still free.
    expect(h.defineStruct('S', { x: 'i32' }).name).toBe('S');
  });
});

describe('alloc(init)', () => {
  it('reads each init value exactly once: a getter valid on the first read and invalid on the second cannot half-write', () => {
    const h = makeHeap();
    const P = h.defineStruct('P', { a: 'i32', b: 'i32' });
    let reads = 0;
    const init = {
      a: 1,
      get b() { return reads++ === 0 ? 2 : 'not a number'; },
    };
    const p = P.alloc(init as never);
    expect(reads).toBe(1);
    expect(P.get.a(p)).toBe(1);
    expect(P.get.b(p)).toBe(2);
  });

  it('an invalid value allocates nothing and writes nothing', () => {
    const h = makeHeap();
    const P = h.defineStruct('P', { a: 'i32', b: 'i32' });
    const before = h.stats().objects;
    expectError(() => P.alloc({ a: 1, b: 1n as never }), FieldValueError, 'ERR_FIELD_VALUE', 'BigInt value');
    expectError(() => P.alloc({ a: 1, b: Symbol('v') as never }), FieldValueError, 'ERR_FIELD_VALUE', 'Symbol value');
    expect(h.stats().objects).toBe(before);
  });
});

describe('faultInjectionForTesting is checked whole at new Heap()', () => {
  it('a bad kind, a non-function cycles, a non-numeric or negative arg: ERR_INVALID_OPTION', () => {
    const bad: unknown[] = [
      { kind: 'toString' }, { kind: 'nope' }, { kind: 1n }, { kind: Symbol('k') },
      { kind: 'hang', cycles: 5 }, { kind: 'hang', cycles: 'all' },
      { kind: 'delay-before-mark', arg: 'x' }, { kind: 'delay-before-mark', arg: -1 },
      { kind: 'delay-before-mark', arg: 1.5 }, { kind: 'delay-before-mark', arg: 1n },
    ];
    for (const f of bad) {
      expectError(() => new Heap({ maxHeap: '64MiB', faultInjectionForTesting: f as never }), InvalidOptionError,
        'ERR_INVALID_OPTION', JSON.stringify(f, (_k, v) => (typeof v === 'bigint' || typeof v === 'symbol' ? String(v) : v)));
    }
  });
});

describe('strings with lone surrogates', () => {
  it('are rejected (ERR_FIELD_VALUE), not stored with U+FFFD in their place; well-formed pairs are kept', () => {
    const h = makeHeap();
    const before = h.stats().objects;
    for (const bad of ['a\uD800b', '\uDC00', 'x\uD83D']) {
      expectError(() => h.strings.alloc(bad), FieldValueError, 'ERR_FIELD_VALUE', JSON.stringify(bad));
    }
    expect(h.stats().objects).toBe(before);
    const s = h.strings.alloc('a😀b');
    expect(h.strings.read(s)).toBe('a😀b');
  });
});

// Regression (found in review): the object was sized by `data.length`, a
// property a subclass or defineProperty can shadow, while TypedArray's set()
// copied the array's real length, past the object into its neighbours.
describe('bytes.alloc(data) copies a Uint8Array by its own length', () => {
  it('a shadowed length changes nothing: the copy is the whole array and the neighbours are intact; a look-alike is refused', async () => {
    const h = makeHeap({ mode: 'stw', sweepThreads: 0 });
    const P = h.defineStruct('P', { next: 'ref', x: 'i32' });
    h.bytes.alloc(1);                        // garbage: a 16-byte hole in front of the victim after the cycle
    const victim = h.root(P.alloc({ x: 7 }));
    const after = h.root(P.alloc({ x: 8 }));
    await h.collect();
    class Liar extends Uint8Array { override get length(): number { return 1; } }
    const b = h.bytes.alloc(new Liar(48).fill(0x41));
    expect(h.bytes.length(b)).toBe(48);
    expect(Array.from(h.bytes.copy(b))).toEqual(new Array(48).fill(0x41));
    const shadowed = new Uint8Array(40).fill(3);
    Object.defineProperty(shadowed, 'length', { value: 2 });
    expect(h.bytes.length(h.bytes.alloc(shadowed))).toBe(40);
    expect(h.bytes.length(h.bytes.alloc(Buffer.from('abc')))).toBe(3);
    const before = h.stats().objects;
    const lookAlike = Object.create(Uint8Array.prototype) as Uint8Array;
    expectError(() => h.bytes.alloc(lookAlike), FieldValueError, 'ERR_FIELD_VALUE', 'an object that is no typed array');
    expect(h.stats().objects).toBe(before);
    expect([P.get.x(victim.get()), P.get.x(after.get())]).toEqual([7, 8]);
    const c = await h.collect();
    expect(c.objectsMarked).toBe(2);
  });
});

describe('options whose conversion to a string throws', () => {
  it('are refused with ERR_INVALID_OPTION, never with the object\'s own error', () => {
    const evil = { toString(): string { throw new Error('converted'); }, valueOf(): number { throw new Error('converted'); } };
    for (const o of [{ auto: evil }, { mode: evil }, { gcPercent: evil }, { sweepThreads: evil }, { markStackEntries: evil }]) {
      expectError(() => new Heap({ maxHeap: '64MiB', ...(o as object) }), InvalidOptionError, 'ERR_INVALID_OPTION', Object.keys(o)[0]);
    }
  });
});

describe('a struct spec read once (found in review)', () => {
  it('a field whose getter answers differently on a later read gets the layout and the accessors of its first answer', async () => {
    // Read again for the accessors, the kind could go from 'i32' (the
    // layout: no reference for the marker) to 'ref' (reference accessors):
    // an object stored through the field was freed while its holder was rooted.
    const h = makeHeap({ mode: 'stw', auto: false, sweepThreads: 0 });
    let reads = 0;
    const Node = h.defineStruct('Node', { get next() { return reads++ === 0 ? 'i32' : 'ref'; } } as unknown as { next: 'i32' });
    expect(Node.fields).toEqual({ next: 'i32' });
    const holder = h.root(Node.alloc());
    Node.set.next(holder.get(), 1234);
    expect(Node.get.next(holder.get())).toBe(1234);
    expect(reads).toBe(1);
    const c = await h.collect();
    expect(c.objectsMarked).toBe(1);
  });
});

describe('alloc(init) reads only own properties for fields named like Object.prototype members (found in review)', () => {
  it('constructor, toString and valueOf fields are 0 unless init has them (compiled and generic alloc)', () => {
    for (const checked of [false, true]) {
      const h = makeHeap({ checked });
      const Rec = h.defineStruct('Rec', { constructor: 'i32', toString: 'ref', valueOf: 'f64', hasOwnProperty: 'bool', count: 'i32' } as const);
      const r = Rec.alloc({ count: 3 } as never);
      expect([Rec.get.constructor(r), Rec.get.toString(r), Rec.get.valueOf(r), Rec.get.hasOwnProperty(r), Rec.get.count(r)])
        .toEqual([0, 0, 0, false, 3]);
      const s = Rec.alloc({ constructor: 5, valueOf: 1.5, hasOwnProperty: true, count: 1 } as never);
      expect([Rec.get.constructor(s), Rec.get.valueOf(s), Rec.get.hasOwnProperty(s), Rec.get.count(s)]).toEqual([5, 1.5, true, 1]);
    }
  });

  it("a field named '__proto__' is refused (its accessors could not be properties of get and set)", () => {
    const h = makeHeap();
    expectError(() => h.defineStruct('Bad', { ['__proto__']: 'i32' } as never), TypeDefinitionError, 'ERR_TYPE_DEFINITION', '__proto__');
    expect(h.defineStruct('Bad', { x: 'i32' }).name).toBe('Bad');
  });
});

describe('small heaps check every bit of a Ref (found in review)', () => {
  it.each(['128KiB', '256KiB', '512KiB', '1MiB'])('at maxHeap %s, a Ref plus 2^29, 2^30 or 2^31 is refused', (maxHeap) => {
    const h = makeHeap({ maxHeap, sweepThreads: 0, auto: false, mode: 'stw' });
    const P = h.defineStruct('P', { x: 'i32' });
    const a = P.alloc({ x: 42 });
    for (const fake of [a + 2 ** 29, a + 2 ** 30, a + 2 ** 31]) {
      expect(() => P.get.x(fake), String(fake)).toThrow(/reference/);
      expect(P.is(fake)).toBe(false);
    }
    expect(P.get.x(a)).toBe(42);
  });
});

describe('options given as null, and tools\' options (found in review)', () => {
  it('new Heap() refuses null for an option instead of taking the default', () => {
    for (const o of [{ maxHeap: null }, { mode: null }, { gcPercent: null }, { minTriggerBytes: null }]) {
      expectError(() => new Heap(o as never), InvalidOptionError, 'ERR_INVALID_OPTION', Object.keys(o)[0]);
    }
  });

  it('startTrace and watchMemoryPressure refuse options of the wrong kind with ERR_INVALID_OPTION', () => {
    const h = makeHeap();
    for (const bad of [null, 5, { maxEvents: 'lots' }, { maxEvents: -1 }, { maxEvents: 1.5 }]) {
      expectError(() => startTrace(h, bad as never), InvalidOptionError, 'ERR_INVALID_OPTION', `startTrace ${JSON.stringify(bad)}`);
    }
    startTrace(h, { maxEvents: 0 }).stop();
    for (const bad of [null, { onPressure: 'x' }, { source: 0 }, { source: '' }]) {
      expectError(() => watchMemoryPressure(h, bad as never), InvalidOptionError, 'ERR_INVALID_OPTION', `watchMemoryPressure ${JSON.stringify(bad)}`);
    }
  });

  // Found in the session-16 review: options checked on one read and used
  // from another, so a getter answering differently got past the checks
  // (onPressure: undefined, then 42, gave Node's TypeError).
  it('watchMemoryPressure and watchCowBudget read each option once', () => {
    const h = makeHeap();
    const reads = new Map<string, number>();
    const getter = <T>(name: string, first: T, later: unknown) => ({
      get() { const n = (reads.get(name) ?? 0) + 1; reads.set(name, n); return n === 1 ? first : later; }, enumerable: true,
    });
    const pressureOptions = Object.defineProperties({}, {
      onPressure: getter('onPressure', undefined, 42), thresholdPercent: getter('thresholdPercent', 50, 'x'),
      intervalMs: getter('intervalMs', 1000, -1), cooldownMs: getter('cooldownMs', 10, -1), source: getter('source', '/nonexistent', 0),
    });
    const watcher = watchMemoryPressure(h, pressureOptions as never);
    expect(watcher.thresholdPercent).toBe(50);
    expect(watcher.listenerCount('pressure')).toBe(0);
    watcher.stop();
    const live = Object.defineProperties({}, { intervalMs: getter('live.intervalMs', 5, 'x'), abortCycle: getter('live.abortCycle', false, 'yes') });
    const budgetOptions = Object.defineProperties({}, {
      budgetBytes: getter('budgetBytes', '1MiB', -1), onExceeded: getter('onExceeded', undefined, 42), live: getter('live', live, 7),
    });
    watchCowBudget(h, budgetOptions as never).close();
    expect(Object.fromEntries(reads)).toEqual(Object.fromEntries([...reads.keys()].map((k) => [k, 1])));
    expect(reads.size).toBe(10);
  });
});

// Found in the session-15 review of the API against its docs.
describe('tools and exported classes refuse what is not theirs', () => {
  it('readPressure, parsePressure and TraceRecorder.writeTo take paths and text only (a number was a file descriptor; -0 aborted Node)', () => {
    // (A NUL byte: no file has such a name, and fs threw its own TypeError from writeTo; found in review.)
    for (const bad of [-0, 0, 2, undefined, null, '', Symbol('s'), 1n, {}, '/proc/pressure/memory\0']) {
      expectError(() => readPressure(bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', `readPressure(${String(bad)})`);
    }
    for (const bad of [Symbol('s'), 0, undefined, {}]) {
      expectError(() => parsePressure(bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', `parsePressure(${String(bad)})`);
    }
    const h = makeHeap();
    const trace = startTrace(h);
    for (const bad of [-0, 2, undefined, '', Symbol('s'), '/tmp/trace\0.json']) {
      expectError(() => trace.writeTo(bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', `writeTo(${String(bad)})`);
    }
    expect(trace.recording, 'a refused path does not stop the recording').toBe(true);
    trace.stop();
  });

  it('parseBytes with a name that is not a string, CowMapper of a non-heap: ERR_INVALID_ARGUMENT', () => {
    expectError(() => parseBytes(Symbol('n') as never, 'zz'), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
    expectError(() => parseBytes('n', Symbol('v') as never), InvalidOptionError, 'ERR_INVALID_OPTION');
    for (const bad of [undefined, {}, 42]) {
      expectError(() => new CowMapper(bad as never), InvalidArgumentError, 'ERR_INVALID_ARGUMENT', String(bad));
    }
  });

  it('the classes a heap makes cannot be constructed by hand', () => {
    const h = makeHeap();
    const made: [string, () => unknown][] = [
      ['RefArrays', () => new RefArrays({})], ['ByteArrays', () => new ByteArrays(undefined)],
      ['Strings', () => new Strings({ views: {} })], ['HeapMaps', () => new HeapMaps({} as never)],
      ['HeapFinalizationRegistry', () => new HeapFinalizationRegistry({ refs: {}, ensureOpen: () => {} }, () => {})],
      ['RootHandle', () => new RootHandle({}, 0)],
    ];
    for (const [name, make] of made) expectError(make, InvalidArgumentError, 'ERR_INVALID_ARGUMENT', name);
    // The heap's own still work.
    const r = h.root(h.arrays.alloc(1));
    expect(h.arrays.length(r.get())).toBe(1);
    h.createFinalizationRegistry(() => {}).register(h.strings.alloc('x'), 1);
  });

  it('a shared Piscina pool whose maxThreads is not a whole number is refused (NaN hung collect(); 2.5 ended the process)', () => {
    for (const bad of [NaN, 2.5, 0, -1, '4', Infinity]) {
      expectError(() => new Heap({ maxHeap: '16MiB', piscina: { run: async () => undefined, maxThreads: bad } as never }),
        InvalidOptionError, 'ERR_INVALID_OPTION', String(bad));
    }
  });

  // Found in the session-16 review: a pool whose run() threw, returned a
  // non-promise or rejected with null gave an untyped error or an uncaught
  // exception and left the heap sweeping for ever; one that answered without
  // running the task left collect() waiting. A pool that cannot run a task
  // is one whose threads could not start: the main thread sweeps.
  // (Found in the session-18 review: an Error whose message or code getter
  // throws was an unhandled rejection, and collect() never settled; the
  // reason is checked too, or a string rejection passed without its fix.)
  const unreadable = (prop: 'message' | 'code') => Object.defineProperty(new Error('x'), prop, { get() { throw new Error(`${prop} getter`); } });
  const hostilePools: Record<string, { run: () => unknown; reason: RegExp }> = {
    'run() throws': { run: () => { throw new Error('run threw'); }, reason: /rejected: run threw/ },
    'run() returns undefined': { run: () => undefined, reason: /settled a sweep task without running it/ },
    'run() rejects with null': { run: () => Promise.reject(null), reason: /rejected with null/ },
    'run() rejects with a string': { run: () => Promise.reject('a string'), reason: /rejected with "a string"/ },
    'run() resolves without running the task': { run: () => Promise.resolve({}), reason: /without running it/ },
    'run() returns a thenable that fulfils at once': { run: () => ({ then(ok: (v: unknown) => void) { ok({}); } }), reason: /without running it/ },
    "run() rejects with an Error whose message getter throws": { run: () => Promise.reject(unreadable('message')), reason: /cannot be read/ },
    "run() rejects with an Error whose code getter throws": { run: () => Promise.reject(unreadable('code')), reason: /cannot be read/ },
  };
  for (const [name, { run, reason }] of Object.entries(hostilePools)) {
    for (const mode of ['stw', 'fork'] as const) {
      it(`a shared pool whose ${name}: the main thread sweeps, said once (${mode})`, async () => {
        const h = makeHeap({ maxHeap: '32MiB', mode, piscina: { run } as never, inlineSweepUs: 0 });
        const fallbacks: string[] = [];
        h.on('sweeperFallback', (e) => fallbacks.push(e.reason));
        const T = h.defineStruct('T', { next: 'ref', n: 'i32' });
        const keep = h.root(T.alloc({ n: 42 }));
        for (let i = 0; i < 50_000; i++) T.alloc({ n: i });
        const first = await withTimeout(h.collect(), 20_000, 'the first collect');
        expect(first.objectsFreed).toBe(50_000);
        for (let i = 0; i < 1000; i++) T.alloc({ n: i });
        expect((await withTimeout(h.collect(), 20_000, 'the second collect')).objectsFreed).toBe(1000);
        expect(T.get.n(keep.get())).toBe(42);
        await new Promise((r) => setImmediate(r));
        expect(fallbacks.length, fallbacks.join('; ')).toBe(1);
        expect(fallbacks[0]).toMatch(reason);
      }, 60_000);
    }
  }

  it('a shared pool\'s maxThreads is read once: a getter that answers 1, then 2.5, neither hangs nor crashes', async () => {
    let reads = 0;
    const h = makeHeap({
      maxHeap: '32MiB', mode: 'stw', inlineSweepUs: 0,
      piscina: { run: () => Promise.reject(new Error('no thread')), get maxThreads() { reads++; return reads === 1 ? 1 : 2.5; } } as never,
    });
    const T = h.defineStruct('T', { n: 'i32' });
    for (let i = 0; i < 10_000; i++) T.alloc({ n: i });
    expect((await withTimeout(h.collect(), 20_000, 'collect')).objectsFreed).toBe(10_000);
    expect(reads).toBe(1);
  }, 30_000);

  it('close() from a finalization callback that close() runs gets the same promise, settled once the sweeper threads ended', async () => {
    const h = makeHeap({ sweepThreads: 2 });
    await h.ready();
    const T = h.defineStruct('T', { v: 'i32' });
    let inner: Promise<void> | undefined;
    h.createFinalizationRegistry(() => { inner = h.close(); }).register(T.alloc(), 1);
    await h.collect();  // the callback is due now (it runs from an immediate, or from close())
    const pool = heapInternals(h).poolToClose!;
    let poolClosed = false;
    const close = pool.close.bind(pool);
    pool.close = async () => { await close(); poolClosed = true; };
    const outer = h.close();
    expect(inner, 'close() ran the due callback').toBeDefined();
    expect(inner).toBe(outer);
    expect(h.close()).toBe(outer);
    await outer;
    expect(poolClosed, 'settled after the sweeper threads ended').toBe(true);
  });
});

describe('a closed heap says so before it looks at the arguments', () => {
  it('maps.forEach, maps.alloc, strings.alloc with bad arguments on a closed heap: ERR_HEAP_CLOSED', async () => {
    const h = makeHeap();
    const m = h.maps.alloc();
    await h.close();
    expectError(() => h.maps.forEach(m, 1 as never), HeapClosedError, 'ERR_HEAP_CLOSED', 'forEach(m, 1)');
    expectError(() => h.maps.alloc(-1), HeapClosedError, 'ERR_HEAP_CLOSED', 'maps.alloc(-1)');
    expectError(() => h.strings.alloc('\ud800'), HeapClosedError, 'ERR_HEAP_CLOSED', 'a lone surrogate');
    expectError(() => h.strings.alloc(5 as never), HeapClosedError, 'ERR_HEAP_CLOSED', 'a number');
  });
});
