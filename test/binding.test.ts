// The layout, the wire format and the fault codes are defined once in
// native/ and mirrored once in src/: these tests bind every mirrored constant
// to its definition. The comparison is of whole sets: a constant the addon
// exports without a TypeScript mirror, or a TypeScript constant of the
// mirrored modules that the addon does not export, fails it.
import { describe, expect, it } from 'vitest';
import * as layout from '../src/memory/layout.js';
import { FAULT_CODES } from '../src/api/options.js';
import { native } from '../src/platform/native.js';
import * as wire from '../src/collector/stream.js';

/** `SPAN_IN_USE` -> `spanInUse`. */
function camel(name: string): string {
  return name.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Every exported UPPER_CASE number of a module, by camel-case name with `prefix`. */
function numbers(mod: Record<string, unknown>, prefix: string, except: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(mod)) {
    if (typeof v !== 'number' || !/^[A-Z][A-Z0-9_]*$/.test(k) || except.includes(k)) continue;
    const c = camel(k);
    out[prefix ? prefix + c[0].toUpperCase() + c.slice(1) : c] = v;
  }
  return out;
}

// TypeScript-only by design: the size classes (the marker never needs them).
const LAYOUT_TS_ONLY = ['LARGE_CLASS', 'MAX_SMALL_BYTES'];
// Names the addon spells its own way (exit statuses are not "wire" constants).
const EXITS = ['EXIT_ORPHANED', 'EXIT_HEAP_CORRUPT', 'EXIT_WRITE_FAILED', 'EXIT_FAULT'];

describe('mirror: native/layout.h, native/wire.h, native/child.h = src/', () => {
  const c = native().layoutConstants();
  const platform = ['pageSize', 'hugePageBytes'];

  it('layout: every constant (layout, span states, span-table words, free-span states)', () => {
    const fromNative = Object.fromEntries(Object.entries(c).filter(([k]) =>
      !k.startsWith('wire') && !k.startsWith('exit') && !k.startsWith('fault') && !platform.includes(k)));
    expect(numbers(layout, '', LAYOUT_TS_ONLY)).toEqual(fromNative);
  });

  it('wire format: every constant, and the exit statuses', () => {
    const fromNative = Object.fromEntries(Object.entries(c).filter(([k]) => k.startsWith('wire') || k.startsWith('exit')));
    expect({ ...numbers(wire, 'wire', EXITS), ...numbers(Object.fromEntries(EXITS.map((e) => [e, (wire as Record<string, unknown>)[e]])), '', []) })
      .toEqual(fromNative);
  });

  it('fault codes: every fault the child can commit', () => {
    const fromNative = Object.fromEntries(Object.entries(c).filter(([k]) => k.startsWith('fault')));
    const fromTs = Object.fromEntries(Object.entries(FAULT_CODES).filter(([, code]) => code !== 0)
      .map(([kind, code]) => ['fault' + kind.split('-').map((w) => w[0].toUpperCase() + w.slice(1)).join(''), code]));
    expect(fromTs).toEqual(fromNative);
  });

  it('the object-size rule: TypeScript and the marker agree (bytesMarked = the sizes of the objects)', async () => {
    const { Heap } = await import('../src/index.js');
    const { objectBytes } = await import('../src/memory/header.js');
    const { heapInternals } = await import('../src/internal.js');
    const heap = new Heap({ maxHeap: '16MiB', mode: 'stw', sweepThreads: 0, auto: false });
    try {
      const T = heap.defineStruct('T', { a: 'ref', b: 'f64', c: 'bool' });
      const top = heap.arrays.alloc(7);
      heap.root(top);
      const kids = [T.alloc(), heap.bytes.alloc(13), heap.strings.alloc('héllo'), heap.arrays.alloc(0), heap.bytes.alloc(100_000)];
      kids.forEach((k, i) => heap.arrays.set(top, i, k));
      const core = heapInternals(heap);
      const expected = [top, ...kids].reduce((n, r) => n + objectBytes(core.views, core.refs.any(r)), 0);
      const s = await heap.collect();
      expect(s.objectsMarked).toBe(6);
      expect(s.bytesMarked).toBe(expected);
    } finally {
      await heap.close();
    }
  });

  it('size classes are granule multiples that fit a span, in increasing order', () => {
    let prev = 0;
    for (const size of layout.SIZE_CLASSES) {
      expect(size % layout.GRANULE_BYTES).toBe(0);
      expect(size).toBeGreaterThan(prev);
      expect(Math.floor(layout.SPAN_BYTES / size)).toBeGreaterThanOrEqual(2);
      prev = size;
    }
    expect(layout.sizeClassOf(1)).toBe(0);
    expect(layout.sizeClassOf(17)).toBe(1);
    expect(layout.sizeClassOf(layout.MAX_SMALL_BYTES)).toBe(layout.SIZE_CLASSES.length - 1);
    expect(layout.sizeClassOf(layout.MAX_SMALL_BYTES + 1)).toBe(layout.LARGE_CLASS);
  });
});

