// The layout and the wire format are defined once in native/ and mirrored
// once in src/: these tests bind the mirrors to the definitions.
import { describe, expect, it } from 'vitest';
import * as layout from '../src/memory/layout.js';
import { native } from '../src/platform/native.js';
import * as wire from '../src/collector/stream.js';

describe('layout mirror (native/layout.h = src/layout.ts)', () => {
  const c = native().layoutConstants();
  it('agrees on every constant', () => {
    expect({
      granuleBytes: layout.GRANULE_BYTES, maxArenaBytes: layout.MAX_ARENA_BYTES, spanBytes: layout.SPAN_BYTES,
      headerBytes: layout.HEADER_BYTES, typeFree: layout.TYPE_FREE, typeRefArray: layout.TYPE_REF_ARRAY,
      typeBytes: layout.TYPE_BYTES, typeString: layout.TYPE_STRING, firstStructType: layout.FIRST_STRUCT_TYPE,
      maxTypes: layout.MAX_TYPES, descriptorWords: layout.DESCRIPTOR_WORDS, kindStruct: layout.KIND_STRUCT,
      kindRefArray: layout.KIND_REF_ARRAY, kindLeaf: layout.KIND_LEAF, spanWords: layout.SPAN_WORDS,
      spanFree: layout.SPAN_FREE, spanInUse: layout.SPAN_IN_USE, spanUnswept: layout.SPAN_UNSWEPT,
      spanSweeping: layout.SPAN_SWEEPING, spanLargeTail: layout.SPAN_LARGE_TAIL, spanReserved: layout.SPAN_RESERVED,
    }).toEqual(Object.fromEntries(Object.entries(c).filter(([k]) => !k.startsWith('wire') && !k.startsWith('exit') &&
      k !== 'pageSize' && k !== 'hugePageBytes')));
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

describe('wire mirror (native/wire.h = src/wire.ts)', () => {
  const c = native().layoutConstants();
  it('agrees on every constant', () => {
    expect({
      wireHeaderMagic: wire.HEADER_MAGIC, wireChunkMagic: wire.CHUNK_MAGIC, wireTrailerMagic: wire.TRAILER_MAGIC,
      wireVersion: wire.VERSION, wireHeaderBytes: wire.HEADER_BYTES, wireChunkHeadBytes: wire.CHUNK_HEAD_BYTES,
      wireTrailerBytes: wire.TRAILER_BYTES, wireChunkBytes: wire.CHUNK_BYTES, wireHeaderSeed: wire.HEADER_SEED,
      wireStreamSeed: wire.STREAM_SEED, exitOrphaned: wire.EXIT_ORPHANED, exitHeapCorrupt: wire.EXIT_HEAP_CORRUPT,
      exitWriteFailed: wire.EXIT_WRITE_FAILED, exitFault: wire.EXIT_FAULT,
    }).toEqual(Object.fromEntries(Object.entries(c).filter(([k]) => k.startsWith('wire') || k.startsWith('exit'))));
  });
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
  });
});
