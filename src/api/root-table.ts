// The root table: a u32 slot per handle in native memory, which the child
// reads at fork (slots [0, highWater)). An empty slot holds 0. Handles are
// small objects on the mutator side; the slot is the truth.
import { HeapExhaustedError } from './errors.js';

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
