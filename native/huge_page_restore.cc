// Huge pages after a cycle: putting back what copy-on-write split.
//
// With huge pages on, fork() copies one page-middle-directory entry per 2 MiB
// of heap instead of 512 page-table entries. But while a child lives, the
// parent's first write to a 2 MiB page it shares with the child splits that
// mapping into 512 small ones (the kernel copies only the 4 KiB written:
// do_huge_pmd_wp_page), and after the child exits the range stays mapped
// small: khugepaged would merge it back at its own pace (by default 4096
// pages every 10 s, minutes per GiB). Measured at 1 GiB live with scattered
// writes: AnonHugePages 1026 MiB before the first cycle, 0 after it, and the
// fork's CPU time 1.3 ms in the first cycle, 9-15 ms in every later one.
//
// So once the child is gone, the heap asks the kernel to merge its ranges
// back (MADV_COLLAPSE, Linux 6.1), on a thread of its own so the mutator
// never waits for it, one 2 MiB range per call. A range that is already huge
// costs the kernel a page-table lookup. The thread stops before its next
// range when a fork comes (holdHugePageRestore; a range already taken is
// waited for): a range collapsed while a child shares it would be copied for
// nothing. A fork that excluded nothing shares every heap's arena, so then
// every heap's thread waits until that child is reaped
// (holdEveryHugePageRestore). Waiting for that range is in the pause, and
// on the project's VM a range takes 1-14 ms (most of it the new huge page's
// first touch, when the host backs it: docs/performance-log.md, "What the
// fork waits for at 256 MiB on huge pages"), so a cycle the pacer starts
// is put off to the next safepoint or turn of the event loop while a piece
// is in progress, the thread taking no new one (hugePageRestoreQuiesce), as
// for the prefault thread's chunk (growth_prefault.cc). An explicit
// collect() starts its cycle in the call, and its fork waits. Ranges the
// heap gave back to the OS before the cycle are not asked for
// (src/memory/huge-pages.ts); one the sweep gives back while this thread
// works is refused by the kernel
// (measured on 6.18: a range emptied by MADV_DONTNEED fails to merge, and
// RSS stays down), so the release need not wait for this thread.
// Collapsing copies the range into a new huge page under the mmap write
// lock (about 1 ms per range measured here); whatever needs that lock
// meanwhile waits (the application's faults in the arena, V8's own
// mmap/mprotect calls), which the heap's stall accounting cannot see: a
// scheduler trace can (bench/sched-waits.ts; quick splay: the main thread
// 43-152 ms in uninterruptible sleep per run with this thread, stretches up
// to 8 ms, about none without it), and so can the CPU this thread takes
// from the main thread on a 2-core machine. Spacing the ranges
// out over the time until the next fork was measured and is worse: the
// ranges stay split and write-protected longer, and the application took
// twice the page faults (docs/how-it-works.md).
//
// Its second job, with 4 KiB pages: fork() write-protects every page the
// child shares, and the protection outlives the child, so the application's
// first write to each page after a cycle faults (20-44 us measured here,
// mostly the other CPU's TLB flush). The thread makes the resident spans
// and their allocation bits writable first (MADV_POPULATE_WRITE, Linux
// 5.14: 0.2-0.3 us a page), 2 MiB per call, stopping at a fork like the
// merges. Only pages already mapped by this process alone are touched
// (makeResidentWritable), so a span given back to the OS stays unbacked. On
// huge pages the heap does not ask for it: it measured worse there
// (docs/performance-log.md).
#include "huge_page_restore.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "arena.h"
#include "layout.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace forkgc {

struct HugePageRestorer {
  std::mutex mutex;
  std::condition_variable wake;
  pthread_t thread;
  uint8_t* base = nullptr;
  uint8_t* allocBits = nullptr;
  std::vector<uint8_t> writable;  // per 64 KiB span: make its pages writable
  size_t writeCursor = 0;         // next span to look at
  size_t bitsCursor = 0;          // bytes of allocBits made writable so far
  size_t bitsBytes = 0;           // allocBits bytes that cover the spans in `writable`
  std::vector<uint8_t> wanted;  // per 2 MiB range: collapse it
  size_t cursor = 0;            // next range to look at
  bool held = true;       // a child may share the arena: do nothing
  bool quiesced = false;  // a cycle is about to start: take no new piece (hugePageRestoreQuiesce)
  bool collapsing = false;  // a piece of work taken and not yet done (holds wait for it)
  uint64_t jobDelayNsForTesting = 0;  // sleep this long after taking a piece, before its madvise
  bool stopping = false;
  HugePageRestoreFigures figures;
};

