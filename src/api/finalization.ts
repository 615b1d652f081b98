// Finalization of heap objects: register (object, held value); once a cycle
// frees the object, the callback runs with the held value, asynchronously on
// the main thread, exactly once.
//
// Which objects die is decided when the sweep starts, with the final bitmap
// (as for weak fields, src/api/weak.ts): an entry whose object is unmarked is
// taken out of the registry then. The callbacks are queued and run from the
// event loop after the sweep has finished: never inside an allocation, never
// for an object still reachable (it would be marked), never for an aborted
// cycle (no sweep starts).
import type { RefOps } from './refs.js';
import { registerTakeDead, type FinalizationParts } from './private-access.js';
import type { HeapViews } from '../memory/views.js';

interface Entry<T> {
  held: T;
  token: object | undefined;
}

export class HeapFinalizationRegistry<T> {
  static {
    registerTakeDead((r, v) => (r as HeapFinalizationRegistry<unknown>).#takeDead(v));
  }

  readonly #entries = new Map<number, Entry<T>[]>();
  readonly #refs: RefOps;
  readonly #ensureOpen: () => void;
  readonly #callback: (held: T) => void;

  /** Made by heap.createFinalizationRegistry(); not constructible by applications. */
  constructor(internal: unknown, callback: (held: T) => void) {
    const parts = internal as FinalizationParts;
    this.#refs = parts.refs;
    this.#ensureOpen = parts.ensureOpen;
    this.#callback = callback;
  }

  /** Calls back with `held` after a cycle frees `ref`'s object. `token` may later unregister it. */
  register(ref: number, held: T, unregisterToken?: object): void {
    this.#ensureOpen();
    const g = this.#refs.any(ref);
    if (unregisterToken !== undefined && (typeof unregisterToken !== 'object' || unregisterToken === null)) {
      throw new TypeError('unregisterToken must be an object');
    }
    const list = this.#entries.get(g);
    const entry = { held, token: unregisterToken };
    if (list) list.push(entry);
    else this.#entries.set(g, [entry]);
  }

  /** Removes every registration made with `token`; returns whether there were any. */
  unregister(unregisterToken: object): boolean {
    this.#ensureOpen();
    let found = false;
    for (const [g, list] of this.#entries) {
      const rest = list.filter((e) => e.token !== unregisterToken);
      if (rest.length !== list.length) {
        found = true;
        if (rest.length) this.#entries.set(g, rest);
        else this.#entries.delete(g);
      }
    }
    return found;
  }

  get size(): number {
    let n = 0;
    for (const list of this.#entries.values()) n += list.length;
    return n;
  }

  #takeDead(v: HeapViews): Array<() => void> {
    const out: Array<() => void> = [];
    const mark = v.markBits;
    for (const [g, list] of this.#entries) {
      if ((mark[g >>> 5] & (1 << (g & 31))) !== 0) continue;
      this.#entries.delete(g);
      for (const e of list) out.push(() => this.#callback(e.held));
    }
    return out;
  }
}
