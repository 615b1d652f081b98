// fork() and the GC child. startForkCycle() runs on the main thread at a
// safepoint; everything the child does lives in child.cc and is restricted to
// async-signal-safe work (docs/design.md, 'The child').
#pragma once
#include <sys/types.h>

#include <cstdint>

#include "arena.h"

namespace forkgc {

// Faults the child (or the fork itself) can be told to commit, for the tests
// of invariant 3 ("all or nothing"). Reached only through the heap's
// faultInjectionForTesting option.
enum Fault : int32_t {
  kFaultNone = 0,
  kFaultExitBeforeMark = 1,     // _exit(kExitFault) before marking
  kFaultHang = 2,               // never writes, never exits (watchdog test)
  kFaultTruncate = 3,           // header and half the chunks, then _exit(0)
  kFaultCorruptChunk = 4,       // flips a payload bit after its checksum
  kFaultWrongCycle = 5,         // header carries another cycle id
  kFaultZombieMark = 6,         // a consistent stream that marks a free granule
  kFaultExitNonZero = 7,        // a complete stream, then _exit(3)
  kFaultSignalAfterStream = 8,  // a complete stream, then SIGKILL to itself
  kFaultStallMidStream = 9,     // sleeps faultArg ms after half the chunks
  kFaultDelayBeforeMark = 10,   // sleeps faultArg ms before marking
  kFaultForkEagain = 11,        // fork() "fails" with EAGAIN (no child)
  kFaultForkEnomem = 12,        // fork() "fails" with ENOMEM (no child)
  kFaultBadTrailer = 13,        // trailer checksum off by one
  kFaultTouchExcluded = 14,     // reads a page selective fork excluded (SIGSEGV if it did)
  kFaultDelayBeforeExit = 15,   // a complete stream, then sleeps faultArg ms before closing it (exiting)
  kFaultSlowStream = 16,        // sleeps faultArg ms before each chunk but the first (a trickling stream)
};

struct ForkRequest {
  HeapMemory* heap;
  uint32_t cycleId;
  uint32_t topGranule;
  uint32_t rootCount;
  int32_t fault;
  int32_t faultArg;
  bool selective;    // exclude what the child never reads (fork_exclusion.h)
};

struct ForkResult {
  pid_t pid = -1;
  int readFd = -1;
  uint64_t forkNs = 0;  // the fork() call alone
  uint64_t forkStartNs = 0;  // CLOCK_MONOTONIC at the fork() call, when the child's life began (libuv's hrtime is the same clock)
  uint64_t cpuNs = 0;   // CPU time of this thread in startForkCycle (no preemption in it)
  int error = 0;        // errno when pid < 0
  // Selective fork: whether it was in force, and what it cost in the pause.
  bool selective = false;
  uint64_t prepareNs = 0;   // before fork(): maps read + MADV_DONTFORK
  uint64_t readMapsNs = 0;
  uint64_t adviseNs = 0;
  uint64_t restoreNs = 0;   // after fork(): MADV_DOFORK
  uint32_t mappings = 0;
  uint32_t excludedMappings = 0;
  uint32_t madviseCalls = 0;
  bool mapsCached = false;  // the maps were not read: the runs of an earlier read
  uint64_t excludedBytes = 0;
};

ForkResult startForkCycle(const ForkRequest& request);

}  // namespace forkgc