namespace {

// Every heap's restorer, and the children alive that share every arena (a
// fork that excluded nothing: selective fork off or not applied). While one
// lives no restorer collapses anything, whichever heap forked it: its
// `held` covers only the forking heap's own arena (found in review: with
// selectiveFork false, another heap's thread collapsed 192 ranges a child
// shared, 384 MiB copied for nothing).
std::mutex restorersMutex;
std::vector<HugePageRestorer*> restorers;
std::atomic<int> childrenSharingAll{0};

// Waits until r's thread has no range in flight (r->mutex held by `lock`).
void waitIdle(HugePageRestorer* r, std::unique_lock<std::mutex>& lock) {
  r->wake.wait(lock, [r] { return !r->collapsing; });
}

uint64_t nowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

// A piece of the restore thread's work, taken under the mutex.
struct Job {
  uint8_t* at = nullptr;
  size_t bytes = 0;
  bool collapse = false;
};

// Making pages writable goes 2 MiB at a time (about 0.1 ms of 4 KiB pages
// measured here), so that a fork waits for at most that much.
constexpr size_t kWritableChunkBytes = kHugePageBytes;

// The next piece of work, or an empty job when there is none: first the
// allocation bitmap, then runs of the listed spans (at most 2 MiB), then the
// ranges to collapse. (restorePages lists nothing to make writable where the
// kernel cannot; a span given back to the OS since it was listed has no page
// mapped, which makeResidentWritable skips.)
Job nextJob(HugePageRestorer* r) {
  Job j;
  if (r->bitsCursor < r->bitsBytes) {
    j.at = r->allocBits + r->bitsCursor;
    j.bytes = std::min(kWritableChunkBytes, r->bitsBytes - r->bitsCursor);
    r->bitsCursor += j.bytes;
    return j;
  }
  const size_t spansPerChunk = kWritableChunkBytes / kSpanBytes;
  while (r->writeCursor < r->writable.size()) {
    size_t s = r->writeCursor;
    if (!r->writable[s]) {
      r->writeCursor++;
      continue;
    }
    size_t end = s + 1;
    while (end < r->writable.size() && end - s < spansPerChunk && r->writable[end]) end++;
    r->writeCursor = end;
    j.at = r->base + s * kSpanBytes;
    j.bytes = (end - s) * kSpanBytes;
    return j;
  }
  while (r->cursor < r->wanted.size()) {
    size_t i = r->cursor++;
    if (!r->wanted[i]) continue;
    j.at = r->base + i * kHugePageBytes;
    j.bytes = kHugePageBytes;
    j.collapse = true;
    return j;
  }
  return j;
}

bool hasWork(HugePageRestorer* r) {
  return r->bitsCursor < r->bitsBytes || r->writeCursor < r->writable.size() || r->cursor < r->wanted.size();
}

// /proc/self/pagemap, opened once per process when its first heap is made
// (openPagemap), or -1. One descriptor for the process's life: opened per
// call instead, it would come and go while the application works, and
// opened by the thread, at a moment nobody chose.
std::atomic<int> pagemapFd{-1};

// Makes writable the pages of [at, at + bytes) that this process alone maps,
// and only those. A span in use may hold pages the application never
// touched (a size class's slack, an object's unwritten tail), and populating
// them would cost memory the heap never asked for (under a memory limit,
// enough to get the application killed; test/oom-order.test.ts). Nor may it
// populate a page the application has only read: on most kernels that maps
// the shared zero page, which a write fault would replace with a page of
// its own. /proc/self/pagemap says both per page: present (bit 63) and
// exclusively mapped (bit 56, Linux 4.2), which a page written since the
// child exited is and the zero page never is. Where pagemap cannot be read,
// mincore() says which pages are mapped (the zero page included). Each run
// of such pages gets one MADV_POPULATE_WRITE. A page given back to the OS
// between the two calls is faulted in as a zero-filled page: memory, never
// contents. Returns 0 or the first failure's errno; `made` gets the bytes
// made writable.
int makeResidentWritable(uint8_t* at, size_t bytes, size_t* made) {
  const size_t page = systemPageSize();
  const size_t pages = bytes / page;
  constexpr size_t kMaxPages = kWritableChunkBytes / 4096;
  if (pages > kMaxPages) return EINVAL;
  bool wanted[kMaxPages];
  uint64_t entries[kMaxPages];
  const size_t entryBytes = pages * sizeof(uint64_t);
  const off_t offset = off_t(reinterpret_cast<uintptr_t>(at) / page * sizeof(uint64_t));
  const int pagemap = pagemapFd.load(std::memory_order_relaxed);
  if (pagemap >= 0 && pread(pagemap, entries, entryBytes, offset) == ssize_t(entryBytes)) {
    for (size_t i = 0; i < pages; i++) wanted[i] = (entries[i] >> 63 & 1) && (entries[i] >> 56 & 1);
  } else {
    unsigned char resident[kMaxPages];
    if (mincore(at, bytes, resident) != 0) return errno;
    for (size_t i = 0; i < pages; i++) wanted[i] = resident[i] & 1;
  }
  int failed = 0;
  for (size_t i = 0; i < pages;) {
    if (!wanted[i]) {
      i++;
      continue;
    }
    size_t end = i + 1;
    while (end < pages && wanted[end]) end++;
    if (madvise(at + i * page, (end - i) * page, MADV_POPULATE_WRITE) == 0) *made += (end - i) * page;
    else if (!failed) failed = errno;
    i = end;
  }
  return failed;
}

void* run(void* arg) {
  HugePageRestorer* r = static_cast<HugePageRestorer*>(arg);
  // Named, so that top, perf and /proc/PID/task/*/comm tell it from V8's
  // threads (it takes the mmap lock the application's faults need).
  pthread_setname_np(pthread_self(), "forkgc-restore");
  std::unique_lock<std::mutex> lock(r->mutex);
  for (;;) {
    r->wake.wait(lock, [r] {
      return r->stopping || (!r->held && !r->quiesced && childrenSharingAll.load() == 0 && hasWork(r));
    });
    if (r->stopping) return nullptr;
    Job job = nextJob(r);
    if (!job.at) continue;
    // Taken: a hold now waits until this piece is done (the thread might be
    // preempted between here and madvise, and work after the fork: a range
    // collapsed, or a page made writable, while a child shares it would be
    // copied for nothing).
    r->collapsing = true;
    const uint64_t delayNs = r->jobDelayNsForTesting;
    lock.unlock();
    if (delayNs != 0) {
      timespec d{time_t(delayNs / 1000000000u), long(delayNs % 1000000000u)};
      while (nanosleep(&d, &d) != 0 && errno == EINTR) {}
    }
    uint64_t t0 = nowNs();
    // Each page made writable counts as a minor fault of this thread (the
    // kernel's fault handler, reached without an exception): counted apart,
    // so the heap can tell the application's faults from these.
    rusage before, after;
    bool counted = !job.collapse && getrusage(RUSAGE_THREAD, &before) == 0;
    size_t madeWritable = 0;
    int rc = job.collapse ? madvise(job.at, job.bytes, MADV_COLLAPSE) : makeResidentWritable(job.at, job.bytes, &madeWritable);
    uint64_t spent = nowNs() - t0;
    uint64_t faults = counted && getrusage(RUSAGE_THREAD, &after) == 0 ? uint64_t(after.ru_minflt - before.ru_minflt) : 0;
    lock.lock();
    r->collapsing = false;
    r->wake.notify_all();
    // A failure (no huge page free now, a range the kernel will not merge;
    // memory short for a page to make writable) costs nothing but the try:
    // later cycles ask again.
    if (job.collapse) {
      r->figures.ns += spent;
      if (rc == 0) r->figures.rangesCollapsed++;
      else r->figures.rangesFailed++;
    } else {
      r->figures.writableNs += spent;
      r->figures.writableFaults += faults;
      r->figures.bytesMadeWritable += madeWritable;
    }
  }
}

// Whether the running kernel is at least major.minor (uname).
bool kernelAtLeast(int wantMajor, int wantMinor) {
  utsname u;
  int major = 0, minor = 0;
  return uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
         (major > wantMajor || (major == wantMajor && minor >= wantMinor));
}

// MADV_COLLAPSE came with Linux 6.1. Older kernels answer EINVAL, which
// newer ones also give for a range they will not merge, so ask uname.
bool kernelCollapses() {
  static const bool yes = kernelAtLeast(6, 1);
  return yes;
}

// MADV_POPULATE_WRITE came with Linux 5.14 (EINVAL before).
bool kernelPopulates() {
  static const bool yes = kernelAtLeast(5, 14);
  return yes;
}

}  // namespace

