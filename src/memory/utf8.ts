// UTF-8 text in heap memory, read and written in place: decoding it into a
// JS string, comparing it with one, counting its UTF-16 length, writing a
// string's UTF-8 form. Only the decoding makes a JS string: a lookup or a
// length costs no V8 allocation.
//
// Heap strings are well-formed UTF-8 (Strings.alloc and heap map keys refuse
// lone surrogates), so a code point of 4 bytes is always a surrogate pair
// in UTF-16 and every other code point is one unit.

import type { HeapViews } from './views.js';

/** Heap strings of at most this many bytes, if ASCII, are decoded by readUtf8 itself. */
export const SHORT_ASCII_BYTES = 12;

/**
 * The JS string the `length` UTF-8 bytes at byte `start` (a multiple of 4, in
 * a slot of at least 16 bytes) encode. A short ASCII string is made by JS
 * from its (at most three) words, with no call into C++ (52-59 ns for a
 * 10-char key against 108-123 for utf8Slice); any other goes through
 * Buffer's decoder. The slot holds two data words, three when length > 8;
 * bytes past `length` are cut off by slice and only decide the fallback,
 * which is right for any bytes.
 */
export function readUtf8(v: HeapViews, start: number, length: number): string {
  if (length <= SHORT_ASCII_BYTES) {
    const u32 = v.u32;
    const at = start >>> 2;
    const w0 = u32[at];
    const w1 = u32[at + 1];
    const w2 = length > 8 ? u32[at + 2] : 0;
    if (((w0 | w1 | w2) & 0x80808080) === 0) {
      return String.fromCharCode(
        w0 & 0xff, (w0 >>> 8) & 0xff, (w0 >>> 16) & 0xff, w0 >>> 24,
        w1 & 0xff, (w1 >>> 8) & 0xff, (w1 >>> 16) & 0xff, w1 >>> 24,
        w2 & 0xff, (w2 >>> 8) & 0xff, (w2 >>> 16) & 0xff, w2 >>> 24,
      ).slice(0, length);
    }
  }
  // utf8Slice is what toString('utf8', ...) calls after checking its
  // arguments; these bounds are the object's own (0.8x the time).
  return (v.text as Utf8Buffer).utf8Slice(start, start + length);
}

/** Buffer's own UTF-8 decoder (on Buffer.prototype since Node 0.x, not in its types). */
type Utf8Buffer = Buffer & { utf8Slice(start: number, end: number): string };

/**
 * Whether the `length` UTF-8 bytes of u8 at `start` encode exactly `s`:
 * what `decoded === s` answers. Reads nothing outside those bytes. A string
 * with a lone surrogate equals no heap string (none holds one).
 */
export function utf8Equals(s: string, u8: Uint8Array, start: number, length: number): boolean {
  const n = s.length;
  // Each UTF-16 unit is at least one byte: more units than bytes, unequal.
  if (n > length) return false;
  if (n === length) {
    // As many units as bytes: equal only if every unit is ASCII.
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80 || u8[start + i] !== c) return false;
    }
    return true;
  }
  const end = start + length;
  let p = start;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      if (p >= end || u8[p++] !== c) return false;
    } else if (c < 0x800) {
      if (p + 2 > end || u8[p] !== (0xc0 | (c >>> 6)) || u8[p + 1] !== (0x80 | (c & 0x3f))) return false;
      p += 2;
    } else if (c < 0xd800 || c > 0xdfff) {
      if (p + 3 > end || u8[p] !== (0xe0 | (c >>> 12)) || u8[p + 1] !== (0x80 | ((c >>> 6) & 0x3f)) ||
          u8[p + 2] !== (0x80 | (c & 0x3f))) return false;
      p += 3;
    } else {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) return false;  // a lone surrogate
      i++;
      c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      if (p + 4 > end || u8[p] !== (0xf0 | (c >>> 18)) || u8[p + 1] !== (0x80 | ((c >>> 12) & 0x3f)) ||
          u8[p + 2] !== (0x80 | ((c >>> 6) & 0x3f)) || u8[p + 3] !== (0x80 | (c & 0x3f))) return false;
      p += 4;
    }
  }
  return p === end;
}

/**
 * The UTF-16 length (JavaScript's `length`) of the `length` UTF-8 bytes at
 * byte `start`, which is a multiple of 4 (a heap object's data: 8 bytes
 * into its slot). ASCII is counted a word at a time (no byte of the word has
 * its top bit set); from the first word that is not, byte by byte: every
 * byte but a continuation byte (10xxxxxx) starts a code point, and a 4-byte
 * one (11110xxx) is two units.
 */
export function utf16Length(u8: Uint8Array, u32: Uint32Array, start: number, length: number): number {
  const w0 = start >>> 2;
  const words = length >>> 2;
  let k = 0;
  while (k < words && (u32[w0 + k] & 0x80808080) === 0) k++;
  let units = k * 4;
  for (let p = start + units, end = start + length; p < end; p++) {
    const b = u8[p];
    if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
  }
  return units;
}

/** Writes `s` as UTF-8 at u8[start..]; `length` is its UTF-8 length (scan.utf8Bytes). */
export function writeUtf8(s: string, u8: Uint8Array, start: number, length: number): void {
  const n = s.length;
  if (n === length) {
    for (let i = 0; i < n; i++) u8[start + i] = s.charCodeAt(i);
    return;
  }
  let p = start;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      u8[p++] = c;
    } else if (c < 0x800) {
      u8[p++] = 0xc0 | (c >>> 6);
      u8[p++] = 0x80 | (c & 0x3f);
    } else if (c < 0xd800 || c > 0xdfff) {
      u8[p++] = 0xe0 | (c >>> 12);
      u8[p++] = 0x80 | ((c >>> 6) & 0x3f);
      u8[p++] = 0x80 | (c & 0x3f);
    } else {
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
      u8[p++] = 0xf0 | (c >>> 18);
      u8[p++] = 0x80 | ((c >>> 12) & 0x3f);
      u8[p++] = 0x80 | ((c >>> 6) & 0x3f);
      u8[p++] = 0x80 | (c & 0x3f);
    }
  }
}
