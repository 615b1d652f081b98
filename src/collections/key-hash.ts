// Keys of heap maps (src/collections/heap-maps.ts): hashing them without
// making a JS object per operation.
//
// A string key is hashed straight from its UTF-16 code units (charCodeAt), and
// the same pass works out its UTF-8 length and whether it is well formed; it
// is compared against the UTF-8 bytes stored in the heap code point by code
// point, and written into the heap the same way (src/memory/utf8.ts). No
// Buffer, no temporary string, no array: a lookup allocates nothing on the V8
// heap.
//
// Semantics (the README's, and JavaScript's Map's, SameValueZero):
//   - strings are equal when their code points are; a string with a lone
//     surrogate has no UTF-8 form and is refused (InvalidKeyError);
//   - every number is a key: -0 is +0, every NaN is the one NaN;
//   - a number and a string are never equal (1 and '1' are two keys).

/** Out-parameter of hashString: the key's UTF-8 byte length, or -1 if it has a lone surrogate. */
export const scan = { utf8Bytes: 0 };

// Murmur3's finaliser: every input bit flips about half of the output bits,
// so the table can use the low bits as the home slot.
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A 32-bit hash of `s` (FNV-1a over the code units, then mix32), seeded per
 * heap so that a client cannot aim keys at one slot. Sets scan.utf8Bytes.
 */
export function hashString(s: string, seed: number): number {
  let h = (seed ^ s.length) | 0;
  let bytes = 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    h = Math.imul(h ^ c, 0x01000193);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c < 0xd800 || c > 0xdfff) bytes += 3;
    else {
      // A high surrogate followed by a low one is one code point, 4 bytes.
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) {
        scan.utf8Bytes = -1;
        return 0;
      }
      h = Math.imul(h ^ d, 0x01000193);
      bytes += 4;
      i++;
    }
  }
  scan.utf8Bytes = bytes;
  return mix32(h);
}

const f64 = new Float64Array(1);
const words = new Uint32Array(f64.buffer);

/** The key a number stands for: -0 becomes +0, every NaN the canonical NaN. */
export function canonicalNumber(k: number): number {
  return k === 0 ? 0 : k !== k ? NaN : k;
}

/** A 32-bit hash of a canonical number key. */
export function hashNumber(k: number, seed: number): number {
  if ((k | 0) === k) return mix32((k ^ seed ^ 0x9e3779b9) | 0);
  f64[0] = k;
  return mix32(words[0] ^ Math.imul(words[1] ^ seed, 0x9e3779b1));
}
