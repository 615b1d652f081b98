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
  uint64_t bytesMadeWritable = 0;  // arena and allocation-bitmap bytes MADV_POPULATE_WRITE made writable
  uint64_t writableNs = 0;         // time spent in MADV_POPULATE_WRITE
  uint64_t writableFaults = 0;     // the minor faults that took (this thread's, in the kernel: no exception)
  bool working = false;            // a piece of work (a range, or 2 MiB to make writable) is in progress now
};

// Starts (or restarts from the beginning), on the heap's restore thread,
// undoing what a fork left in the parent's mappings, once the child is
// reaped (only then: no child may share the arena; the collector calls it
// when the cycle's sweep is over, src/collector/collector.ts says why):
//   - the pages of the spans whose byte in `writable` is non-zero (span i =
//     arena bytes [i*64 KiB, (i+1)*64 KiB)), and the allocation bits that
//     cover spans [0, spanCount), are made writable again (MADV_POPULATE_WRITE,
//     Linux 5.14): fork() write-protected them, and each first write would
//     otherwise fault on the application's thread;
//   - the 2 MiB ranges whose byte in `wanted` is non-zero (range i = bytes
//     [i*2 MiB, (i+1)*2 MiB)) are merged back into huge pages (MADV_COLLAPSE,
//     Linux 6.1; a heap with huge pages only).
// The caller leaves out ranges it gave back to the OS (a merge would fill
// them again) and, to spare the thread the look, such spans (only pages
// still mapped are made writable, so a span released since stays unbacked).
// Returns false when the kernel can do neither.
bool restorePages(HeapMemory* heap, const uint8_t* writable, size_t spanCount, const uint8_t* wanted, size_t count);

// Opens /proc/self/pagemap for the restore thread, once per process (it
// tells which pages to make writable); called when a heap is made, so the
// descriptor exists from the first heap on. Without it the thread uses
// mincore().
void openPagemap();

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

// A cycle is about to start: the thread takes no new piece of work until
// hugePageRestoreResume; returns whether a piece is in progress now (a fork
// would wait for it: the caller puts the fork off). Main thread.
bool hugePageRestoreQuiesce(HeapMemory* heap);
void hugePageRestoreResume(HeapMemory* heap);

// Tests only: the thread sleeps `ns` after taking each piece of work, before
// its madvise (a range that takes that long); 0 turns it off.
void setHugePageRestoreDelayForTesting(HeapMemory* heap, uint64_t ns);

// Totals so far (any thread).
HugePageRestoreFigures hugePageRestoreFigures(HeapMemory* heap);

// Stops and joins the restore thread; before the arena is unmapped.
void stopHugePageRestore(HeapMemory* heap);

}  // namespace forkgc
