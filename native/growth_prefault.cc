// Heap growth, faulted in ahead of the allocator by a thread of the heap's.
//
// The first write to a page the process never had costs a page fault that
// zeroes it, and on a virtual machine often a fault of the host's as well:
// measured on the project's 2-core VM (a Firecracker guest that hands every
// freed 2 MiB block back to its host at once), 0.25-5.9 ms a fresh 2 MiB
// huge page and 1.4-1.8 us a fresh 4 KiB page, where zeroing 2 MiB of
// cached memory takes 0.1 ms (bench/page-costs.c; docs/performance-log.md).
// The allocator makes that first write on the application's thread when it
// takes a span above the heap's top (a header, a zeroed word), so a heap
// that grows pays for it in mutator time: a fill of 576 MiB spent about a
// third of its time so. V8 faults its own young generation once and reuses
// it.
//
// So when the heap's top grows, the heap asks (prefaultGrowth) for the
// arena just above it to be faulted in by a thread of its own, a window
// ahead of the allocator (src/memory/growth-prefault.ts says how far). The
// allocator finds the pages there and takes no fault; where the thread is
// behind, the allocator faults the page itself as before (both may fault
// the same page: the kernel serialises them), so nothing waits for the
// thread. The memory is what the heap would have faulted in a moment
// later; what it costs is the window above the top that is never used when
// the heap stops growing (resident, zero).
//
// How a page is faulted in. MADV_POPULATE_WRITE (Linux 5.14) holds the
// mmap lock for reading through its faults, and on this VM a fresh huge
// page takes milliseconds: V8's own mmap/mprotect calls on the main thread
// (which need the lock for writing) waited behind it, and the application
// stalled up to 76-97 ms in a fill of 576 MiB (docs/performance-log.md).
// A write fault from a plain access takes only the arena mapping's own
// lock (per-VMA locking, Linux 6.4), which nothing else on the main thread
// needs. So on x86-64 the thread touches each page with an atomic OR of 0
// (lock or): a write access, so the fault maps a page of the process's own,
// and atomic, so a byte the application wrote there meanwhile (the
// allocator may take the span at any moment) is left as it was. Elsewhere
// MADV_POPULATE_WRITE, which touches nothing.
//
// Forks. A page above the top that the child shared would be copied at the
// parent's first write while the child lives (or fault, write-protected,
// after): worse than the fresh fault saved. So a selective fork leaves the
// arena above the top out of the child (child.cc, MADV_DONTFORK around
// fork()); the child marks only below the top. And fork() waits for a fault
// in flight in the arena (it locks every mapping it copies), so every fork
// holds every heap's thread before its next chunk and waits for a chunk in
// flight: up to one fresh huge page, milliseconds here. The heap avoids
// that wait where it can: a cycle the pacer starts is put off, from one
// safepoint (or turn of the event loop) to the next, while a chunk is in
// flight, the thread stopped from taking another (prefaultQuiesce; the
// collector's fork lets it go on). A fork that left nothing out (selective
// fork off) keeps the threads held until its child is reaped. Below the
// top the child shares every page, so the thread never goes there: it is
// asked from the first whole chunk above the top, and each fork moves a
// thread that fell behind the allocator up past the fork's top
// (prefaultSkipBelow; before, such a thread went on after the fork and its
// OR of 0 copied the pages it touched there: 337 with no write of the
// application's, test/growth-prefault.test.ts).

#include "growth_prefault.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "arena.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace forkgc {

struct GrowthPrefaulter {
  pthread_t thread;
  uint8_t* base = nullptr;
  size_t chunk = 0;   // bytes per call: one huge page, or 256 KiB of small pages
  size_t cursor = 0;  // arena offsets [cursor, end) are still to fault in
  size_t end = 0;
  bool inFlight = false;
  bool quiesced = false;  // take no new chunk (a cycle is about to fork)
  bool stopping = false;
  uint64_t chunkDelayNsForTesting = 0;  // sleep this long after taking each chunk
  GrowthPrefaultFigures figures;
};

