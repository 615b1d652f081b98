/**
 * heap.strings round trips (src/api/types.ts: Buffer's UTF-8 encoder and
 * decoder, called without write()/toString()'s own argument checks).
 * Property: for any well-formed string, of any length and in any script,
 * read(alloc(s)) === s and byteLength is its UTF-8 length, also after a
 * cycle freed garbage around it; a lone surrogate is refused, short or long.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FieldValueError, type Ref } from '../src/index.js';
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
});