describe('wire checksum (native/wire.h = src/collector/stream.ts)', () => {
  it('computes the same checksum as the child, for random words and seeds', () => {
    let x = 12345;
    for (let n = 0; n < 200; n++) {
      const words = new Uint32Array(n * 7);
      for (let i = 0; i < words.length; i++) words[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
      const seed = (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
      expect(wire.checksumWords(words, seed)).toBe(native().checksumWords(words, seed));
    }
  });
  it('checksum sees a flipped bit, a swapped word pair and zero padding', () => {
    const words = new Uint32Array(64).map((_, i) => i * 2654435761);
    const base = wire.checksumWords(words, 1);
    const flipped = words.slice(); flipped[17] ^= 1 << 9;
    const swapped = words.slice(); [swapped[3], swapped[4]] = [swapped[4], swapped[3]];
    const zeros = new Uint32Array(64);
    expect(wire.checksumWords(flipped, 1)).not.toBe(base);
    expect(wire.checksumWords(swapped, 1)).not.toBe(base);
    expect(wire.checksumWords(zeros, 1)).not.toBe(wire.checksumWords(zeros.subarray(0, 63), 1));
    // Four lanes since wire version 2: words four apart share a lane, and
    // neighbours do not; either swap is seen, and so are lanes swapped whole.
    const sameLane = words.slice(); [sameLane[5], sameLane[9]] = [sameLane[9], sameLane[5]];
    expect(wire.checksumWords(sameLane, 1)).not.toBe(base);
    const lanesSwapped = words.slice();
    for (let i = 0; i < 64; i += 4) [lanesSwapped[i], lanesSwapped[i + 1]] = [lanesSwapped[i + 1], lanesSwapped[i]];
    expect(wire.checksumWords(lanesSwapped, 1)).not.toBe(base);
  });
  it('a range of words sums as the same words alone, whatever its start (the reader sums inside a larger buffer)', () => {
    const words = new Uint32Array(80).map((_, i) => Math.imul(i + 1, 2654435761) >>> 0);
    for (const [start, end] of [[0, 9], [3, 12], [1, 2], [5, 5], [7, 80], [2, 79]]) {
      expect(wire.checksumWords(words, 99, start, end)).toBe(native().checksumWords(words.slice(start, end), 99));
    }
  });
});

describe('encodeUtf8 (Strings.alloc\'s encoder)', () => {
  it('writes the UTF-8 form and 4 zero bytes into the thread\'s one scratch, refuses a non-string, and says -1 when it may not fit', () => {
    const addon = native();
    const scratch = addon.utf8Scratch();
    expect(addon.utf8Scratch()).toBe(scratch);
    expect(scratch.length).toBe(16384);
    scratch.fill(0xee);
    expect(addon.encodeUtf8('hé€😀')).toBe(10);
    expect([...scratch.subarray(0, 14)]).toEqual([...Buffer.from('hé€😀'), 0, 0, 0, 0]);
    expect(() => addon.encodeUtf8(5 as unknown as string)).toThrow(TypeError);
    expect(addon.encodeUtf8('x'.repeat(16374))).toBe(16374);
    expect(addon.encodeUtf8('x'.repeat(16375))).toBe(-1);   // 16375 + 8 >= 16383: not trusted
    expect(addon.encodeUtf8('€'.repeat(6000))).toBe(-1);    // cut short by V8
  });
});

// Regressions (found in review; the public API never passes these, the
// addon's own checks must hold anyway).
describe('the addon refuses ranges outside a heap', () => {
  it('releaseArena with a negative offset (which wrapped past the bound check) is EINVAL; markInProcess with more roots than the root table fails', async () => {
    const { Heap } = await import('../src/index.js');
    const { heapInternals } = await import('../src/internal.js');
    const heap = new Heap({ maxHeap: '8MiB', sweepThreads: 0, auto: false });
    try {
      const { regions } = heapInternals(heap);
      const addon = native() as unknown as {
        releaseArena(id: number, offset: number, bytes: number): number;
        markInProcess(id: number, top: number, roots: number): unknown;
      };
      const EINVAL = 22;
      expect(addon.releaseArena(regions.id, -4096, 4096)).toBe(EINVAL);
      expect(addon.releaseArena(regions.id, -(2 ** 40), 2 ** 40)).toBe(EINVAL);
      expect(addon.releaseArena(regions.id, 8 * 2 ** 20, 4096)).toBe(EINVAL);
      expect(addon.releaseArena(regions.id, 0, 4096)).toBe(0);
      expect(() => addon.markInProcess(regions.id, 0, 2 ** 31)).toThrow(TypeError);
      const slots = regions.roots.byteLength / 4;
      expect(() => addon.markInProcess(regions.id, 0, slots + 1)).toThrow(TypeError);
      expect(addon.markInProcess(regions.id, 0, slots)).toMatchObject({ status: 0 });
    } finally {
      await heap.close();
    }
  });

  it('createHeap bounds its counts, typed arrays of another element type are refused, destroyHeap takes only the views createHeap returned (found in review: an abort and two segfaults)', async () => {
    const { Heap } = await import('../src/index.js');
    const { heapInternals } = await import('../src/internal.js');
    const addon = native() as unknown as {
      createHeap(bytes: number, huge: boolean, stack: number, roots: number): unknown;
      checksumWords(words: unknown, seed: number): number;
      stageChunk(id: number, words: unknown, seed: number, sum: number, offset: number): number;
      destroyHeap(views: unknown): void;
    };
    // A roots region over 4 GiB could not be viewed (node-addon-api freed its data twice); 2^30 stack entries read as 0.
    expect(() => addon.createHeap(1 << 20, false, 16, 2 ** 30 + 1)).toThrow(TypeError);
    expect(() => addon.createHeap(1 << 20, false, 2 ** 30, 16)).toThrow(TypeError);
    expect(() => addon.createHeap(1 << 20, false, -1, 16)).toThrow(TypeError);
    // A Uint8Array taken for a Uint32Array: its byte count read as a word count.
    expect(() => addon.checksumWords(new Uint8Array(64 * 2 ** 20), 0)).toThrow(TypeError);
    expect(addon.checksumWords(new Uint32Array(4), 0)).toEqual(expect.any(Number));
    const heap = new Heap({ maxHeap: '8MiB', sweepThreads: 0, auto: false });
    try {
      const { regions } = heapInternals(heap);
      expect(() => addon.stageChunk(regions.id, new Uint8Array(1024), 0, 0, 0)).toThrow(TypeError);
      // Another object with the heap's id: refused, the heap untouched.
      expect(() => addon.destroyHeap({ id: regions.id, arena: new ArrayBuffer(8) })).toThrow(TypeError);
      expect(() => addon.destroyHeap({ id: regions.id })).toThrow(TypeError);
      const T = heap.defineStruct('T', { v: 'i32' });
      const t = heap.root(T.alloc({ v: 5 }));
      await heap.collect();
      expect(T.get.v(t.get())).toBe(5);
    } finally {
      await heap.close();
    }
  });
});
