// Root handles: the mutator's side of the root table (src/api/root-table.ts).
// A handle owns one slot; the slot is the truth.
import { InvalidArgumentError, RootReleasedError } from './errors.js';
import { isHeapMade, type RootHandleParts } from './private-access.js';
import type { RefOps } from './refs.js';
import type { RootTable } from './root-table.js';
import type { Ref, RefTo } from './types.js';

// T: the rooted object's type name, as far as TypeScript knows (src/api/types.ts).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export class RootHandle<T extends string = any> {
  #slot: number;
  readonly #table: RootTable;
  readonly #refs: RefOps;
  readonly #ensureOpen: () => void;

  /** Made by heap.root(); not constructible by applications. */
  constructor(internal: unknown, slot: number) {
    if (!isHeapMade(internal)) throw new InvalidArgumentError('RootHandle: made by heap.root(), not constructible');
    const parts = internal as RootHandleParts;
    this.#table = parts.table;
    this.#refs = parts.refs;
    this.#ensureOpen = parts.ensureOpen;
    this.#slot = slot;
  }

  get released(): boolean { return this.#slot < 0; }

  /** The rooted object's Ref (0 when the handle roots null). */
  get(): Ref<T> {
    this.#ensureOpen();
    if (this.#slot < 0) throw new RootReleasedError();
    return this.#refs.encode(this.#table.get(this.#slot)) as Ref<T>;
  }

  /** Roots another object (or 0) with this handle. */
  set<R extends number>(ref: RefTo<R, T>): void {
    this.#ensureOpen();
    if (this.#slot < 0) throw new RootReleasedError();
    this.#table.set(this.#slot, this.#refs.field(ref));
  }

  /** Drops the root; the object lives on only if something else reaches it. Releasing twice is an error. */
  release(): void {
    this.#ensureOpen();
    if (this.#slot < 0) throw new RootReleasedError('the root handle was already released');
    this.#table.remove(this.#slot);
    this.#slot = -1;
  }
}

