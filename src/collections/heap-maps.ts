// Heap-resident maps: a hash table from string or number keys to references,
// living entirely in the arena, so an application's whole index hangs off one
// root and V8 holds no object per entry.
//
// The table is built only from objects the marker already traces precisely
// (no native change): a header struct of a built-in type, a RefArray of
// (key, value) pairs, and Bytes for the hashes and for number keys.
//
// Header (type TYPE_MAP, a struct of 3 strong references; offsets in bytes):
//
// | offset | field                                                              |
// |--------|--------------------------------------------------------------------|
// |      0 | object header (typeId 4)                                           |
// |      8 | entries: RefArray of 2 x capacity: [key, value] per slot           |
// |     12 | hashes: Bytes of 4 x capacity: u32 hash word per slot              |
// |     16 | numbers: Bytes of 8 x capacity: f64 key per slot, or 0 until the   |
// |        | first number key                                                   |
// |     20 | size: entries in the map                                           |
// |     24 | capacity: slots, 0 or a power of two (0 until the first insert)    |
// |     28 | version: bumped by every insert of a new key, delete, clear, grow  |
// |     32 | capacityHint: slots to allocate on the first insert                |
// |  36-47 | unused                                                             |
//
// Slot i (all arrays share the index):
//
// | hash word (u32)        | entries[2i]            | entries[2i+1] | numbers[i]  |
// |------------------------|------------------------|---------------|-------------|
// | 0: empty               | 0                      | 0             | 0           |
// | h & ~3 | 2: string key | the key's String       | value or 0    | 0           |
// | h & ~3 | 3: number key | 0                      | value or 0    | the key     |
//
// The marker traces entries (keys and values) and keeps hashes and numbers
// alive; key Strings are owned by the map (made by set(), dropped by delete()).
//
// Open addressing with linear probing from home slot (hashWord >>> 2) & mask,
// grown x2 (rehash into new arrays, from the stored hash words: keys are never
// re-hashed) when an insert would pass 3/4 full. Deletion shifts the rest of
// the probe run back (Knuth's algorithm R), so there are no tombstones: a map
// at a steady size (an LRU cache) never rehashes. Capacity never shrinks, except
// by clear().
//
// Rooting: set() may allocate (the key String, a grown table). Allocation never
// moves objects and never starts a cycle (cycles start at safepoints only), so
// the refs held by set() stay valid across it; objects allocated during a
// fork-mode mark are black (invariant 2), and the old arrays stay reachable from
// the header until the new ones are complete, so a HeapExhaustedError midway
// leaves the map as it was.
import {
  FieldValueError, HeapExhaustedError, InvalidArgumentError, InvalidKeyError, MapModifiedError, StaleReferenceError, describe,
} from '../api/errors.js';
import {
  DESCRIPTOR_WORDS, HEADER_BYTES, KIND_STRUCT, SPAN_GRANULES, SPAN_SWEEPING, SPAN_UNSWEPT, SPAN_WORDS, SW_STATE, TYPE_BYTES,
  TYPE_REF_ARRAY, TYPE_STRING,
} from '../memory/layout.js';
import type { Ref } from '../api/types.js';
import type { TypeContext } from '../api/type-registry.js';
import { isHeapMade } from '../api/private-access.js';
import { canonicalNumber, hashNumber, hashString, scan } from './key-hash.js';
import { readUtf8, utf8Equals, writeUtf8 } from '../memory/utf8.js';

/** Type ids 4..15 lie below kFirstStructType and native/layout.h uses none of them: the map header takes 4. */
export const TYPE_MAP = 4;
export const MAP_TYPE_NAME = 'HeapMap';
const MAP_BYTES = 48;
const MAP_REFS = 3;

// Header words, from the object's first u32.
const W_ENTRIES = 2;
const W_HASHES = 3;
const W_NUMBERS = 4;
const W_SIZE = 5;
const W_CAPACITY = 6;
const W_VERSION = 7;
const W_HINT = 8;

