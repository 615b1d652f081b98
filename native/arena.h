// The platform layer: the private anonymous mappings of one heap (see
// layout.h for the regions) and a process-wide registry of heaps, so that a
// worker thread's copy of the addon can attach to a heap the main thread made.
#pragma once
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace forkgc {

struct HugePageRestorer;  // huge_page_restore.cc
struct GrowthPrefaulter;  // growth_prefault.cc

struct Region {
  uint8_t* base = nullptr;
  size_t bytes = 0;
};

struct HeapMemory {
  int id = 0;
  Region arena;        // granules; span 0 reserved
  Region allocBits;    // 1 bit per granule
  Region markBits;     // 1 bit per granule
  Region markStack;    // u32 entries
  Region descriptors;  // kMaxTypes * kDescriptorWords u32
  Region roots;        // u32 per root handle
  Region spans;        // kSpanWords i32 per span
  Region scratch;      // the child's scratch buffer (pagemap reads)
  bool hugePages = false;
  bool wipeOnFork = false;  // the kernel zeroes markBits/markStack in the child
  // The CPUs the thread that made the heap could run on, then (createHeap):
  // the child may run on them as well as on the forking thread's own, so a
  // main thread pinned to one CPU later does not pin the marker beside it
  // (child.cc, cpusAwayFromHere).
  cpu_set_t creatorCpus;
  bool creatorCpusKnown = false;
  HugePageRestorer* hugePageRestorer = nullptr;  // made on first use, main thread only
  GrowthPrefaulter* growthPrefaulter = nullptr;  // made on first use and stopped by the owner thread, under growth_prefault.cc's lock
  std::atomic<int> attachments{0};
  std::atomic<bool> destroyed{false};

  uint32_t arenaGranules() const { return uint32_t(arena.bytes >> 4); }
  uint32_t spanCount() const;
  uint32_t markStackEntries() const { return uint32_t(markStack.bytes / 4); }
  uint32_t rootSlots() const { return uint32_t(roots.bytes / 4); }
};

constexpr size_t kScratchBytes = 64 * 1024;

struct HeapOptions {
  uint64_t arenaBytes;
  bool hugePages;
  uint32_t markStackEntries;
  uint32_t maxRoots;
};

// Returns nullptr and sets errno when a mapping fails.
HeapMemory* createHeapMemory(const HeapOptions& options);

// Attach takes a reference to a registered heap (nullptr once destroyed);
// detach drops it. The mappings go when the heap is destroyed and the last
// attachment is gone, so no thread ever touches unmapped memory.
HeapMemory* attachHeapMemory(int id);
void detachHeapMemory(HeapMemory* heap);
void destroyHeapMemory(HeapMemory* heap);

// Gives [offset, offset+bytes) of the arena back to the OS. The pages read as
// zero afterwards. Returns 0 or an errno.
int releaseArenaRange(HeapMemory* heap, uint64_t offset, uint64_t bytes);

size_t systemPageSize();
// Lets a thread of the heap's run on the CPUs the heap's creator could
// (creatorCpus) as well as on its own; nothing when they are unknown.
void widenToCreatorCpus(const HeapMemory& heap, pthread_t thread);
constexpr size_t kHugePageBytes = 2u << 20;

}  // namespace forkgc

namespace forkgc {
// The heap with this id, for the thread that owns it (no reference taken).
HeapMemory* lookupHeapMemory(int id, bool includeDestroyed = false);

// Every registered heap's span table (DONTFORK for life), up to `max` of
// them into `out`; returns how many heaps there are.
size_t listSpanTables(Region* out, size_t max);
}  // namespace forkgc
