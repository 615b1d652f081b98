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
// (holdEveryHugePageRestore). Ranges the heap gave back to
// the OS before the cycle are not asked for (src/memory/huge-pages.ts); one
// the sweep gives back while this thread works is refused by the kernel
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
#include "huge_page_restore.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <stdio.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "arena.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

namespace forkgc {

struct HugePageRestorer {
  std::mutex mutex;
  std::condition_variable wake;
  pthread_t thread;
  uint8_t* base = nullptr;
  std::vector<uint8_t> wanted;  // per 2 MiB range: collapse it
  size_t cursor = 0;            // next range to look at
  bool held = true;       // a child may share the arena: do nothing
  bool collapsing = false;  // a range taken and not yet done (holds wait for it)
  bool stopping = false;
  HugePageRestoreFigures figures;
  cpu_set_t creatorCpus;  // HeapMemory::creatorCpus, if known
  bool creatorCpusKnown = false;
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

void* run(void* arg) {
  HugePageRestorer* r = static_cast<HugePageRestorer*>(arg);
  // Named, so that top, perf and /proc/PID/task/*/comm tell it from V8's
  // threads (it takes the mmap lock the application's faults need).
  pthread_setname_np(pthread_self(), "forkgc-restore");
  // Made by the main thread at a cycle's end, it would inherit that thread's
  // CPUs: a main thread pinned to one CPU after making the heap would have
  // it collapse ranges in the mutator's time. It may also run where the
  // heap's creator could (as the marking child may, child.cc).
  if (r->creatorCpusKnown) {
    cpu_set_t mine;
    if (pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine) == 0) {
      CPU_OR(&mine, &mine, &r->creatorCpus);
      pthread_setaffinity_np(pthread_self(), sizeof(mine), &mine);
    }
  }
  std::unique_lock<std::mutex> lock(r->mutex);
  for (;;) {
    r->wake.wait(lock, [r] {
      return r->stopping || (!r->held && childrenSharingAll.load() == 0 && r->cursor < r->wanted.size());
    });
    if (r->stopping) return nullptr;
    size_t i = r->cursor++;
    if (!r->wanted[i]) continue;
    uint8_t* range = r->base + i * kHugePageBytes;
    // Taken: a hold now waits until this range is done (the thread might be
    // preempted between here and madvise, and collapse after the fork).
    r->collapsing = true;
    lock.unlock();
    uint64_t t0 = nowNs();
    int rc = madvise(range, kHugePageBytes, MADV_COLLAPSE);
    int err = errno;
    uint64_t spent = nowNs() - t0;
    lock.lock();
    r->collapsing = false;
    r->wake.notify_all();
    r->figures.ns += spent;
    // A failure (no huge page free now, a range the kernel will not merge)
    // costs nothing but the try: later cycles ask again.
    if (rc == 0) r->figures.rangesCollapsed++;
    else r->figures.rangesFailed++;
    (void)err;
  }
}

// MADV_COLLAPSE came with Linux 6.1. Older kernels answer EINVAL, which
// newer ones also give for a range they will not merge, so ask uname.
bool kernelCollapses() {
  static const bool yes = [] {
    utsname u;
    int major = 0, minor = 0;
    return uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 && (major > 6 || (major == 6 && minor >= 1));
  }();
  return yes;
}

}  // namespace

bool restoreHugePages(HeapMemory* h, const uint8_t* wanted, size_t count) {
  if (!h->hugePages || !kernelCollapses()) return false;
  if (count > h->arena.bytes / kHugePageBytes) count = h->arena.bytes / kHugePageBytes;
  HugePageRestorer* r = h->hugePageRestorer;
  if (!r) {
    r = new HugePageRestorer();
    r->base = h->arena.base;
    r->creatorCpus = h->creatorCpus;
    r->creatorCpusKnown = h->creatorCpusKnown;
    // pthread_create, not std::thread: built without exceptions, a thread
    // that cannot start (EAGAIN under a pids limit) would abort the process.
    // Without the thread the heap goes on with split huge pages (bigger
    // forks), and asks again at the next cycle.
    if (pthread_create(&r->thread, nullptr, run, r) != 0) {
      delete r;
      return false;
    }
    h->hugePageRestorer = r;
    std::lock_guard<std::mutex> all(restorersMutex);
    restorers.push_back(r);
  }
  std::lock_guard<std::mutex> lock(r->mutex);
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
  return r->figures;
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