void openPagemap() {
  static std::once_flag once;
  std::call_once(once, [] { pagemapFd.store(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)); });
}

bool restorePages(HeapMemory* h, const uint8_t* writable, size_t spanCount, const uint8_t* wanted, size_t count) {
  if (!h->hugePages || !kernelCollapses()) count = 0;
  if (!kernelPopulates()) spanCount = 0;
  if (spanCount == 0 && count == 0) return false;
  if (count > h->arena.bytes / kHugePageBytes) count = h->arena.bytes / kHugePageBytes;
  if (spanCount > h->arena.bytes / kSpanBytes) spanCount = h->arena.bytes / kSpanBytes;
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) {
    r = new HugePageRestorer();
    r->base = h->arena.base;
    r->allocBits = h->allocBits.base;
    // pthread_create, not std::thread: built without exceptions, a thread
    // that cannot start (EAGAIN under a pids limit) would abort the process.
    // Without the thread the heap goes on with split huge pages (bigger
    // forks), and asks again at the next cycle.
    if (pthread_create(&r->thread, nullptr, run, r) != 0) {
      delete r;
      return false;
    }
    // Made by the main thread at a cycle's end, it would inherit that
    // thread's CPUs: a main thread pinned to one CPU after making the heap
    // would have it collapse ranges in the mutator's time. It may also run
    // where the heap's creator could (as the marking child may, child.cc).
    widenToCreatorCpus(*h, r->thread);
    h->hugePageRestorer = r;
    std::lock_guard<std::mutex> all(restorersMutex);
    restorers.push_back(r);
  }
  std::lock_guard<std::mutex> lock(r->mutex);
  r->writable.assign(writable, writable + spanCount);
  r->writeCursor = 0;
  r->bitsCursor = 0;
  // The allocation bits of those spans (whole pages: the sweepers and the
  // allocator write them).
  size_t bits = spanCount * kSpanBitmapWords * 4;
  size_t page = systemPageSize();
  r->bitsBytes = std::min(h->allocBits.bytes, (bits + page - 1) / page * page);
  r->wanted.assign(wanted, wanted + count);
  r->cursor = 0;
  r->held = false;
  r->wake.notify_all();
  return true;
}

