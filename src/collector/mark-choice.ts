// Fork mode's choice of marker for each cycle: a child, or the main thread
// (the stop-the-world marker, the same code) when the heap expects that
// mark to be no longer than a fork's own pause. For a small live set the
// fork costs more than the marking it saves: quick gcbench's in-process
// marks took 0.5-0.7 ms a cycle against fork pauses of 0.7-2 ms, and the
// forked cycle's other costs (the child on the second CPU, copy-on-write
// faults, black allocation into fresh spans while it lives, the pipe, the
// stream) made fork mode 20-40% slower than stw mode in interleaved runs
// (docs/performance-log.md, "Small heaps marked in-process").
//
// The prediction is Go's pacer's assumption, a live set about as large as
// the last cycle found it: the marker's speed times those bytes.
//
// The speed is ns per marked byte, the lowest of the last eight
// in-process marks (the lowest, for the reason src/collector/sweep-speed.ts
// gives), or of the children's marks while there has been none in-process.
// A child's mark of a small live set is slower than the main thread's (cold
// caches, fixed costs; 0.35-0.44 ms against 0.03-0.11 for 72 KB), so it errs
// towards forking, and a heap that forks learns no better: while there is
// no in-process sample, one mark that the children's speed puts within
// PROBE_FACTOR allowances is tried in-process (a pause at most about as long
// as the heap's first fork, once), and its own speed decides from then on.
// The same probe comes again after REPROBE_AFTER forks in a row: an
// in-process mark preempted on a loaded machine (4.9 ms for a mark of
// 0.7, quick binary-trees beside two CPU hogs) replaces the in-process
// samples with its own (below), and with no in-process mark after it
// nothing would ever replace them: that heap forked its 13 remaining
// cycles, each pause 1.3-9 ms where its marks took 0.7. A probe that is
// slow again puts the next one REPROBE_AFTER forks off; so the cost of
// trying is at most one pause of about PROBE_FACTOR allowances in
// REPROBE_AFTER + 1 cycles.
//
// The allowance is the option's budget (inProcessMarkUs), or the median of
// the heap's recent fork pauses if that is longer: a mark no longer than the
// fork it replaces usually takes (the median, not the shortest, which is the
// luckiest of a noisy few: quick binary-trees' in-process marks took
// 1.15-1.26 ms and its forks 1.2-1.8). The heap's first fork is no sample:
// it reads the process's maps and meets cold caches (2.6-10.8 ms in the
// quick runs where later forks took 1-2), and a heap that then marked
// in-process would keep it as its allowance for good.
//
// What the prediction does not see is a live set that grew since the last
// cycle: by at most what was allocated since, which for a cycle the pacer
// started on time is under its goal (gcPercent% of the live bytes, at least
// minTriggerBytes). A cycle that starts late, past LATE_FACTOR goals (a
// program that allocated far past its trigger between safepoints, or called
// collect() after that much), forks; an on-time one may mark up to a goal's
// worth more than predicted, once: its measured mark is the next cycle's
// prediction, and an in-process mark that runs over twice its allowance
// replaces every in-process sample with its own (the machine is slower than
// the samples say). Two rules tried and dropped: the last cycle's growth
// added again (binary-trees' live set is the same at every cycle, but the
// garbage a cycle meets mid-tree is not, and the term made the choice
// flip), and a bound on the mark over everything allocated since (eight
// allowances): at binary-trees' 2 MiB live set and 16 MiB trigger it was
// nine predicted marks, so its cycles forked or not by a few percent of
// speed.
//
// | speed        | ns per marked byte, in-process marks (ring)                 |
// | childSpeed   | ns per marked byte, children's marks (ring)                 |
// | forkPause    | µs of one fork pause, the first fork's left out (ring; median) |

import { RecentSamples } from './recent-samples.js';

