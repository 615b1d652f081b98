// Heap growth faulted in ahead of the allocator (growth_prefault.cc says why).
#pragma once
#include <cstddef>
#include <cstdint>

namespace forkgc {

struct HeapMemory;

struct GrowthPrefaultFigures {
  uint64_t bytes = 0;     // arena bytes faulted in (pages already there cost a look)
  uint64_t ns = 0;        // time spent faulting them in, on the prefault thread
  uint64_t calls = 0;
  uint64_t failures = 0;  // calls that failed (memory short: the allocator faults the rest itself)
  uint64_t faults = 0;    // the minor faults they took (this thread's)
  bool working = false;   // a chunk is being faulted in now (read without stopping the thread, unlike quiesce)
};

// Asks the heap's prefault thread (made on first use) to fault in arena bytes
// [from, to), in chunks, replacing what it was asked before. Offsets are
// clamped to the arena and narrowed at `from` (the top), widened at `to`, to
// whole chunks. Returns false when the
// kernel cannot or the thread cannot start.
bool prefaultGrowth(HeapMemory* heap, uint64_t from, uint64_t to);

// Stops the heap's thread before its next chunk, without waiting; returns
// whether a chunk is in flight now (a fork would wait for it). Resumed by
// prefaultResume.
bool prefaultQuiesce(HeapMemory* heap);
void prefaultResume(HeapMemory* heap);

// Around every fork of the addon's: fork() takes the mmap lock for writing,
// and a chunk being faulted in holds it for reading, so the fork waits for
// it. holdEvery... stops every heap's thread before its next chunk and waits
// for a chunk in flight; releaseEvery... lets them go on. Counted: a fork
// that shares every heap's arena with its child (selective fork off) keeps
// its hold until the child is reaped (child_registry.cc), so that no page is
// faulted in where that child would share it.
void holdEveryGrowthPrefault();
void releaseEveryGrowthPrefault();

// A fork of this heap is about to share arena bytes [0, top) with its
// child: the thread skips what it was asked below `top` (it may be behind
// the allocator there), so that it writes no page the child shares. Called
// with every thread held (holdEveryGrowthPrefault).
void prefaultSkipBelow(HeapMemory* heap, uint64_t top);

// Tests only: the thread sleeps `ns` after taking each chunk (a thread
// that falls behind the allocator); 0 turns it off.
void setGrowthPrefaultDelayForTesting(HeapMemory* heap, uint64_t ns);

// Totals so far (any thread).
GrowthPrefaultFigures growthPrefaultFigures(HeapMemory* heap);

// Stops and joins the heap's prefault thread; before the arena is unmapped.
void stopGrowthPrefault(HeapMemory* heap);

}  // namespace forkgc
