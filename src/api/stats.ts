import type { StallBreakdown } from '../collector/stalls.js';

// The figures of a cycle and of a heap's life.

export type Trigger = 'explicit' | 'allocation' | 'safepoint';

export interface CycleStats {
  id: number;
  mode: 'fork' | 'stw';
  trigger: Trigger;
  /** True when a fork-mode heap ran this cycle stop-the-world (fork failed, or too many aborts). */
  fallback: boolean;
  /**
   * Who marked: a forked child, or the main thread ('in-process': stw
   * mode; a fallback; or a fork-mode cycle whose mark the heap expected to
   * take no longer than inProcessMarkUs or its recent fork pauses).
   */
  marker: 'child' | 'in-process';
  /** Mutator pause to start the cycle: the fork() call when a child marks; the whole marking when the main thread does (µs). */
  pauseUs: number;
  /** The fork() system call alone (µs; 0 in stw mode). */
  forkUs: number;
  /**
   * The rest of the fork pause that selective fork adds (µs): reading
   * /proc/self/maps and marking mappings MADV_DONTFORK before fork(), and
   * restoring them after. pauseUs = forkPrepareUs + forkUs + a few µs.
   */
  forkPrepareUs: number;
  /**
   * CPU time the forking thread spent in the pause's native call (µs): the
   * pause minus any time the thread waited for a CPU (on a loaded machine,
   * the figure that compares forks).
   */
  forkCpuUs: number;
  /** Whether this cycle forked selectively (HeapOptions.selectiveFork). */
  selectiveFork: boolean;
  childPid: number;
  /** Marking time (ms), measured in the child in fork mode. */
  markMs: number;
  /** From fork to the child's trailer, in the child (ms; 0 in stw mode). */
  childMs: number;
  /** The child's peak resident set (KiB, its own getrusage figure; 0 in stw mode). */
  childMaxRssKb: number;
  objectsMarked: number;
  /** The marked objects' own sizes, header included (the marker's unit; not slot bytes). */
  bytesMarked: number;
  markStackHighWater: number;
  overflowRescans: number;
  /**
   * Arena bytes the parent copied (copy-on-write) by writing while the child
   * lived, counted by the child from its pagemap at the end of its life
   * (0 in stw mode; -1 when the child could not read its pagemap).
   */
  cowBytes: number;
  /** Mark-bitmap bytes piped from the child (0 in stw mode). */
  bitmapBytes: number;
  /** Bytes read from the pipe in all (header, chunks, trailer). */
  streamBytes: number;
  objectsFreed: number;
  /** Slot bytes freed: popcount x slot size per span, whole spans for large objects (the unit of liveBytes). */
  bytesFreed: number;
  /** From the start of the sweep to its end (ms, wall time). */
  sweepMs: number;
  /** Time the main thread spent sweeping, background and lazy (ms). */
  mainThreadSweepMs: number;
  /** The longest stretch the main thread spent sweeping at once: a background slice or one allocation's lazy sweep (ms). */
  mainThreadSweepMaxMs: number;
  /** Spans swept by the main thread. */
  spansSwept: number;
  /** Time sweeper threads spent sweeping, summed over threads (ms). */
  workerSweepMs: number;
  /** Spans swept by sweeper threads. */
  workerSpansSwept: number;
  /** Per sweeper thread: spans swept and time spent. */
  workers: Array<{ threadId: number; spans: number; ms: number }>;
  heapBytesBefore: number;
  heapBytesAfter: number;
  /** Live bytes after the sweep, in slot bytes (see HeapStats.liveBytes). */
  liveBytesAfter: number;
  /** Bytes of empty spans given back to the OS (madvise). */
  bytesReturned: number;
  /** From the cycle's start to the end of its sweep (ms). */
  totalMs: number;
  /**
   * The main thread's waits on the collector during this cycle (µs): the
   * fork call, stream intake, synchronous reads, sweep start and end,
   * sweeping on the main thread (slices, lazy sweeping, synchronous
   * finishing), finalization callbacks (those run after the previous
   * cycle's figures). Total, the longest single one, and per kind.
   */
  stallUs: number;
  maxStallUs: number;
  stalls: StallBreakdown;
  /**
   * The parent process's minor page faults from the cycle's start to its end
   * (getrusage, all threads), less those this heap's own threads took: the
   * restore thread making pages writable again (HeapOptions.restoreWritable:
   * handled in the kernel without an exception, about 0.2-0.3 µs a page;
   * bytesMadeWritable says how much it did) and the prefault thread
   * faulting growth in (HeapOptions.prefaultGrowth). The counts are read
   * one after the other, so the figure may include a few of those threads'
   * faults, or miss up to 512 of the application's (a chunk in flight when
   * the cycle starts); never below 0 (src/collector/parent-faults.ts).
   */
  parentMinorFaults: number;
  /**
   * Huge pages (HeapOptions.restoreHugePages): 2 MiB ranges of the arena the
   * background thread made huge again (or found huge) between the previous
   * cycle's end and this cycle's fork, and the time it spent (ms, its own
   * thread, not the mutator's). 0 without huge pages.
   */
  hugeRangesRestored: number;
  hugeRestoreMs: number;
  /**
   * HeapOptions.restoreWritable: bytes of the arena and its allocation bits
   * the background thread made writable again (MADV_POPULATE_WRITE) between
   * the previous fork and this cycle's, and the time it spent (ms, its own
   * thread). 0 in stw mode, on huge pages, with the option off and before
   * Linux 5.14.
   */
  bytesMadeWritable: number;
  makeWritableMs: number;
}

export interface HeapStats {
  mode: 'fork' | 'stw';
  maxHeap: number;
  cycles: number;
  abortedCycles: number;
  fallbackCycles: number;
  /** Completed cycles marked on the main thread (CycleStats.marker 'in-process'): all in stw mode; in fork mode, fallbacks and the cycles inProcessMarkUs chose. */
  inProcessCycles: number;
  /** Bytes of spans holding objects. */
  heapBytes: number;
  /**
   * What live objects occupy: the slot (size class) of each small object,
   * the whole spans of each large one - not the objects' own sizes. The
   * sweep counts this without reading dead objects; allocation, the trigger
   * and freedBytesTotal use the same unit.
   */
  liveBytes: number;
  objects: number;
  roots: number;
  allocatedBytesTotal: number;
  freedBytesTotal: number;
  returnedBytesTotal: number;
  maxPauseUs: number;
  totalPauseUs: number;
  totalMarkMs: number;
  totalSweepMs: number;
  /** What a cycle is doing now. */
  phase: 'idle' | 'marking' | 'sweeping';
  /** Bytes allocated since the last cycle began, and the figure at which the next begins. */
  allocatedSinceCycle: number;
  nextTriggerBytes: number;
}