/** A cycle that starts after this many pacer goals of allocation since the last one forks. */
export const LATE_FACTOR = 2;
/** A probe (the first in-process mark, on the children's speed, and each try after REPROBE_AFTER forks) may be predicted at this many allowances. */
export const PROBE_FACTOR = 2;
/** After this many forks in a row, an in-process mark is tried again (as the first probe). */
export const REPROBE_AFTER = 8;

export class MarkChoice {
  private readonly speed = new RecentSamples();
  private readonly childSpeed = new RecentSamples();
  private readonly forkPause = new RecentSamples();
  private forks = 0;
  private probed = false;
  /** Cycles marked by a child since the last in-process mark (or since the heap began). */
  private forksInRow = 0;
  private lastBytesMarked = -1;

  /** budgetUs: inProcessMarkUs (0: never mark in-process). */
  constructor(private readonly budgetUs: number) {}

  /** ns per marked byte the prediction uses (Infinity before any mark). */
  get nsPerByte(): number {
    const own = this.speed.lowest;
    return own !== Infinity ? own : this.childSpeed.lowest;
  }

  /** The longest in-process mark the next cycle may choose, µs. */
  get allowanceUs(): number {
    const pause = this.forkPause.median;
    return Math.max(this.budgetUs, pause === Infinity ? 0 : pause);
  }

  /**
   * Whether the cycle starting now marks in-process, as the µs its mark is
   * allowed (0: it forks): the mark over the last cycle's marked bytes
   * within the allowance (or, for a probe, PROBE_FACTOR of it), and
   * `allocatedSinceCycle` within LATE_FACTOR of the pacer's `goalBytes`.
   */
  choose(allocatedSinceCycle: number, goalBytes: number): number {
    const allowanceUs = this.wouldChoose(allocatedSinceCycle, goalBytes);
    if (allowanceUs > 0) {
      if (this.speed.lowest === Infinity) this.probed = true;
      this.forksInRow = 0;
    }
    return allowanceUs;
  }

  /** What choose() would answer now, without using up the probe. */
  wouldChoose(allocatedSinceCycle: number, goalBytes: number): number {
    const expected = this.lastBytesMarked;
    if (this.budgetUs === 0 || expected < 0) return 0;
    if (allocatedSinceCycle > LATE_FACTOR * goalBytes) return 0;
    const first = this.speed.lowest === Infinity;
    if (first && this.probed) return 0;
    const again = !first && this.forksInRow >= REPROBE_AFTER;
    // A probe again predicts with the faster of the two speeds: the
    // in-process samples are the ones in doubt.
    const ns = again ? Math.min(this.speed.lowest, this.childSpeed.lowest) : this.nsPerByte;
    if (ns === Infinity) return 0;
    const probe = first || again;
    const allowanceUs = this.allowanceUs * (probe ? PROBE_FACTOR : 1);
    return ns * expected > allowanceUs * 1000 ? 0 : allowanceUs;
  }

  /** A fork's pause, µs (the call's wall time). The heap's first is not a sample. */
  forked(pauseUs: number): void {
    if (this.forks++ > 0) this.forkPause.add(pauseUs);
  }

  /**
   * A completed cycle's mark: `ns` over `bytes` marked, by a child or in
   * process. `allowanceUs` is what an in-process mark chosen by choose()
   * was allowed (0 for any other): one that ran over twice it replaces
   * every in-process sample.
   */
  marked(ns: number, bytes: number, inProcess: boolean, allowanceUs = 0): void {
    this.lastBytesMarked = bytes;
    this.forksInRow = inProcess ? 0 : this.forksInRow + 1;
    if (bytes <= 0) return;
    const perByte = ns / bytes;
    if (!inProcess) {
      this.childSpeed.add(perByte);
    } else if (allowanceUs > 0 && ns > 2 * allowanceUs * 1000) {
      this.speed.fill(Math.max(perByte, this.nsPerByte * 2));
    } else {
      this.speed.add(perByte);
    }
  }
}