const TAG_STRING = 2;
const TAG_NUMBER = 3;
const MIN_CAPACITY = 8;
/** Slots: the hash word keeps 30 bits of home slot, and 2^28 slots already need 3 GiB. */
export const MAX_CAPACITY = 2 ** 28;

export type MapKey = string | number;

/** A map's key (string or number) and its value, as given to forEach. */
/** A heap map, as a reference: what maps.alloc() returns (plain numbers are accepted too). */
export type MapRef = Ref<'HeapMap'> | number;
export type MapVisitor = (key: MapKey, value: Ref | 0) => void;

/** Writes the header type's descriptor: the marker traces entries, hashes and numbers. */
export function defineMapType(descriptors: Uint32Array): void {
  const d = TYPE_MAP * DESCRIPTOR_WORDS;
  descriptors[d + 1] = MAP_REFS;
  descriptors[d + 2] = 0;
  descriptors[d + 3] = MAP_BYTES;
  descriptors[d] = KIND_STRUCT;
}

/** Slots to allocate for `n` entries within the load limit. */
function capacityFor(n: number): number {
  let c = MIN_CAPACITY;
  while (n * 4 > c * 3) c *= 2;
  return c;
}

/**
 * `heap.maps`: hash maps in the heap. A map is a Ref like any object: root it
 * (or reach it from a rooted object) to keep it, and with it every key and
 * value, across a yield.
 */
export class HeapMaps {
  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly f64: Float64Array;
  /** Per heap, so a client cannot aim keys at one slot (hash flooding). */
  private readonly seed: number;
  // Set by find(): where the key was, or where it would go.
  private slot = 0;
  // Counts find() calls and table changes, so that set() can tell whether
  // code run inside one of its allocations used the maps (set() says why).
  private ops = 0;
  // Set by delete(): lets an iteration tell "its own entry was deleted" from other changes.
  private deletedMap = 0;
  private deletedSlot = -1;
  private deletedVersion = 0;

  constructor(private readonly ctx: TypeContext) {
    if (!isHeapMade(ctx)) throw new InvalidArgumentError('HeapMaps: made by the heap (heap.maps), not constructible');
    const v = ctx.views;
    this.u8 = v.u8;
    this.u32 = v.u32;
    this.f64 = v.f64;
    defineMapType(v.descriptors);
    this.seed = (Math.random() * 2 ** 32) >>> 0;
  }

  /**
   * A new, empty map. `capacityHint`: entries to make room for at the first
   * insert (saves the rehashes of growing to a known size); no table is made
   * before the first insert.
   */
  alloc(capacityHint = 0): Ref<'HeapMap'> {
    this.ctx.ensureOpen();
    if (typeof capacityHint !== 'number' || !Number.isInteger(capacityHint) || capacityHint < 0 ||
        capacityHint > MAX_CAPACITY * 0.75) {
      throw new FieldValueError(`maps.alloc: capacityHint must be an integer from 0 to ${MAX_CAPACITY * 0.75}, got ${describe(capacityHint)}`);
    }
    const g = this.ctx.allocate(TYPE_MAP, MAP_BYTES, 0);
    this.u32[g * 4 + W_HINT] = capacityHint;
    // A new map in the slot of a freed one starts at version 0 again: the
    // record of the old one's last delete must not pass for this one's (an
    // iteration would take an insert for the visitor deleting its own entry).
    if (this.deletedMap === g) this.deletedMap = 0;
    return this.ctx.refs.encode(g) as Ref<'HeapMap'>;
  }

  /** Whether `ref` names a live map (never throws). */
  is(ref: unknown): boolean {
    try {
      this.ctx.refs.typed(ref, TYPE_MAP);
      return true;
    } catch {
      return false;
    }
  }

  size(m: MapRef): number {
    return this.u32[this.ctx.refs.typed(m, TYPE_MAP) * 4 + W_SIZE];
  }

