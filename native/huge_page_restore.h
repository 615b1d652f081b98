// Putting the heap's huge pages back after a cycle (huge_page_restore.cc says why).
#pragma once
#include <cstddef>
#include <cstdint>

namespace forkgc {

struct HeapMemory;

struct HugePageRestoreFigures {
  uint64_t rangesCollapsed = 0;  // 2 MiB ranges MADV_COLLAPSE made huge again
  uint64_t rangesFailed = 0;     // ranges the kernel refused (no huge page free, pinned pages...)
  uint64_t ns = 0;               // time spent in MADV_COLLAPSE, on the restore thread
};

// Starts (or restarts from the beginning) collapsing the 2 MiB ranges of the
// arena whose byte in `wanted` is non-zero (range i = bytes [i*2 MiB, (i+1)*2 MiB)),
// on the heap's restore thread. The caller leaves out ranges it gave back to
// the OS: collapsing one would fill it again. Only for a heap with huge pages,
// only when no child shares the arena (after the child was reaped). Returns
// false when the kernel has no MADV_COLLAPSE (before Linux 6.1).
bool restoreHugePages(HeapMemory* heap, const uint8_t* wanted, size_t count);

// Called right before fork(): the restore thread stops before its next range,
// and this waits for a range it has already taken (picked but not yet in
// madvise, it would otherwise be collapsed after the fork), so that nothing
// is collapsed while a child shares the pages.
void holdHugePageRestore(HeapMemory* heap);

// Around a fork that shares every heap's arena with its child (selective fork
// off, or not applied): no heap's thread collapses anything from before the
// fork (a range in flight is waited for) until releaseEvery... is called for
// that child, once it is reaped (child_registry.cc) or the fork failed.
// Counted: several such children may live at once.
void holdEveryHugePageRestore();
void releaseEveryHugePageRestore();

// Totals so far (any thread).
HugePageRestoreFigures hugePageRestoreFigures(HeapMemory* heap);

// Stops and joins the restore thread; before the arena is unmapped.
void stopHugePageRestore(HeapMemory* heap);

}  // namespace forkgc