namespace {

// One lock for every heap's thread: a fork's hold covers them all at once.
// Never destroyed: a process that ends with process.exit() tears no heap
// down, so its threads still wait on `changed` when exit() runs the static
// destructors, and destroying a condition variable that has a waiter blocks
// (glibc): the process never ended (test/failure-isolation.test.ts).
struct Gate {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<GrowthPrefaulter*> prefaulters;
  int holds = 0;     // forks in progress, and children sharing every arena
  int inFlight = 0;  // chunks being faulted in, all heaps
  // The kernel cannot fault pages in this way (EINVAL: MADV_POPULATE_WRITE before 5.14).
  bool unsupported = false;
};
Gate& gate = *new Gate();

uint64_t nowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

// A small page chunk: about 0.1 ms of fresh 4 KiB pages here, so a fork
// waits no longer for it than for a huge page on an ordinary machine.
constexpr size_t kSmallPageChunkBytes = 256u << 10;

// The first chunk boundary at or above `offset`, within the arena.
uint64_t chunkAtOrAbove(const GrowthPrefaulter* p, uint64_t offset, uint64_t arenaBytes) {
  return std::min<uint64_t>((std::min<uint64_t>(offset, arenaBytes) + p->chunk - 1) / p->chunk * p->chunk, arenaBytes);
}

// Faults [at, at + bytes) in for writing without changing a byte of it
// (the top of this file says why so); 0 or an errno.
int faultIn(uint8_t* at, size_t bytes) {
#if defined(__x86_64__)
  const size_t page = systemPageSize();
  for (size_t o = 0; o < bytes; o += page) {
    uint8_t* p = at + o;
    asm volatile("lock orb $0, %0" : "+m"(*p) : : "memory");
  }
  return 0;
#else
  return madvise(at, bytes, MADV_POPULATE_WRITE) == 0 ? 0 : errno;
#endif
}

void* run(void* arg) {
  GrowthPrefaulter* p = static_cast<GrowthPrefaulter*>(arg);
  // Named, so that top, perf and /proc/PID/task/*/comm tell it from V8's threads.
  pthread_setname_np(pthread_self(), "forkgc-prefault");
  std::unique_lock<std::mutex> lock(gate.mutex);
  for (;;) {
    gate.changed.wait(lock, [p] { return p->stopping || (gate.holds == 0 && !p->quiesced && !gate.unsupported && p->cursor < p->end); });
    if (p->stopping) return nullptr;
    uint8_t* at = p->base + p->cursor;
    size_t bytes = std::min(p->chunk, p->end - p->cursor);
    p->cursor += bytes;
    p->inFlight = true;
    gate.inFlight++;
    const uint64_t delayNs = p->chunkDelayNsForTesting;
    lock.unlock();
    if (delayNs > 0) {
      timespec d{time_t(delayNs / 1000000000u), long(delayNs % 1000000000u)};
      while (nanosleep(&d, &d) != 0 && errno == EINTR) {}
    }
    uint64_t t0 = nowNs();
    // Its faults are counted apart, so that the heap can tell the
    // application's faults from these (src/collector/parent-faults.ts).
    rusage before, after;
    bool counted = getrusage(RUSAGE_THREAD, &before) == 0;
    int error = faultIn(at, bytes);
    int rc = error == 0 ? 0 : -1;
    uint64_t spent = nowNs() - t0;
    uint64_t faults = counted && getrusage(RUSAGE_THREAD, &after) == 0 ? uint64_t(after.ru_minflt - before.ru_minflt) : 0;
    lock.lock();
    p->inFlight = false;
    gate.inFlight--;
    p->figures.calls++;
    p->figures.ns += spent;
    p->figures.faults += faults;
    if (rc == 0) {
      p->figures.bytes += bytes;
    } else {
      // ENOMEM or EFAULT (memory short, a limit): the allocator faults the
      // rest itself; stop asking until the heap asks again.
      p->figures.failures++;
      p->cursor = p->end;
      if (error == EINVAL) gate.unsupported = true;
    }
    gate.changed.notify_all();
  }
}

}  // namespace

