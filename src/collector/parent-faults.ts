/**
 * CycleStats.parentMinorFaults: the process's minor faults over a cycle,
 * less those of the heap's own threads, which are not the exceptions the
 * figure is about: the restore thread making pages writable
 * (native/huge_page_restore.cc) and the prefault thread faulting growth in
 * (native/growth_prefault.cc).
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
  /** The heap's own threads' so far (restore and prefault). */
  threads(): number;
}

export interface FaultMark {
  process: number;
  threads: number;
}

/** At the cycle's start. */
export function markFaults(read: FaultReaders): FaultMark {
  const process = read.process();
  return { process, threads: read.threads() };
}

/** At its end: the application's faults since `start`. */
export function faultsSince(start: FaultMark, read: FaultReaders): number {
  const threads = read.threads() - start.threads;
  return Math.max(0, read.process() - start.process - threads);
}