void holdHugePageRestore(HeapMemory* h) {
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) return;
  std::unique_lock<std::mutex> lock(r->mutex);
  r->held = true;
  waitIdle(r, lock);
}

void holdEveryHugePageRestore() {
  childrenSharingAll.fetch_add(1);
  std::lock_guard<std::mutex> all(restorersMutex);
  for (HugePageRestorer* r : restorers) {
    std::unique_lock<std::mutex> lock(r->mutex);
    waitIdle(r, lock);
  }
}

bool hugePageRestoreQuiesce(HeapMemory* h) {
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) return false;
  std::lock_guard<std::mutex> lock(r->mutex);
  r->quiesced = true;
  return r->collapsing;
}

void hugePageRestoreResume(HeapMemory* h) {
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) return;
  std::lock_guard<std::mutex> lock(r->mutex);
  if (!r->quiesced) return;
  r->quiesced = false;
  r->wake.notify_all();
}

void setHugePageRestoreDelayForTesting(HeapMemory* h, uint64_t ns) {
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) return;
  std::lock_guard<std::mutex> lock(r->mutex);
  r->jobDelayNsForTesting = ns;
}

void releaseEveryHugePageRestore() {
  if (childrenSharingAll.fetch_sub(1) != 1) return;
  std::lock_guard<std::mutex> all(restorersMutex);
  for (HugePageRestorer* r : restorers) {
    std::lock_guard<std::mutex> lock(r->mutex);
    r->wake.notify_all();
  }
}

HugePageRestoreFigures hugePageRestoreFigures(HeapMemory* h) {
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) return HugePageRestoreFigures();
  std::lock_guard<std::mutex> lock(r->mutex);
  HugePageRestoreFigures f = r->figures;
  f.working = r->collapsing;
  return f;
}

void stopHugePageRestore(HeapMemory* h) {
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) return;
  {
    std::lock_guard<std::mutex> all(restorersMutex);
    restorers.erase(std::remove(restorers.begin(), restorers.end(), r), restorers.end());
  }
  {
    std::lock_guard<std::mutex> lock(r->mutex);
    r->stopping = true;
    r->wake.notify_all();
  }
  pthread_join(r->thread, nullptr);
  delete r;
  h->hugePageRestorer = nullptr;
}

}  // namespace forkgc