bool prefaultGrowth(HeapMemory* h, uint64_t from, uint64_t to) {
  std::unique_lock<std::mutex> lock(gate.mutex);
  if (gate.unsupported || h->destroyed) return false;
  GrowthPrefaulter* p = h->growthPrefaulter;
  if (!p) {
    p = new GrowthPrefaulter();
    p->base = h->arena.base;
    p->chunk = h->hugePages ? kHugePageBytes : std::max(kSmallPageChunkBytes, systemPageSize());
    // pthread_create, not std::thread: built without exceptions, a thread
    // that cannot start (EAGAIN under a pids limit) would abort the process.
    // Without the thread the allocator faults its pages itself, as before.
    if (pthread_create(&p->thread, nullptr, run, p) != 0) {
      delete p;
      return false;
    }
    // It may run where the heap's creator could, not only on the CPUs of
    // the thread that grew the heap (a main thread pinned to one CPU would
    // otherwise have it fault pages in the mutator's time).
    widenToCreatorCpus(*h, p->thread);
    h->growthPrefaulter = p;
    gate.prefaulters.push_back(p);
  }
  const uint64_t arenaBytes = h->arena.bytes;
  // From the first whole chunk at or above `from` (the top): never a page
  // below it, which the allocator has written already, and which a fork may
  // share with its child (an atomic OR of 0 there is a write: a copy while
  // the child lives, a write-protect fault after). The top's own huge page
  // is resident already; of small pages, up to a chunk's worth above the top
  // are left to the allocator.
  from = chunkAtOrAbove(p, from, arenaBytes);
  to = chunkAtOrAbove(p, to, arenaBytes);
  p->cursor = from;
  p->end = std::max(from, to);
  gate.changed.notify_all();
  return true;
}

bool prefaultQuiesce(HeapMemory* h) {
  std::lock_guard<std::mutex> lock(gate.mutex);
  GrowthPrefaulter* p = h->growthPrefaulter;
  if (!p) return false;
  p->quiesced = true;
  return p->inFlight;
}

void prefaultResume(HeapMemory* h) {
  std::lock_guard<std::mutex> lock(gate.mutex);
  GrowthPrefaulter* p = h->growthPrefaulter;
  if (!p || !p->quiesced) return;
  p->quiesced = false;
  gate.changed.notify_all();
}

void prefaultSkipBelow(HeapMemory* h, uint64_t top) {
  std::lock_guard<std::mutex> lock(gate.mutex);
  GrowthPrefaulter* p = h->growthPrefaulter;
  if (!p) return;
  const uint64_t from = chunkAtOrAbove(p, top, h->arena.bytes);
  if (p->cursor < from) p->cursor = std::min(from, p->end);
}

void setGrowthPrefaultDelayForTesting(HeapMemory* h, uint64_t ns) {
  std::lock_guard<std::mutex> lock(gate.mutex);
  if (h->growthPrefaulter) h->growthPrefaulter->chunkDelayNsForTesting = ns;
}

void holdEveryGrowthPrefault() {
  std::unique_lock<std::mutex> lock(gate.mutex);
  gate.holds++;
  gate.changed.wait(lock, [] { return gate.inFlight == 0; });
}

void releaseEveryGrowthPrefault() {
  std::lock_guard<std::mutex> lock(gate.mutex);
  if (gate.holds > 0) gate.holds--;
  gate.changed.notify_all();
}

GrowthPrefaultFigures growthPrefaultFigures(HeapMemory* h) {
  std::lock_guard<std::mutex> lock(gate.mutex);
  if (!h->growthPrefaulter) return GrowthPrefaultFigures();
  GrowthPrefaultFigures f = h->growthPrefaulter->figures;
  f.working = h->growthPrefaulter->inFlight;
  return f;
}

void stopGrowthPrefault(HeapMemory* h) {
  GrowthPrefaulter* p;
  {
    std::lock_guard<std::mutex> lock(gate.mutex);
    p = h->growthPrefaulter;
    if (!p) return;
    h->growthPrefaulter = nullptr;
    gate.prefaulters.erase(std::remove(gate.prefaulters.begin(), gate.prefaulters.end(), p), gate.prefaulters.end());
    p->stopping = true;
    gate.changed.notify_all();
  }
  pthread_join(p->thread, nullptr);
  delete p;
}

}  // namespace forkgc