  /** Slots in the table (0 before the first insert): for tests and sizing. */
  capacity(m: MapRef): number {
    return this.u32[this.ctx.refs.typed(m, TYPE_MAP) * 4 + W_CAPACITY];
  }

  /** The value stored under `key`, or 0 when there is none (or the value stored is 0: see has()). */
  get(m: MapRef, key: MapKey): Ref | 0 {
    const g = this.ctx.refs.typed(m, TYPE_MAP);
    if (!this.find(g, key)) return 0;
    const eg = this.u32[g * 4 + W_ENTRIES];
    return this.ctx.refs.encode(this.u32[eg * 4 + 2 + 2 * this.slot + 1]) as Ref | 0;
  }

  has(m: MapRef, key: MapKey): boolean {
    return this.find(this.ctx.refs.typed(m, TYPE_MAP), key);
  }

  /**
   * Stores `value` (a reference, or 0) under `key`, replacing the value there.
   * May allocate (the key's String, a larger table): HeapExhaustedError then
   * leaves the map as it was.
   */
  set(m: MapRef, key: MapKey, value: Ref | number): void {
    const { refs } = this.ctx;
    const g = refs.typed(m, TYPE_MAP);
    // The value is checked first: a bad one changes nothing.
    const vg = refs.field(value);
    const u32 = this.u32;
    const h = g * 4;
    if (this.find(g, key)) {
      this.storeValue(g, vg);
      return;
    }
    // A new key. (find() validated it and left its hash in lastHash and,
    // for a string, its UTF-8 length in scan.utf8Bytes.)
    //
    // Every allocation below may move a cycle on and run its event listeners
    // inside it, and those may use the maps, this one included: they move
    // this.slot and this.lastHash, and may insert this very key or grow the
    // table. So what find() left is copied first, and
    // after an allocation during which any map was looked at (`ops`), the
    // key is looked up again.
    const hashWord = this.lastHash;
    const isString = typeof key === 'string';
    let kg = 0;
    if (isString) {
      const bytes = scan.utf8Bytes;
      const ops = this.ops;
      kg = this.ctx.allocate(TYPE_STRING, HEADER_BYTES + bytes, bytes);
      writeUtf8(key, this.u8, kg * 16 + HEADER_BYTES, bytes);
      if (this.ops !== ops && this.find(g, key)) {  // stored meanwhile: this String is garbage
        this.storeValue(g, vg);
        return;
      }
    }
    for (;;) {
      const size = u32[h + W_SIZE];
      const cap = u32[h + W_CAPACITY];
      const full = (size + 1) * 4 > cap * 3;
      if (!full && (isString || u32[h + W_NUMBERS] !== 0)) break;
      const ops = this.ops;
      this.grow(g, cap === 0 ? capacityFor(Math.max(size + 1, u32[h + W_HINT])) : full ? cap * 2 : cap, !isString);
      if (this.ops !== ops && this.find(g, key)) {
        this.storeValue(g, vg);
        return;
      }
    }
    // Nothing allocates from here on.
    this.findSlotFor(g, hashWord);
    const i = this.slot;
    const eg = u32[h + W_ENTRIES];
    u32[u32[h + W_HASHES] * 4 + 2 + i] = hashWord;
    u32[eg * 4 + 2 + 2 * i] = kg;
    u32[eg * 4 + 2 + 2 * i + 1] = vg;
    if (!isString) this.f64[u32[h + W_NUMBERS] * 2 + 1 + i] = canonicalNumber(key as number);
    u32[h + W_SIZE] = u32[h + W_SIZE] + 1;
    u32[h + W_VERSION] = (u32[h + W_VERSION] + 1) >>> 0;
  }

  /** Removes `key`; returns whether it was there. Its key String becomes garbage. */
  delete(m: MapRef, key: MapKey): boolean {
    const g = this.ctx.refs.typed(m, TYPE_MAP);
    if (!this.find(g, key)) return false;
    this.removeSlot(g, this.slot);
    return true;
  }

