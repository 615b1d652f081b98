// Root handles: the mutator's side of the root table (src/api/root-table.ts).
// A handle owns one slot; the slot is the truth.
import { RootReleasedError } from './errors.js';
import type { RootHandleParts } from './private-access.js';
import type { RefOps } from './refs.js';
import type { RootTable } from './root-table.js';

export class RootHandle {
  #slot: number;
  readonly #table: RootTable;
  readonly #refs: RefOps;
  readonly #ensureOpen: () => void;

  /** Made by heap.root(); not constructible by applications. */
  constructor(internal: unknown, slot: number) {
    const parts = internal as RootHandleParts;
    this.#table = parts.table;
    this.#refs = parts.refs;
    this.#ensureOpen = parts.ensureOpen;
    this.#slot = slot;
  }

  get released(): boolean { return this.#slot < 0; }

  /** The rooted object's Ref, or 0. */
  get(): number {
    this.#ensureOpen();
    if (this.#slot < 0) throw new RootReleasedError();
    return this.#refs.encode(this.#table.get(this.#slot));
  }

  /** Roots another object (or 0) with this handle. */
  set(ref: number): void {
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

