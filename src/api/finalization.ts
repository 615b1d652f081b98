// Finalization of heap objects: register (object, held value); once a cycle
// frees the object, the callback runs with the held value, asynchronously on
// the main thread, exactly once.
//
// Which objects die is decided when the sweep starts, with the final bitmap
// (as for weak fields, src/api/weak.ts): an entry whose object is unmarked is
// taken out of the registry then. The callbacks are queued and run from the
// event loop after the sweep has finished: never inside an allocation, never
// for an object still reachable (it would be marked), never for an aborted
// cycle (no sweep starts), never for an object the sweep did not free (a
// SWEEP_FAILED cycle puts those entries back: the cycle that frees the
// object runs them). close() runs the callbacks already due before the heap
// goes (src/api/core.ts); entries of objects no completed sweep freed never
// run, as with JavaScript's FinalizationRegistry.
import { InvalidArgumentError, describe } from './errors.js';
import type { RefOps } from './refs.js';
import { callSafely } from './listener-errors.js';
import { isHeapMade, registerDropAll, registerTakeDead, type FinalizationParts, type TakenEntries } from './private-access.js';
import type { HeapViews } from '../memory/views.js';

interface Entry<T> {
  held: T;
  token: object | undefined;
}

export class HeapFinalizationRegistry<T> {
  static {
    registerTakeDead((r, v) => (r as HeapFinalizationRegistry<unknown>).#takeDead(v));
    registerDropAll((r) => {
      (r as HeapFinalizationRegistry<unknown>).#entries.clear();
      (r as HeapFinalizationRegistry<unknown>).#due.clear();
    });
  }

  readonly #entries = new Map<number, Entry<T>[]>();
  /**
   * Entries of freed objects whose callbacks are due but have not run (taken
   * out at the sweep's start, run from the event loop after it): unregister()
   * still cancels them, as JavaScript's FinalizationRegistry does.
   */
  readonly #due = new Set<Entry<T>[]>();
  readonly #refs: RefOps;
  readonly #ensureOpen: () => void;
  readonly #callback: (held: T) => void;

  /** Made by heap.createFinalizationRegistry(); not constructible by applications. */
  constructor(internal: unknown, callback: (held: T) => void) {
    if (!isHeapMade(internal)) {
      throw new InvalidArgumentError('HeapFinalizationRegistry: made by heap.createFinalizationRegistry(), not constructible');
    }
    const parts = internal as FinalizationParts;
    this.#refs = parts.refs;
    this.#ensureOpen = parts.ensureOpen;
    this.#callback = callback;
  }

  /** Calls back with `held` after a cycle frees `ref`'s object. `token` may later unregister it. */
  register(ref: number, held: T, unregisterToken?: object): void {
    this.#ensureOpen();
    const g = this.#refs.any(ref);
    if (unregisterToken !== undefined && !isToken(unregisterToken)) {
      throw new InvalidArgumentError(`register: unregisterToken must be an object, got ${describe(unregisterToken)}`);
    }
    const list = this.#entries.get(g);
    const entry = { held, token: unregisterToken };
    if (list) list.push(entry);
    else this.#entries.set(g, [entry]);
  }

  /** Removes every registration made with `token`; returns whether there were any. */
  unregister(unregisterToken: object): boolean {
    this.#ensureOpen();
    if (!isToken(unregisterToken)) {
      throw new InvalidArgumentError(`unregister: unregisterToken must be an object, got ${describe(unregisterToken)}`);
    }
    let found = false;
    for (const list of this.#due) {
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i].token === unregisterToken) {
          list.splice(i, 1);
          found = true;
        }
      }
    }
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
    this.#ensureOpen();
    let n = 0;
    for (const list of this.#entries.values()) n += list.length;
    return n;
  }

  #takeDead(v: HeapViews): TakenEntries[] {
    const out: TakenEntries[] = [];
    const mark = v.markBits;
    for (const [g, list] of this.#entries) {
      if ((mark[g >>> 5] & (1 << (g & 31))) !== 0) continue;
      this.#entries.delete(g);
      this.#due.add(list);
      out.push({
        granule: g,
        // One entry at a time: a throwing callback does not stop the others.
        // The list stays due while it runs, each entry taken off it as it
        // runs: unregister() from a callback then cancels the entries that
        // have not run, the same object's included (found in review).
        run: () => {
          while (list.length > 0) {
            const e = list.shift()!;
            callSafely(() => this.#callback(e.held));
          }
          this.#due.delete(list);
        },
        putBack: () => {
          this.#due.delete(list);
          const now = this.#entries.get(g);
          this.#entries.set(g, now ? [...list, ...now] : list);
        },
      });
    }
    return out;
  }
}

/** An unregister token is an object (a function is one too), as for JavaScript's FinalizationRegistry. */
function isToken(token: unknown): token is object {
  return (typeof token === 'object' && token !== null) || typeof token === 'function';
}