  /** Removes every entry and drops the table (capacity back to 0). */
  clear(m: MapRef): void {
    const h = this.ctx.refs.typed(m, TYPE_MAP) * 4;
    this.ops++;
    const u32 = this.u32;
    u32[h + W_ENTRIES] = 0;
    u32[h + W_HASHES] = 0;
    u32[h + W_NUMBERS] = 0;
    u32[h + W_SIZE] = 0;
    u32[h + W_CAPACITY] = 0;
    u32[h + W_VERSION] = (u32[h + W_VERSION] + 1) >>> 0;
  }

  /**
   * Calls `visit(key, value)` for every entry, in table order (unspecified).
   * `visit` may overwrite values and delete the entry it was given; any other
   * insert or delete makes the iteration throw MapModifiedError. It must not
   * yield or call heap.safepoint() unless the map is rooted (rooting contract).
   */
  forEach(m: MapRef, visit: MapVisitor): void {
    this.ctx.ensureOpen();
    if (typeof visit !== 'function') throw new InvalidArgumentError(`maps.forEach: visit must be a function, got ${describe(visit)}`);
    const c = new Cursor(this, m);
    while (c.next()) visit(c.key(), c.value());
  }

  /** [key, value] pairs, under forEach's rules (checked at each step). */
  *entries(m: MapRef): IterableIterator<[MapKey, Ref | 0]> {
    const c = new Cursor(this, m);
    while (c.next()) yield [c.key(), c.value()];
  }

  *keys(m: MapRef): IterableIterator<MapKey> {
    const c = new Cursor(this, m);
    while (c.next()) yield c.key();
  }

  *values(m: MapRef): IterableIterator<Ref | 0> {
    const c = new Cursor(this, m);
    while (c.next()) yield c.value();
  }

  // ---- internals ---------------------------------------------------------------

  /** Hash word of the key find() last looked for. */
  private lastHash = 0;

  /**
   * Looks `key` up in map g: true with this.slot = its slot, or false with
   * this.slot = the empty slot where it would go (capacity > 0). Validates the key.
   */
  private find(g: number, key: MapKey): boolean {
    this.ops++;
    const u32 = this.u32;
    const h = g * 4;
    let hashWord: number;
    if (typeof key === 'string') {
      hashWord = ((hashString(key, this.seed) & ~3) | TAG_STRING) >>> 0;
      if (scan.utf8Bytes < 0) throw new InvalidKeyError('map key: the string has a lone surrogate (no UTF-8 form); use well-formed strings');
    } else if (typeof key === 'number') {
      hashWord = ((hashNumber(canonicalNumber(key), this.seed) & ~3) | TAG_NUMBER) >>> 0;
    } else {
      throw new InvalidKeyError(`map key: expected a string or a number, got ${key === null ? 'null' : typeof key}`);
    }
    this.lastHash = hashWord;
    const cap = u32[h + W_CAPACITY];
    if (cap === 0) return false;
    const mask = cap - 1;
    const hb = u32[h + W_HASHES] * 4 + 2;
    let i = (hashWord >>> 2) & mask;
    for (;;) {
      const w = u32[hb + i];
      if (w === 0) {
        this.slot = i;
        return false;
      }
      if (w === hashWord && this.keyEquals(g, i, key)) {
        this.slot = i;
        return true;
      }
      i = (i + 1) & mask;
    }
  }

  private keyEquals(g: number, i: number, key: MapKey): boolean {
    const u32 = this.u32;
    if (typeof key === 'string') {
      const kg = u32[u32[g * 4 + W_ENTRIES] * 4 + 2 + 2 * i];
      const len = u32[kg * 4 + 1];
      return len === scan.utf8Bytes && utf8Equals(key, this.u8, kg * 16 + HEADER_BYTES, len);
    }
    const stored = this.f64[u32[g * 4 + W_NUMBERS] * 2 + 1 + i];
    const k = canonicalNumber(key);
    return stored === k || (stored !== stored && k !== k);
  }

