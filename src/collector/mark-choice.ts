// Fork mode's choice of marker for each cycle: a child, or the main thread
// (the stop-the-world marker, the same code) when the heap expects that
// mark to be no longer than a fork's own pause. For a small live set the
// fork costs more than the marking it saves: quick gcbench's in-process
// marks took 0.67 ms a cycle against fork pauses of 0.7-1.9 ms, and the
// forked cycle's other costs (the child on the second CPU, copy-on-write
// faults, black allocation into fresh spans while it lives, the pipe, the
// stream) made fork mode 20-40% slower than stw mode in interleaved runs
// (docs/performance-log.md, "Small heaps marked in-process").
//
// The prediction is Go's pacer's assumption, a live set about as large as
// the last cycle found it: the marker's speed (ns per marked byte, the
// lowest of the last SAMPLES marks, in-process or in a child; the lowest,
// for the reason src/collector/sweep-speed.ts gives) times the bytes the
// last completed cycle marked. It must be within the allowance: the
// option's budget (inProcessMarkUs), or the lowest recent fork pause if
// that is longer (a mark no longer than the fork it replaces). And since
// what was allocated since the last cycle may all have survived, the mark
// over that much more must be within WORST_CASE_FACTOR allowances: a
// cycle that starts late (a program that allocated far past the trigger
// between safepoints) forks. An in-process mark that runs over twice its
// allowance replaces every speed sample with its own (the machine is
// slower than the samples say).
//
// | speed[i]     | ns per marked byte of one measured mark (ring)     |
// | forkPause[i] | µs of one fork pause (ring; +Infinity: none yet)   |

const SAMPLES = 8;
/** The mark over everything allocated since the last cycle may take this many allowances at most. */
export const WORST_CASE_FACTOR = 8;

export class MarkChoice {
  private readonly speed = new Float64Array(SAMPLES).fill(Infinity);
  private nextSpeed = 0;
  private readonly forkPause = new Float64Array(SAMPLES).fill(Infinity);
  private nextPause = 0;
  private lastBytesMarked = -1;

  /** budgetUs: inProcessMarkUs (0: never mark in-process). */
  constructor(private readonly budgetUs: number) {}

  /** ns per marked byte, the lowest recent sample (Infinity before any mark). */
  get nsPerByte(): number {
    let m = this.speed[0];
    for (let i = 1; i < SAMPLES; i++) if (this.speed[i] < m) m = this.speed[i];
    return m;
  }

  /** The longest in-process mark the next cycle may choose, µs. */
  get allowanceUs(): number {
    let pause = this.forkPause[0];
    for (let i = 1; i < SAMPLES; i++) if (this.forkPause[i] < pause) pause = this.forkPause[i];
    return Math.max(this.budgetUs, pause === Infinity ? 0 : pause);
  }

  /**
   * Whether the cycle starting now marks in-process: the predicted mark,
   * over the bytes the last cycle marked, within the allowance, and over
   * those plus `allocatedSinceCycle` within WORST_CASE_FACTOR of it.
   */
  inProcess(allocatedSinceCycle: number): boolean {
    if (this.budgetUs === 0 || this.lastBytesMarked < 0) return false;
    const ns = this.nsPerByte;
    if (ns === Infinity) return false;
    const allowanceNs = this.allowanceUs * 1000;
    return ns * this.lastBytesMarked <= allowanceNs &&
      ns * (this.lastBytesMarked + Math.max(0, allocatedSinceCycle)) <= WORST_CASE_FACTOR * allowanceNs;
  }

  /** A fork's pause, µs (the call's wall time). */
  forked(pauseUs: number): void {
    this.forkPause[this.nextPause] = pauseUs;
    this.nextPause = (this.nextPause + 1) % SAMPLES;
  }

  /**
   * A completed cycle's mark: `ns` over `bytes` marked, in a child or in
   * process. `allowanceUs` is what an in-process mark chosen by inProcess()
   * was allowed (0 for any other): one that ran over twice it replaces
   * every sample.
   */
  marked(ns: number, bytes: number, allowanceUs = 0): void {
    this.lastBytesMarked = bytes;
    if (bytes <= 0) return;
    const perByte = ns / bytes;
    if (allowanceUs > 0 && ns > 2 * allowanceUs * 1000) {
      this.speed.fill(Math.max(perByte, this.nsPerByte * 2));
      return;
    }
    this.speed[this.nextSpeed] = perByte;
    this.nextSpeed = (this.nextSpeed + 1) % SAMPLES;
  }
}
