// UTF-8 text in heap memory, read and written in place: comparing a heap
// string with a JS string, counting its UTF-16 length, writing a string's
// UTF-8 form. None of them makes a JS string (Strings.read does, with
// Buffer's decoder): a lookup or a length costs no V8 allocation.
//
// Heap strings are well-formed UTF-8 (Strings.alloc and heap map keys refuse
// lone surrogates), so a code point of 4 bytes is always a surrogate pair
// in UTF-16 and every other code point is one unit.

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