  /** Stores value granule vg in this.slot of map g (the slot find() found the key in). */
  private storeValue(g: number, vg: number): void {
    const u32 = this.u32;
    u32[u32[g * 4 + W_ENTRIES] * 4 + 2 + 2 * this.slot + 1] = vg;
  }

  /** Sets this.slot to the empty slot where a key of hashWord goes (the key is absent). */
  private findSlotFor(g: number, hashWord: number): void {
    const u32 = this.u32;
    const mask = u32[g * 4 + W_CAPACITY] - 1;
    const hb = u32[g * 4 + W_HASHES] * 4 + 2;
    let i = (hashWord >>> 2) & mask;
    while (u32[hb + i] !== 0) i = (i + 1) & mask;
    this.slot = i;
  }

  /** Rehashes map g into new arrays of `cap` slots (with a numbers array if there is one or `numbers`). */
  private grow(g: number, cap: number, numbers: boolean): void {
    if (cap > MAX_CAPACITY) {
      throw new HeapExhaustedError(`maps.set: a map holds at most ${MAX_CAPACITY * 0.75} entries`);
    }
    const { ctx, u32, f64 } = this;
    const h = g * 4;
    const withNumbers = numbers || u32[h + W_NUMBERS] !== 0;
    // All new arrays first: a failed allocation leaves the map untouched.
    const ops = this.ops;
    const ne = ctx.allocate(TYPE_REF_ARRAY, HEADER_BYTES + 8 * cap, 2 * cap);
    const nh = ctx.allocate(TYPE_BYTES, HEADER_BYTES + 4 * cap, 4 * cap);
    const nn = withNumbers ? ctx.allocate(TYPE_BYTES, HEADER_BYTES + 8 * cap, 8 * cap) : 0;
    // Code run inside those allocations used the maps (set() says how): the
    // table may have grown or filled past `cap` meanwhile. Leave the new
    // arrays to the next cycle; set() looks again.
    if (this.ops !== ops) return;
    this.ops++;
    const oldCap = u32[h + W_CAPACITY];
    const mask = cap - 1;
    if (oldCap > 0) {
      const oe = u32[h + W_ENTRIES] * 4 + 2;
      const oh = u32[h + W_HASHES] * 4 + 2;
      const on = u32[h + W_NUMBERS];
      const ne4 = ne * 4 + 2;
      const nh4 = nh * 4 + 2;
      for (let i = 0; i < oldCap; i++) {
        const w = u32[oh + i];
        if (w === 0) continue;
        let j = (w >>> 2) & mask;
        while (u32[nh4 + j] !== 0) j = (j + 1) & mask;
        u32[nh4 + j] = w;
        u32[ne4 + 2 * j] = u32[oe + 2 * i];
        u32[ne4 + 2 * j + 1] = u32[oe + 2 * i + 1];
        if (on !== 0 && (w & 3) === TAG_NUMBER) f64[nn * 2 + 1 + j] = f64[on * 2 + 1 + i];
      }
    }
    u32[h + W_ENTRIES] = ne;
    u32[h + W_HASHES] = nh;
    u32[h + W_NUMBERS] = nn;
    u32[h + W_CAPACITY] = cap;
    u32[h + W_VERSION] = (u32[h + W_VERSION] + 1) >>> 0;
  }

