/**
 * CycleStats.parentMinorFaults: the process's minor faults over a cycle,
 * less those of the heap's restore thread making pages writable
 * (native/huge_page_restore.cc), which are not the exceptions the figure is
 * about.
 *
 * The two counts cannot be read at one instant, and the thread may work
 * between the reads. So the process's count is read first at the start and
 * last at the end, the thread's in between: a fault the thread takes between
 * two reads is then counted as the application's (the figure errs high),
 * never subtracted without having been added (it would err low, below 0
 * even: -13k was seen with the reads the other way round). The thread's
 * count also grows a 2 MiB chunk at a time, so a chunk in flight at the
 * start can make the figure up to 512 low; it is never below 0.
 */

export interface FaultReaders {
  /** The process's minor faults so far (all threads). */
  process(): number;
  /** The restore thread's so far. */
  restore(): number;
}

export interface FaultMark {
  process: number;
  restore: number;
}

/** At the cycle's start. */
export function markFaults(read: FaultReaders): FaultMark {
  const process = read.process();
  return { process, restore: read.restore() };
}

/** At its end: the application's faults since `start`. */
export function faultsSince(start: FaultMark, read: FaultReaders): number {
  const restore = read.restore() - start.restore;
  return Math.max(0, read.process() - start.process - restore);
}
