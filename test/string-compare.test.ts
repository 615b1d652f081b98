/**
 * heap.strings.equals and heap.strings.length (src/memory/utf8.ts): answers
 * read(r) === s and read(r).length in the heap, without making a JS string.
 * Oracle: the JS string itself. Properties over strings of every script,
 * with the other side drawn close to the first (equal, a prefix, one unit
 * longer, one unit changed) as well as at random; and the two cases where a
 * compare that trusted its inputs would read past the heap string's bytes,
 * or match bytes against code units of the same value.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FieldValueError, StaleReferenceError, WrongTypeError, type Ref } from '../src/index.js';
import { utf16Length, utf8Equals } from '../src/memory/utf8.js';
import { closeHeapsAfterEach, makeHeap } from './helpers/common.js';

closeHeapsAfterEach();

const text = fc.oneof(
  fc.string({ maxLength: 70 }),                                    // ASCII
  fc.string({ unit: 'grapheme', maxLength: 30 }),                  // any script, emoji
  fc.string({ unit: 'binary', maxLength: 40 }),                    // any code point
  fc.constantFrom('', 'a', 'é', 'Ã©', 'éé', '😀', 'a😀', '\u0000', 'x'.repeat(64)),
);

/** A string close to s: equal, a prefix, longer by one unit, or one unit changed (any of them may still be well formed). */
const near = (s: string) =>
  fc.oneof(
    fc.constant(s),
    fc.nat().map((n) => s.slice(0, s.length === 0 ? 0 : n % s.length)),
    fc.constantFrom('\u0000', 'a', 'é', '\u00c3', '\ud83d', '\ude00').map((c) => s + c),
    fc.tuple(fc.nat(), fc.integer({ min: 0, max: 0xffff })).map(([i, c]) =>
      s.length === 0 ? String.fromCharCode(c) : s.slice(0, i % s.length) + String.fromCharCode(c) + s.slice((i % s.length) + 1)),
  );

describe('heap.strings.equals and length', () => {
  it('equals(alloc(a), b) is a === b and length(alloc(a)) is a.length, before and after a cycle', async () => {
    const heap = makeHeap({ maxHeap: '64MiB' });
    await fc.assert(
      fc.asyncProperty(
        fc.array(text.chain((a) => fc.tuple(fc.constant(a), near(a), text)), { minLength: 1, maxLength: 20 }),
        async (cases) => {
          const root = heap.root(heap.arrays.alloc(cases.length));
          cases.forEach(([a], i) => {
            heap.strings.alloc(`garbage ${a}`);  // freed by the cycle, between the live ones
            heap.arrays.set(root.get(), i, heap.strings.alloc(a));
          });
          const check = () => cases.forEach(([a, b, c], i) => {
            const r = heap.arrays.get(root.get(), i) as Ref<'String'>;
            expect(heap.strings.length(r)).toBe(a.length);
            expect(heap.strings.equals(r, a)).toBe(true);
            expect(heap.strings.equals(r, b)).toBe(a === b);
            expect(heap.strings.equals(r, c)).toBe(a === c);
          });
          check();
          await heap.collect();
          check();
          root.release();
        }),
      { numRuns: 80 },
    );
  });

  it('reads nothing past the string: bytes that continue it in memory do not make a longer string equal', () => {
    // 'éé' is 4 bytes in a 16-byte slot whose last bytes are zero: a compare
    // that ran on past the object's length would match 'éé\0'.
    const heap = makeHeap();
    const r = heap.strings.alloc('éé');
    expect(heap.strings.equals(r, 'éé\u0000')).toBe(false);
    expect(heap.strings.equals(r, 'é')).toBe(false);
    expect(heap.strings.equals(r, 'éé')).toBe(true);
    // The same in plain memory, with the next bytes set to what would match.
    const u8 = new Uint8Array(32);
    u8.set(Buffer.from('ééa'), 4);
    expect(utf8Equals('éé', u8, 4, 4)).toBe(true);
    expect(utf8Equals('ééa', u8, 4, 4)).toBe(false);
    expect(utf8Equals('é😀', Uint8Array.from([0xc3, 0xa9, 0xf0, 0x9f, 0x98]), 0, 5)).toBe(false);
  });

  it('as many units as bytes is equal only when both are ASCII ("Ã©" is not "é", byte for unit alike)', () => {
    const heap = makeHeap();
    const r = heap.strings.alloc('é');          // bytes c3 a9
    expect(heap.strings.equals(r, 'Ã©')).toBe(false);   // units c3 a9
    expect(heap.strings.equals(heap.strings.alloc('Ã©'), 'é')).toBe(false);
  });

  it('a lone surrogate equals nothing (no heap string holds one)', () => {
    const heap = makeHeap();
    const r = heap.strings.alloc('😀');         // d83d de00
    for (const s of ['\ud83d', '\ude00', '\ude00\ud83d', '\ud83d\ud83d', '\ud83dx']) expect(heap.strings.equals(r, s)).toBe(false);
    expect(heap.strings.equals(r, '😀')).toBe(true);
    expect(heap.strings.length(r)).toBe(2);
    // Read as a pair regardless, '\ud83d' then 'x' would give the code point
    // U+11878, whose 4 bytes a heap string can hold.
    expect(heap.strings.equals(heap.strings.alloc('\u{11878}'), '\ud83dx')).toBe(false);
    expect(heap.strings.equals(heap.strings.alloc('\u{11878}'), '\u{11878}')).toBe(true);
  });

  it('length counts ASCII a word at a time and the rest byte by byte, at every alignment of the first non-ASCII byte', () => {
    const heap = makeHeap();
    for (let at = 0; at < 12; at++) {
      for (const c of ['é', '日', '😀']) {
        const s = `${'a'.repeat(at)}${c}${'b'.repeat(at % 5)}`;
        expect(heap.strings.length(heap.strings.alloc(s))).toBe(s.length);
        const bytes = Buffer.from(s);
        const u8 = new Uint8Array(bytes.length + 8);
        u8.set(bytes, 4);
        expect(utf16Length(u8, new Uint32Array(u8.buffer, 0, u8.length >>> 2), 4, bytes.length)).toBe(s.length);
      }
    }
  });

  it('refuses what read refuses, and a non-string to compare with', async () => {
    const heap = makeHeap();
    const bytes = heap.bytes.alloc(4);
    expect(() => heap.strings.length(bytes as number as Ref<'String'>)).toThrow(WrongTypeError);
    expect(() => heap.strings.equals(bytes as number as Ref<'String'>, 'x')).toThrow(WrongTypeError);
    heap.root(heap.strings.alloc('kept'));  // keeps the span, so r's slot stays in it
    const r = heap.strings.alloc('x');
    for (const bad of [undefined, null, 1, {}, Symbol('x'), 1n]) {
      expect(() => heap.strings.equals(r, bad as unknown as string)).toThrow(FieldValueError);
    }
    expect((await heap.collect()).objectsFreed).toBeGreaterThanOrEqual(1);  // r was never rooted
    expect(() => heap.strings.length(r)).toThrow(StaleReferenceError);
    expect(() => heap.strings.equals(r, 'x')).toThrow(StaleReferenceError);
  });
});
