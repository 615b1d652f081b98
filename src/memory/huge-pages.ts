// What the restore thread (native/huge_page_restore.cc) is given after a
// cycle: the spans whose pages to make writable again (4 KiB pages), and
// the 2 MiB ranges of the arena to merge back into huge pages (they come
// apart with the parent's writes while the child shared them).
//
// Every range that holds a span the heap did not give back to the OS. A range
// of released spans is left alone: merging it would fault it all back in
// (the kernel fills the missing pages with zeroes). With huge pages on, spans
// are released 32 at a time, one whole 2 MiB range (Allocator.releaseFreeSpans),
// so a range is either all released or holds no released span.
import { FREE_RELEASED, SPAN_BYTES, SPAN_FREE, SPAN_WORDS, SW_AUX, SW_STATE } from './layout.js';

export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;
const SPANS_PER_HUGE_PAGE = HUGE_PAGE_BYTES / SPAN_BYTES;

/** Whether span `s` is free and its pages were given back to the OS. */
function released(spans: Int32Array, s: number): boolean {
  return spans[s * SPAN_WORDS + SW_STATE] === SPAN_FREE && spans[s * SPAN_WORDS + SW_AUX] === FREE_RELEASED;
}

/** Per span below `topSpan`: 1 if it is still resident (in use, or free and not given back to the OS). */
export function residentSpans(spans: Int32Array, topSpan: number): Uint8Array {
  const out = new Uint8Array(topSpan);
  // Span 0 is reserved and never touched.
  for (let s = 1; s < topSpan; s++) if (!released(spans, s)) out[s] = 1;
  return out;
}

/** Per 2 MiB range below `topSpan`: 1 if it holds a span still resident (or in use). */
export function hugeRangesToRestore(spans: Int32Array, topSpan: number): Uint8Array {
  const ranges = new Uint8Array(Math.ceil(topSpan / SPANS_PER_HUGE_PAGE));
  // Span 0 is reserved and never touched: it does not keep its range.
  for (let s = 1; s < topSpan; s++) if (!released(spans, s)) ranges[(s / SPANS_PER_HUGE_PAGE) | 0] = 1;
  return ranges;
}
