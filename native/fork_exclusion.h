// Selective fork: keep the mappings the GC child never reads out of fork().
//
// fork() copies the page tables of every private mapping that has pages. In a
// Node process many of them belong to things the child never touches:
// Buffers and ArrayBuffers, other threads' stacks and malloc arenas, worker
// isolates, other heaps, V8's heap. Marking those MADV_DONTFORK just before
// fork() and MADV_DOFORK right after leaves them out of the child entirely;
// the pause then follows what the child reads, not the whole process.
//
// What is excluded: private, writable, anonymous mappings (no file, or
// [heap], [anon:...], [stack:tid]) of at least 1 MiB that no keep rule below
// claims. Smaller ones cost about as much to exclude as to copy (see
// kMinExcludedBytes in fork_exclusion.cc for the figures): V8's own heap,
// thousands of 256 KiB mappings, is copied; what fork() spends real time on
// is big mappings full of pages (Buffers, ArrayBuffers, malloc arenas,
// other heaps' arenas).
//
// What the child keeps, and why:
//
// | kept                                    | why                                          |
// |-----------------------------------------|----------------------------------------------|
// | every file-backed mapping               | code, .rodata, .data/.got of libc, ld.so and  |
// |                                         | the addon (vdso pointer, syscall wrappers)    |
// | an anonymous mapping that starts where  | a library's .bss tail (libc's, ld.so's, the   |
// | a file-backed mapping ends              | addon's): glibc state the wrappers read       |
// | [stack], [vdso], [vvar], shared maps    | not private anonymous: never candidates       |
// | the mapping holding a local variable    | the forking thread's stack (a worker's stack  |
// |                                         | is an anonymous mmap)                         |
// | the mappings holding pthread_self() and | the thread's TCB (stack canary, tid, rseq)    |
// | &errno                                  | and its static TLS block (errno)              |
// | the heap's own regions (KeepRange list) | arena, bitmaps, roots, descriptors, mark      |
// |                                         | stack, scratch: what the marker reads         |
// | every heap's span table (never touched) | already DONTFORK for life: restoring it with  |
// |                                         | DOFORK would undo that                        |
//
// Everything the child needs from malloc'd memory is copied onto the stack
// before fork (child.cc, ChildArgs); the addon is linked -z now, so no lazy
// PLT resolution (which walks malloc'd link maps) happens in the child.
//
// Only the parent runs this code. /proc/self/maps is read with raw read()
// into a buffer mapped once (grown when too small) and parsed in place.
// Excluded mappings with nothing but holes between them make one run, one
// madvise() call. The runs are kept for later forks while they stay valid,
// so most forks read nothing (fork_exclusion.cc, "The cache"): with 1.5 GiB
// of V8 objects the maps are ~6,500 lines, ~3 ms to read. Kept runs follow
// malloc's arenas as they grow (the main one's run to the program break;
// another thread's takes in its reservation); a mapping made since the
// read outside the runs' holes stays in the children until the next read.
//
// A process-wide mutex (forkLock) serialises the forks of every heap in the
// process (worker threads share this code), so one thread's exclusions
// never reach another thread's fork from this addon.
// A fork() by other code on another thread (a spawn on a worker thread,
// another addon) waits for the window too: a pthread_atfork handler takes
// forkLock before glibc's fork() copies anything (guardOtherForks). Without
// it such a child got the exclusions, the forking thread's own stack among
// them (a worker's stack is an anonymous mapping), and died of SIGSEGV
// before its exec: 26% of a worker's spawns during collections, in review.
// What it cannot cover: a fork that runs no atfork handlers (a raw clone,
// glibc's _Fork) by other code; HeapOptions.selectiveFork: false removes
// the window altogether.
//
// Known limitation: /proc/self/maps does not show VmFlags, so a candidate
// that was MADV_DONTFORK already (V8 marks some of its large pages so; RDMA
// buffers) is excluded like any other and made MADV_DOFORK by the restore:
// later forks by any code copy it. Reading the flags (/proc/self/smaps)
// costs about 7x the maps read (54 against 7.7 ms with 1.4 GiB of V8
// objects), too much for the pause. A process whose mappings must stay
// DONTFORK runs with selectiveFork: false.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace forkgc {

struct AddressRange {
  uintptr_t start;
  uintptr_t end;  // exclusive
};

struct ExclusionFigures {
  uint64_t readNs = 0;     // reading and parsing /proc/self/maps
  uint64_t adviseNs = 0;   // the MADV_DONTFORK calls
  uint32_t mappings = 0;   // lines in /proc/self/maps
  uint32_t excluded = 0;   // mappings excluded
  uint32_t calls = 0;      // madvise calls (merged runs)
  uint64_t excludedBytes = 0;
  uintptr_t probe = 0;     // an excluded, readable address (fault injection)
  bool ok = false;         // false: nothing was excluded (maps unreadable)
  bool fromCache = false;  // the runs of an earlier read were reused
};

// Serialises forks and heap creation across the threads of the process.
std::mutex& forkLock();

// forkLock held by this thread for a fork of ours or a heap's creation
// (other code's forks on other threads wait; see guardOtherForks).
class ForkWindow {
 public:
  ForkWindow();
  ~ForkWindow();
  ForkWindow(const ForkWindow&) = delete;
  ForkWindow& operator=(const ForkWindow&) = delete;

 private:
  std::lock_guard<std::mutex> lock_;
};

// A heap was made or unmapped: the next fork reads the maps again (its
// arena, or what was in its place, is in no cached run). Any thread.
void forgetForkExclusions();

// Registers (once per process) the atfork handlers that make every other
// fork() in the process wait for forkLock.
void guardOtherForks();

// Marks MADV_DONTFORK every excludable mapping that overlaps none of `keep`
// (the child's stack and TLS as windows around their addresses, the heap's
// regions, every span table). With apply false, only plans (fills figures
// and probe, touches nothing). Reuses the runs of the last read while they
// stay valid (see the cache in fork_exclusion.cc). Call
// restoreForkExclusions() after fork(), in the parent, whatever happened.
// Caller holds forkLock().
ExclusionFigures applyForkExclusions(const AddressRange* keep, size_t keepCount, bool apply);

// MADV_DOFORK on exactly the runs applyForkExclusions marked; `forkCpuNs`,
// the CPU time of the fork it surrounded, tells the cache whether the runs
// still pay. Returns the time it took (ns).
uint64_t restoreForkExclusions(uint64_t forkCpuNs);

}  // namespace forkgc
