// The last few measurements of a figure, kept in a ring, for the decisions
// that predict from them: the inline sweep's speed (sweep-speed.ts) and
// fork mode's choice of marker (mark-choice.ts). Both use the lowest recent
// sample (on a shared machine a preempted measurement is too long, never
// too short); the choice's fork pauses use the median.
//
// | samples[i] | one measurement (ring, oldest overwritten; `initial` where none was taken) |

const SAMPLES = 8;

export class RecentSamples {
  private readonly samples: Float64Array;
  private next = 0;

  /** `initial` stands for the samples not taken yet (Infinity: none counts). */
  constructor(initial = Infinity) {
    this.samples = new Float64Array(SAMPLES).fill(initial);
  }

  get lowest(): number {
    let m = this.samples[0];
    for (let i = 1; i < SAMPLES; i++) if (this.samples[i] < m) m = this.samples[i];
    return m;
  }

  /** The median of the samples that are not Infinity (the lower of the middle two); Infinity if none. */
  get median(): number {
    const taken = Array.from(this.samples).filter((v) => v !== Infinity).sort((a, b) => a - b);
    return taken.length ? taken[(taken.length - 1) >> 1] : Infinity;
  }

  add(v: number): void {
    this.samples[this.next] = v;
    this.next = (this.next + 1) % SAMPLES;
  }

  /** Every sample is `v` from now on. */
  fill(v: number): void {
    this.samples.fill(v);
  }
}