  /** Empties slot i of map g, shifting the rest of its probe run back (no tombstones). */
  private removeSlot(g: number, i: number): void {
    const { u32, f64 } = this;
    const h = g * 4;
    const mask = u32[h + W_CAPACITY] - 1;
    const eb = u32[h + W_ENTRIES] * 4 + 2;
    const hb = u32[h + W_HASHES] * 4 + 2;
    const ng = u32[h + W_NUMBERS];
    const nb = ng * 2 + 1;
    this.deletedMap = g;
    this.deletedSlot = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const w = u32[hb + j];
      if (w === 0) break;
      const home = (w >>> 2) & mask;
      // The entry at j may fill the hole at i unless its home lies in (i, j] cyclically.
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      u32[hb + i] = w;
      u32[eb + 2 * i] = u32[eb + 2 * j];
      u32[eb + 2 * i + 1] = u32[eb + 2 * j + 1];
      if (ng !== 0) f64[nb + i] = f64[nb + j];
      i = j;
    }
    u32[hb + i] = 0;
    u32[eb + 2 * i] = 0;
    u32[eb + 2 * i + 1] = 0;
    if (ng !== 0) f64[nb + i] = 0;
    u32[h + W_SIZE]--;
    const version = (u32[h + W_VERSION] + 1) >>> 0;
    u32[h + W_VERSION] = version;
    this.deletedVersion = version;
  }

  // ---- for Cursor ----------------------------------------------------------------

  /** @internal */ headerOf(m: MapRef): number { return this.ctx.refs.typed(m, TYPE_MAP); }
  /** @internal */ word(g: number, w: number): number { return this.u32[g * 4 + w]; }
  /**
   * @internal The first header word (type id and generation) of the live
   * object at g; -1 when its slot is free, when the object is dead but not
   * swept yet, or when the heap is closed (its views are empty then).
   */
  identityAt(g: number): number {
    const v = this.ctx.views;
    const w = g >>> 5;
    const bit = 1 << (g & 31);
    // (A plain read first: a closed heap's views are empty, and read so
    // they give -1, where Atomics.load would throw; the Ref's check then
    // says HeapClosedError.)
    if ((v.allocBits[w] & bit) === 0) return -1;
    // Marked by the last mark and not swept since (a sweep clears a span's
    // marks last): live.
    if ((Atomics.load(v.markBits, w) & bit) !== 0) return this.u32[g * 4];
    // Unmarked. In a span the sweep has not begun or whose sweeper has not
    // made its allocation bits final (UNSWEPT, SWEEPING), the marks are
    // still the cycle's, so it is dead: its slot keeps the allocation bit
    // and header until its sweep, while the objects it referred to may be
    // freed and reused already (found in review). (An object there existed
    // at the mark: the mutator allocates only in swept spans, black while a
    // cycle marks.) The mark is read before the state, and a sweeper stores
    // SWEPT before it clears any mark, ordered so on any CPU
    // (src/memory/sweeper.ts): a state read as UNSWEPT or SWEEPING means the
    // mark read was the cycle's, whether the thread is running or died
    // there (found in review: a dead map in a span a thread had claimed was
    // taken for live; then, with a flag in place of SWEPT, a live one in a
    // span a stalled thread had swept, for dead).
    const state = Atomics.load(v.spans, Math.floor(g / SPAN_GRANULES) * SPAN_WORDS + SW_STATE);
    if (state === SPAN_UNSWEPT || state === SPAN_SWEEPING) return -1;
    // SWEPT or published (the state's atomic load makes the sweeper's
    // writes visible): the allocation bit is final and decides. Or put back
    // by a failed sweep, which says what it left in place.
    if ((Atomics.load(v.allocBits, w) & bit) === 0) return -1;
    const left = this.ctx.allocator.garbageLeft;
    if (left !== undefined && w < left.length && (left[w] & bit) !== 0) return -1;
    return this.u32[g * 4];
  }
  /** @internal */ hashAt(g: number, i: number): number { return this.u32[this.u32[g * 4 + W_HASHES] * 4 + 2 + i]; }

  /** @internal Whether the last change to map g was delete() of slot i, bringing it to `version`. */
  deletedAt(g: number, i: number, version: number): boolean {
    return this.deletedMap === g && this.deletedSlot === i && this.deletedVersion === version;
  }

  /** @internal */
  keyAt(g: number, i: number): MapKey {
    const u32 = this.u32;
    const hb = u32[g * 4 + W_HASHES] * 4 + 2;
    if ((u32[hb + i] & 3) === TAG_NUMBER) return this.f64[u32[g * 4 + W_NUMBERS] * 2 + 1 + i];
    const kg = u32[u32[g * 4 + W_ENTRIES] * 4 + 2 + 2 * i];
    return readUtf8(this.ctx.views, kg * 16 + HEADER_BYTES, u32[kg * 4 + 1]);
  }

  /** @internal */
  valueAt(g: number, i: number): Ref | 0 {
    return this.ctx.refs.encode(this.u32[this.u32[g * 4 + W_ENTRIES] * 4 + 2 + 2 * i + 1]) as Ref | 0;
  }
}

