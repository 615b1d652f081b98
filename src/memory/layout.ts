// Mirror of native/layout.h (see the tables there). test/binding.test.ts
// checks every constant against the addon's layoutConstants().

export const GRANULE_BYTES = 16;
export const GRANULE_SHIFT = 4;
export const MAX_ARENA_BYTES = 2 ** 32;
export const SPAN_BYTES = 64 * 1024;
export const SPAN_GRANULES = SPAN_BYTES / GRANULE_BYTES;
export const SPAN_BITMAP_WORDS = SPAN_GRANULES / 32;
export const HEADER_BYTES = 8;

export const TYPE_FREE = 0;
export const TYPE_REF_ARRAY = 1;
export const TYPE_BYTES = 2;
export const TYPE_STRING = 3;
export const FIRST_STRUCT_TYPE = 16;
export const MAX_TYPES = 65536;

export const DESCRIPTOR_WORDS = 4;
export const KIND_UNDEFINED = 0;
export const KIND_STRUCT = 1;
export const KIND_REF_ARRAY = 2;
export const KIND_LEAF = 3;

export const SPAN_WORDS = 4;
export const SPAN_FREE = 0;
export const SPAN_IN_USE = 1;
export const SPAN_UNSWEPT = 2;
export const SPAN_SWEEPING = 3;
export const SPAN_LARGE_TAIL = 4;
export const SPAN_RESERVED = 5;
/**
 * A sweeper's span whose allocation bits are final, its marks about to be
 * cleared: the survivors are what is allocated (SWEEPING: the marks are
 * still the cycle's). A thread that dies here leaves it so, and a heap
 * map's identity check and a failed sweep read it (found in review: with
 * only SWEEPING, a span whose marks were cleared looked all garbage).
 */
export const SPAN_SWEPT = 6;

// Span table words (see native/layout.h).
export const SW_STATE = 0;
export const SW_CLASS = 1;
export const SW_LIVE = 2;
export const SW_AUX = 3;

// SW_AUX of a free span: whether its pages still hold (zeroed or dirty) memory.
export const FREE_CLEAN = 0;     // pages zero, still resident (or never touched)
export const FREE_DIRTY = 1;     // holds a dead object's bytes: zero or release before reuse
export const FREE_RELEASED = 2;  // given back to the OS (reads as zero)
// SW_AUX of a small span in use (TypeScript only; the marker never reads it):
// whether its free slots may hold a dead object's bytes. The sweep frees
// slots without touching them (bitmaps only), so allocation zeroes a slot it
// hands out from such a span (Go's needzero); a span taken from the free list
// starts all zero.
export const SPAN_ZEROED = 0;    // every free slot reads as zero
export const SPAN_NEEDZERO = 1;  // free slots may hold old bytes: zero each at allocation

/**
 * Size classes in bytes, every one a multiple of the granule; the larger ones
 * are chosen so a 64 KiB span wastes little (e.g. 3 x 21840). Objects over
 * the last class get a run of whole spans of their own.
 */
export const SIZE_CLASSES: readonly number[] = [
  16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
  640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 4096, 5456, 6544,
  8192, 10912, 13104, 16384, 21840, 32768,
];
export const LARGE_CLASS = SIZE_CLASSES.length;
export const MAX_SMALL_BYTES = SIZE_CLASSES[SIZE_CLASSES.length - 1];

/** Slot size in granules, per class. */
export const CLASS_GRANULES: readonly number[] = SIZE_CLASSES.map((b) => b / GRANULE_BYTES);
/** Slots per span, per class. */
export const CLASS_SLOTS: readonly number[] = CLASS_GRANULES.map((g) => Math.floor(SPAN_GRANULES / g));

const classBySixteenth = new Uint8Array(MAX_SMALL_BYTES / GRANULE_BYTES + 1);
{
  let c = 0;
  for (let g = 0; g <= MAX_SMALL_BYTES / GRANULE_BYTES; g++) {
    while (CLASS_GRANULES[c] < g) c++;
    classBySixteenth[g] = c;
  }
}

/** The size class for an object of `bytes` (granule-rounded), or LARGE_CLASS. */
export function sizeClassOf(bytes: number): number {
  if (bytes > MAX_SMALL_BYTES) return LARGE_CLASS;
  return classBySixteenth[(bytes + GRANULE_BYTES - 1) >>> GRANULE_SHIFT];
}

export function roundToGranules(bytes: number): number {
  return Math.ceil(bytes / GRANULE_BYTES) * GRANULE_BYTES;
}
