// The root table: a u32 slot per handle in native memory, which the child
// reads at fork (slots [0, highWater)). An empty slot holds 0. Handles are
// small objects on the mutator side; the slot is the truth.
import { HeapExhaustedError, RootReleasedError } from './errors.js';
import type { RefOps } from './refs.js';

export class RootTable {
  highWater = 0;
  live = 0;
  private readonly free: number[] = [];

  constructor(private readonly slots: Uint32Array, private readonly capacity: number) {}

  add(granule: number): number {
    let i = this.free.pop();
    if (i === undefined) {
      if (this.highWater >= this.capacity) {
        throw new HeapExhaustedError(`all ${this.capacity} root handles are in use (raise maxRoots, or release handles)`);
      }
      i = this.highWater++;
    }
    this.slots[i] = granule;
    this.live++;
    return i;
  }

  remove(i: number): void {
    this.slots[i] = 0;
    this.free.push(i);
    this.live--;
  }

  get(i: number): number { return this.slots[i]; }
  set(i: number, granule: number): void { this.slots[i] = granule; }
}

/** A handle that keeps one object (or null) alive until released. */
export class RootHandle {
  #slot: number;
  constructor(
    private readonly table: RootTable,
    private readonly refs: RefOps,
    private readonly ensureOpen: () => void,
    slot: number,
  ) {
    this.#slot = slot;
  }

  get released(): boolean { return this.#slot < 0; }

  /** The rooted object's Ref, or 0. */
  get(): number {
    this.ensureOpen();
    if (this.#slot < 0) throw new RootReleasedError();
    return this.refs.encode(this.table.get(this.#slot));
  }

  /** Roots another object (or 0) with this handle. */
  set(ref: number): void {
    this.ensureOpen();
    if (this.#slot < 0) throw new RootReleasedError();
    this.table.set(this.#slot, this.refs.field(ref));
  }

  /** Drops the root; the object lives on only if something else reaches it. Releasing twice is an error. */
  release(): void {
    this.ensureOpen();
    if (this.#slot < 0) throw new RootReleasedError('the root handle was already released');
    this.table.remove(this.#slot);
    this.#slot = -1;
  }
}

