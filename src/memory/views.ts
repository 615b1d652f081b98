// Typed-array views over a heap's native regions. The main thread makes one
// set when the heap is created; a sweeper worker makes its own through the
// addon's attachHeap(), over the same memory.
import { SPAN_BYTES } from './layout.js';
import type { RegionViews } from '../platform/native.js';

export class HeapViews {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly text: Buffer;
  readonly allocBits: Uint32Array;
  readonly markBits: Uint32Array;
  readonly spans: Int32Array;
  readonly descriptors: Uint32Array;
  readonly roots: Uint32Array;
  /** Spans in the arena. */
  readonly spanCount: number;

  constructor(readonly regions: RegionViews) {
    const a = regions.arena;
    this.u8 = new Uint8Array(a);
    this.u16 = new Uint16Array(a);
    this.u32 = new Uint32Array(a);
    this.i32 = new Int32Array(a);
    this.f64 = new Float64Array(a);
    this.text = Buffer.from(a);
    this.allocBits = new Uint32Array(regions.allocBits);
    this.markBits = new Uint32Array(regions.markBits);
    this.spans = new Int32Array(regions.spans);
    this.descriptors = new Uint32Array(regions.descriptors);
    this.roots = new Uint32Array(regions.roots);
    // From the arena: the span table's mapping is rounded up to a page.
    this.spanCount = Math.floor(a.byteLength / SPAN_BYTES);
  }
}