/**
 * One pass over a map's slots. It starts just after an empty slot, so that the
 * back-shifts of a deletion only ever move entries from later to earlier in the
 * pass's order: deleting the entry being visited may pull an unvisited one into
 * its slot, which the pass then looks at again. Every other change ends the pass
 * with MapModifiedError.
 */
/** A pass over a map that is dead but not swept yet (the Ref's own check passes). */
function freedDuringPass(): StaleReferenceError {
  return new StaleReferenceError('maps: the map was freed by a cycle (a map held across a safepoint must be rooted: heap.root())');
}

class Cursor {
  private readonly g: number;
  /** The map's header word when the pass began (identityAt). */
  private readonly identity: number;
  private version: number;
  private readonly start: number;
  private readonly cap: number;
  private visited = 0;   // slots of the pass done
  private at = -1;       // the slot handed out last, or -1

  constructor(private readonly maps: HeapMaps, private readonly m: MapRef) {
    const g = maps.headerOf(m);
    this.g = g;
    this.identity = maps.identityAt(g);
    if (this.identity === -1) throw freedDuringPass();
    this.version = maps.word(g, W_VERSION);
    this.cap = maps.word(g, W_CAPACITY);
    let start = 0;
    if (this.cap > 0) {
      // An empty slot exists: the table is at most 3/4 full.
      while (maps.hashAt(g, start) !== 0) start++;
    }
    this.start = start;
  }

  /** Moves to the next entry; false at the end. */
  next(): boolean {
    const { maps, g } = this;
    // The map must still be the same live object: its slot allocated, with
    // the type and generation it had when the pass began. Not the Ref the
    // pass was given: checked mode reports any Ref once a cycle started, and
    // a pass over a rooted map may span a yield (found in review). When it
    // is not, the Ref's own check gives the precise error (a freed map:
    // StaleReferenceError; a closed heap: HeapClosedError).
    const identity = maps.identityAt(g);
    if (identity !== this.identity) {
      maps.headerOf(this.m);
      // The Ref's check passes for a map that is dead but not swept yet.
      if (identity === -1) throw freedDuringPass();
      throw new MapModifiedError('maps: the map changed identity during iteration');
    }
    const now = maps.word(g, W_VERSION);
    if (now !== this.version) {
      if (this.at >= 0 && now === ((this.version + 1) >>> 0) && maps.deletedAt(g, this.at, now)) {
        // The visitor deleted its own entry: look at the slot again.
        this.version = now;
        this.visited--;
      } else {
        throw new MapModifiedError('maps: the map was changed during iteration (only the entry being visited may be deleted)');
      }
    }
    const cap = this.cap;
    while (this.visited < cap) {
      const i = (this.start + this.visited) & (cap - 1);
      this.visited++;
      if (maps.hashAt(g, i) !== 0) {
        this.at = i;
        return true;
      }
    }
    this.at = -1;
    return false;
  }

  key(): MapKey { return this.maps.keyAt(this.g, this.at); }
  value(): Ref | 0 { return this.maps.valueAt(this.g, this.at); }
}
