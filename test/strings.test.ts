/**
 * heap.strings round trips (src/api/types.ts: short ASCII strings copied by
 * JS; the addon's one-call encoder
 * into a scratch, copied in by words, for strings that surely fit it;
 * Buffer's UTF-8 encoder for longer ones; Buffer's decoder).
 * Property: for any well-formed string, of any length and in any script,
 * read(alloc(s)) === s and byteLength is its UTF-8 length, also after a
 * cycle freed garbage around it; a lone surrogate is refused, short or long.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FieldValueError, HeapExhaustedError, type Ref } from '../src/index.js';
import { heapInternals } from '../src/internal.js';
import { SHORT_STRING_UNITS, UTF8_SCRATCH_UNITS } from '../src/api/types.js';
import { native } from '../src/platform/native.js';
import { HEADER_BYTES, roundToGranules } from '../src/memory/layout.js';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';

closeHeapsAfterEach();

const strings = fc.oneof(
  fc.string({ maxLength: 200 }),                                   // ASCII
  fc.string({ unit: 'grapheme', maxLength: 80 }),                  // any script, emoji
  fc.string({ unit: 'binary', maxLength: 140 }),                   // any code point
  fc.constantFrom('', 'a', 'x'.repeat(128), 'x'.repeat(129), `${'x'.repeat(127)}é`, '\u007f\u0080', '\u0000'),
);

describe('heap.strings', () => {
  it('read(alloc(s)) is s and byteLength its UTF-8 length, before and after a cycle', async () => {
    const heap = makeHeap({ maxHeap: '64MiB' });
    await fc.assert(
      fc.asyncProperty(fc.array(strings, { minLength: 1, maxLength: 40 }), async (list) => {
        const root = heap.root(heap.arrays.alloc(list.length));
        list.forEach((s, i) => {
          heap.strings.alloc(`garbage ${s}`);  // dies at the next cycle, between the live ones
          heap.arrays.set(root.get(), i, heap.strings.alloc(s));
        });
        const check = () => list.forEach((s, i) => {
          const r = heap.arrays.get(root.get(), i) as Ref<'String'>;
          expect(heap.strings.read(r)).toBe(s);
          expect(heap.strings.byteLength(r)).toBe(Buffer.byteLength(s, 'utf8'));
        });
        check();
        await heap.collect();
        check();
        root.release();
      }),
      { numRuns: 60 },
    );
  });

  it('a lone surrogate is refused, short or long', () => {
    const heap = makeHeap();
    for (const s of ['\ud800', 'ab\udc00', `${'x'.repeat(200)}\ud800`]) {
      expect(() => heap.strings.alloc(s)).toThrow(FieldValueError);
    }
  });

  it('strings on both sides of the scratch limit, and concatenated ones, round trip', () => {
    const heap = makeHeap({ maxHeap: '256MiB' });
    const n = UTF8_SCRATCH_UNITS;
    const cases: string[] = [];
    for (const unit of ['x', 'é', '€', '😀']) {
      const units = unit.length;
      for (const len of [n - 2, n - 1, n, n + 1, n + 2, 3 * n]) {
        const k = Math.floor(len / units);
        cases.push(unit.repeat(k), 'a' + unit.repeat(k - 1));
      }
    }
    for (const s of cases) {
      const r = heap.strings.alloc(s);
      expect(heap.strings.byteLength(r)).toBe(Buffer.byteLength(s, 'utf8'));
      expect(heap.strings.read(r)).toBe(s);
    }
    fc.assert(fc.property(fc.array(strings, { minLength: 2, maxLength: 6 }), (parts) => {
      const s = parts.join('');  // a V8 cons string, as programs build them
      const r = heap.strings.alloc(s);
      expect(heap.strings.read(r)).toBe(s);
      expect(heap.strings.byteLength(r)).toBe(Buffer.byteLength(s, 'utf8'));
    }), { numRuns: 200 });
  });

  it('short ASCII strings are copied without the addon, and round trip on both sides of that limit', () => {
    const heap = makeHeap();
    const addon = native();
    const encode = addon.encodeUtf8;
    let encoded = 0;
    addon.encodeUtf8 = (s: string) => { encoded++; return encode.call(addon, s); };
    try {
      const n = SHORT_STRING_UNITS;
      const ascii = ['', '\u0000', '\u007f', 'key:1', 'x'.repeat(n - 1), 'abcdefghijkl'.slice(0, n), '\u0000\u007f'.repeat(n / 2)];
      for (const s of ascii) {
        const r = heap.strings.alloc(s);
        expect(heap.strings.read(r)).toBe(s);
        expect(heap.strings.byteLength(r)).toBe(s.length);
      }
      expect(encoded, 'strings of at most SHORT_STRING_UNITS ASCII units never reach the addon').toBe(0);
      // One unit past the limit, or one non-ASCII unit within it: the encoder.
      const other = ['x'.repeat(n + 1), 'é', `${'x'.repeat(n - 1)}é`, '\u0080', '€', '😀'];
      for (const s of other) {
        const r = heap.strings.alloc(s);
        expect(heap.strings.read(r)).toBe(s);
        expect(heap.strings.byteLength(r)).toBe(Buffer.byteLength(s, 'utf8'));
      }
      expect(encoded).toBe(other.length);
    } finally {
      addon.encodeUtf8 = encode;
    }
  });

  it('short strings are read back whatever byte of which word holds the first non-ASCII one (read decodes ASCII words itself)', () => {
    const heap = makeHeap();
    for (let at = 0; at < SHORT_STRING_UNITS; at++) {
      for (const c of ['é', '日', '😀', '\u0080']) {
        const s = `${'a'.repeat(at)}${c}`;
        if (Buffer.byteLength(s, 'utf8') > SHORT_STRING_UNITS) continue;
        expect(heap.strings.read(heap.strings.alloc(s))).toBe(s);
        expect(heap.strings.read(heap.strings.alloc(`${s}b`.slice(-SHORT_STRING_UNITS)))).toBe(`${s}b`.slice(-SHORT_STRING_UNITS));
      }
      const ascii = `${'z'.repeat(at)}~`;
      expect(heap.strings.read(heap.strings.alloc(ascii))).toBe(ascii);
    }
  });

  it('the slot past a short string stays zero, whatever the scratch held before', () => {
    const heap = makeHeap();
    const core = heapInternals(heap);
    for (let length = 0; length <= 40; length++) {
      heap.strings.alloc('\u00ff'.repeat(200));  // leaves non-zero bytes all over the scratch
      const s = 'q'.repeat(length);
      const g = core.refs.any(heap.strings.alloc(s));
      const u8 = core.views.u8;
      const start = g * 16 + HEADER_BYTES;
      expect(Buffer.from(u8.subarray(start, start + length)).toString('latin1')).toBe(s);
      const slotEnd = g * 16 + roundToGranules(HEADER_BYTES + length);
      expect([...u8.subarray(start + length, slotEnd)].every((b) => b === 0)).toBe(true);
    }
  });

  // Two timings. A child that marks at once: the first allocation that
  // meets the cycle moves it on and its listeners find room (kept strings
  // all longer than SHORT_STRING_UNITS, so the first one already goes
  // through the scratch). A child held 2 s before it marks (as a loaded
  // machine may hold it: this test once failed that way in a full run): the
  // kept strings fill the heap first, the allocation at maxHeap finishes the
  // cycle itself, and the listeners' own allocations inside it are refused
  // (HeapExhaustedError, as documented: no room while the cycle cannot move
  // on before the listener returns), each after its string went through the
  // shared scratch.
  it.each([
    { child: 'marking at once', holdMs: 0, minUnits: SHORT_STRING_UNITS + 1 },
    { child: 'held 2 s', holdMs: 2000, minUnits: 0 },
  ])('a listener that allocates strings while a string is being allocated does not change that string (child $child)', async ({ holdMs, minUnits }) => {
    // A full heap with a cycle in flight: the allocation finishes the cycle
    // itself, and the cycle's events reach their listeners inside it. The
    // listeners allocate strings of their own (the encoder's scratch is the
    // thread's, shared by every string allocation).
    const heap = makeHeap({
      maxHeap: '8MiB',
      ...(holdMs ? { faultInjectionForTesting: { kind: 'delay-before-mark' as const, arg: holdMs } } : {}),
    });
    let allocating = false;
    let inside = 0;
    let refused = 0;
    const allocateInListener = () => {
      if (allocating) inside++;
      try {
        heap.strings.alloc(`listener ${inside} ${'#'.repeat(40)}`);
      } catch (e) {
        if (!(e instanceof HeapExhaustedError)) throw e;
        refused++;
      }
    };
    for (const name of ['childDone', 'stream', 'mark', 'sweepStart', 'sweepEnd', 'cycle'] as const) heap.on(name, allocateInListener);
    for (let i = 0; i < 60_000; i++) heap.strings.alloc(`garbage ${i} ${'g'.repeat(60)}`);
    const list = heap.root(heap.arrays.alloc(60_000));
    const done = heap.collect();
    const want = (i: number) => `kept ${i} ${'k'.repeat(minUnits + i % 50)}`;
    let n = 0;
    while (inside === 0 && n < 60_000) {
      allocating = true;
      const r = heap.strings.alloc(want(n));
      allocating = false;
      heap.arrays.set(list.get(), n++, r);
    }
    await done;
    expect(inside).toBeGreaterThan(0);  // the listeners did run inside a string's allocation
    if (holdMs) expect(refused, 'listeners refused room at maxHeap').toBeGreaterThan(0);
    for (let i = 0; i < n; i++) expect(heap.strings.read(heap.arrays.get(list.get(), i) as Ref<'String'>)).toBe(want(i));
  });
});

// bytes.alloc(data) copies up to 64 bytes with a loop and longer data with a
// view and set() (src/api/types.ts, SHORT_COPY_BYTES): both must copy the
// view's own bytes (any offset into its buffer), and nothing beyond them.
describe('heap.bytes.alloc(data): the copy, short and long', () => {
  it('copies exactly the view\'s bytes, at any offset into its buffer (property)', () => {
    const heap = makeHeap({ maxHeap: '64MiB', auto: false, sweepThreads: 0 });
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 400 }), fc.nat(), fc.nat(), (bytes, a, b) => {
      const start = bytes.length === 0 ? 0 : a % bytes.length;
      const length = Math.min(bytes.length - start, b % 200);
      const view = bytes.subarray(start, start + length);
      const r = heap.bytes.alloc(view);
      expect(heap.bytes.length(r)).toBe(length);
      expect([...heap.bytes.copy(r)]).toEqual([...view]);
      const next = heap.bytes.alloc(8);  // the slot after is untouched by the copy
      expect([...heap.bytes.copy(next)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    }), { numRuns: 300 });
  });
});
