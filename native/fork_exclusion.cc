// Selective fork (see fork_exclusion.h for what is kept and why).
#include "fork_exclusion.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "arena.h"
#include "marker.h"

// glibc >= 2.34's bare fork (child.cc says why it is used); null before.
extern "C" pid_t _Fork(void) __attribute__((weak));

namespace forkgc {

namespace {

// A mapping of our own that grows by doubling: the maps text and the runs.
// mmap'd, not malloc'd, so that reading the maps does not itself change the
// malloc arenas being listed (and never takes a malloc lock in the pause).
struct Buffer {
  uint8_t* base = nullptr;
  size_t bytes = 0;

  bool reserve(size_t want) {
    if (want <= bytes) return true;
    size_t n = bytes ? bytes : 256 * 1024;
    while (n < want) n *= 2;
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    if (base) munmap(base, bytes);
    base = static_cast<uint8_t*>(p);
    bytes = n;
    return true;
  }
};

Buffer mapsText;
Buffer runBuffer;
size_t runCount = 0;

AddressRange* runs() { return reinterpret_cast<AddressRange*>(runBuffer.base); }

// Reads the whole of /proc/self/maps; false if it cannot. A read that fills
// the buffer is retried with a bigger one (the text must be one snapshot).
bool readMaps(size_t& length) {
  for (;;) {
    if (!mapsText.reserve(mapsText.bytes ? mapsText.bytes : 1 << 20)) return false;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    size_t used = 0;
    bool full = false;
    for (;;) {
      if (used == mapsText.bytes) {
        full = true;
        break;
      }
      ssize_t n = read(fd, mapsText.base + used, mapsText.bytes - used);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        close(fd);
        return false;
      }
      if (n == 0) break;
      used += size_t(n);
    }
    close(fd);
    if (!full) {
      length = used;
      return true;
    }
    if (!mapsText.reserve(mapsText.bytes * 2)) return false;
  }
}

struct Mapping {
  uintptr_t start, end;
  bool writable, priv, readable;
  bool fileBacked;     // inode != 0
  bool anonymous;      // a candidate kind: no path, [heap], [anon:..], [stack:tid]
  bool brkHeap;        // [heap]: malloc's main arena, grown by brk()
  bool inaccessible;   // ---p: reserved address space, nothing mapped readable
};

const uint8_t* parseHex(const uint8_t* p, const uint8_t* end, uintptr_t& v) {
  v = 0;
  for (; p < end; p++) {
    uint8_t c = *p;
    unsigned d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else break;
    v = (v << 4) | d;
  }
  return p;
}

const uint8_t* skipField(const uint8_t* p, const uint8_t* end) {
  while (p < end && *p != ' ' && *p != '\n') p++;
  while (p < end && *p == ' ') p++;
  return p;
}

bool startsWith(const uint8_t* p, const uint8_t* end, const char* s) {
  size_t n = strlen(s);
  return size_t(end - p) >= n && memcmp(p, s, n) == 0;
}

// One line "start-end perms offset dev inode   path\n"; returns the next line.
const uint8_t* parseLine(const uint8_t* p, const uint8_t* end, Mapping& m) {
  p = parseHex(p, end, m.start);
  if (p < end && *p == '-') p++;
  p = parseHex(p, end, m.end);
  while (p < end && *p == ' ') p++;
  const uint8_t* perms = p;
  m.readable = end - perms >= 4 && perms[0] == 'r';
  m.writable = end - perms >= 4 && perms[1] == 'w';
  m.priv = end - perms >= 4 && perms[3] == 'p';
  m.inaccessible = end - perms >= 4 && perms[0] == '-' && perms[1] == '-' && perms[2] == '-';
  p = skipField(p, end);  // perms
  p = skipField(p, end);  // offset
  p = skipField(p, end);  // dev
  m.fileBacked = false;
  for (; p < end && *p >= '0' && *p <= '9'; p++) m.fileBacked |= *p != '0';
  while (p < end && *p == ' ') p++;
  const uint8_t* path = p;
  while (p < end && *p != '\n') p++;
  const uint8_t* pathEnd = p;
  m.brkHeap = !m.fileBacked && startsWith(path, pathEnd, "[heap]");
  m.anonymous = !m.fileBacked &&
                (path == pathEnd || startsWith(path, pathEnd, "[heap]") || startsWith(path, pathEnd, "[anon:") ||
                 startsWith(path, pathEnd, "[stack:"));
  return p < end ? p + 1 : p;
}

// Only mappings of at least this size are excluded. Excluding costs about
// 1.5 us a mapping whatever its size (MADV_DONTFORK, MADV_DOFORK, and, since
// Linux 6.8, fork() removing each DONTCOPY mapping from the child's copied
// maple tree one by one), while copying one costs ~0.7 us plus its page
// tables. V8's heap is thousands of 256 KiB mappings: measured on 6.18 with
// 1.5 GiB of V8 objects, excluding all of them made the fork pause's CPU
// time 11 ms against 6.6 ms plain. Big mappings (Buffers and ArrayBuffers
// malloc mmaps one by one, malloc arenas, other heaps' arenas) are where the
// page tables are: 1 GiB of Buffers took a plain fork 21 ms of CPU and a
// selective one 0.4 ms.
constexpr uintptr_t kMinExcludedBytes = 1u << 20;

bool overlapsAny(uintptr_t start, uintptr_t end, const AddressRange* r, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (r[i].start < end && start < r[i].end) return true;
  return false;
}

// A run grows over the holes between excluded mappings: nothing is mapped
// there at the read, so one call covers it (the kernel skips holes, and says
// ENOMEM after marking everything mapped). Any listed mapping that is not
// excluded ends the run.
void pushRun(uintptr_t start, uintptr_t end, bool adjacentToLast) {
  if (runCount > 0 && adjacentToLast) {
    runs()[runCount - 1].end = end;
    return;
  }
  runs()[runCount++] = AddressRange{start, end};
}

// The cache: the runs of the last read stay valid for later forks while no
// range the child needs lies in one of them (checked at every fork: a
// thread stack, a heap, a span table mapped into a hole since), and while the
// fork stays as fast as it was right after the read (V8 mapped pages outside
// the runs: read again; CPU time, so that a preempted fork does not count). New mappings inside a run's holes are excluded too,
// which is what we want: they are V8's or other threads', never the child's
// (its libraries were loaded, and listed, before).
bool cacheValid = false;
uint32_t cachedMappings = 0;
uint32_t cachedExcluded = 0;
uint64_t cachedExcludedBytes = 0;
uintptr_t cachedProbe = 0;
uint64_t forkNsAfterRead = 0;   // the first fork after the last read (CPU ns)
uint64_t lastForkNs = 0;
uint32_t forksSinceRead = 0;
// Heaps made or destroyed since the read (forgetForkExclusions): a heap made
// after it had its arena, huge pages and all, given to every child (its
// fork cost grows too little for the check above to see: found in review).
std::atomic<bool> heapsChanged{false};

// malloc's main arena ([heap]) as the last read found it. The arena grows
// by brk() at its end, and a run that ends where the read saw it end would
// leave the growth in every later child: the main thread's malloc'd memory
// allocated since (ArrayBuffers under 128 KiB: the stream's queued pieces
// among them) was then copied on its first write while each child lived,
// 16 faults a 64 KiB buffer (found profiling a full splay run's longest
// stalls). The program break is one syscall to read.
struct BrkHeap {
  uintptr_t start = 0;       // 0: the read found no [heap]
  uintptr_t end = 0;         // the furthest end seen (a shrunk arena leaves a hole in its run)
  int run = -1;              // the run that holds it, if it was excluded
  bool tooSmall = false;     // not excluded only for being under kMinExcludedBytes
} brkHeap;

uintptr_t programBreak() {
  long b = syscall(SYS_brk, 0);
  uintptr_t page = systemPageSize();
  return (uintptr_t(b) + page - 1) & ~(page - 1);
}

// Follows the main arena's growth since the read: extends its run, or says
// the maps must be read again (an arena too small to exclude then that has
// grown past the threshold).
bool followBrkHeap() {
  if (brkHeap.start == 0) return true;
  uintptr_t brk = programBreak();
  if (brk <= brkHeap.end) return true;
  if (brkHeap.run >= 0) {
    AddressRange& r = runs()[brkHeap.run];
    if (r.end < brk) {
      cachedExcludedBytes += brk - (r.end > brkHeap.end ? r.end : brkHeap.end);
      r.end = brk;
    }
  } else if (brkHeap.tooSmall && brk - brkHeap.start >= kMinExcludedBytes) {
    return false;
  }
  brkHeap.end = brk;
  return true;
}

bool cacheUsable(const AddressRange* keep, size_t keepCount) {
  if (!cacheValid || runCount == 0 || heapsChanged) return false;
  if (forksSinceRead > 0 && lastForkNs > forkNsAfterRead + forkNsAfterRead / 2 + 100000) return false;
  if (!followBrkHeap()) return false;
  for (size_t i = 0; i < runCount; i++)
    if (overlapsAny(runs()[i].start, runs()[i].end, keep, keepCount)) return false;
  return true;
}

// The slow way back, when a run's DOFORK stopped early: every mapping the
// maps now list inside a run, one call each, errors ignored.
void restoreMappingByMapping() {
  size_t length = 0;
  if (!readMaps(length)) return;
  const uint8_t* p = mapsText.base;
  const uint8_t* end = p + length;
  while (p < end) {
    Mapping m;
    p = parseLine(p, end, m);
    if (overlapsAny(m.start, m.end, runs(), runCount))
      madvise(reinterpret_cast<void*>(m.start), m.end - m.start, MADV_DOFORK);
  }
}

}  // namespace

std::mutex& forkLock() {
  static std::mutex lock;
  return lock;
}

namespace {

// Set on the thread that holds forkLock for a fork of ours or a heap's
// creation: a fork() it makes itself (the fallback without _Fork) must not
// wait for the lock it holds.
thread_local bool holdingForkLock = false;

void beforeOtherFork() {
  if (!holdingForkLock) forkLock().lock();
}

void afterOtherFork() {
  if (!holdingForkLock) forkLock().unlock();
}

}  // namespace

ForkWindow::ForkWindow() : lock_(forkLock()) { holdingForkLock = true; }
ForkWindow::~ForkWindow() { holdingForkLock = false; }

void forgetForkExclusions() { heapsChanged.store(true); }

void guardOtherForks() {
  // Without _Fork our own fork is glibc's fork(), which would run these
  // handlers with glibc's atfork lock held while another thread's fork
  // holds it waiting in them for forkLock: a deadlock. There is no window
  // to guard then either (child.cc never forks selectively without _Fork).
  if (_Fork == nullptr) return;
  static std::once_flag once;
  // The library stays loaded for the process's life (binding.cc,
  // keepLoaded), so the handlers stay valid.
  std::call_once(once, [] { pthread_atfork(beforeOtherFork, afterOtherFork, afterOtherFork); });
}

ExclusionFigures applyForkExclusions(const AddressRange* keep, size_t keepCount, bool apply) {
  ExclusionFigures f;
  uint64_t t0 = monotonicNs();
  if (apply && cacheUsable(keep, keepCount)) {
    f.fromCache = true;
    f.mappings = cachedMappings;
    f.excluded = cachedExcluded;
    f.excludedBytes = cachedExcludedBytes;
    f.probe = cachedProbe;
  } else {
    cacheValid = false;
    heapsChanged.store(false);
    runCount = 0;
    size_t length = 0;
    if (!readMaps(length)) return f;
    // Room for one run per line at most, reserved now: pushRun never moves it.
    size_t lines = 0;
    for (size_t i = 0; i < length; i++) lines += mapsText.base[i] == '\n';
    if (!runBuffer.reserve((lines + 1) * sizeof(AddressRange))) return f;

    const uint8_t* p = mapsText.base;
    const uint8_t* end = p + length;
    Mapping prev{0, 0, false, false, false, false, false, false, false};
    brkHeap = BrkHeap{};
    bool lastExcluded = false;
    uint64_t probeBytes = 0;
    while (p < end) {
      Mapping m;
      p = parseLine(p, end, m);
      f.mappings++;
      bool bssTail = prev.fileBacked && prev.end == m.start;
      bool kept = overlapsAny(m.start, m.end, keep, keepCount);
      // Of a kind the child never reads; excluded if big enough to pay.
      bool candidate = m.anonymous && m.priv && m.writable && !bssTail && !kept;
      bool exclude = candidate && m.end - m.start >= kMinExcludedBytes;
      // A reservation right after an excluded mapping goes into its run:
      // malloc's arenas on other threads (a heap made on a worker thread
      // allocates from one) grow by mprotect() into the inaccessible rest
      // of their 64 MiB, and a run that ended at the read's rw end left the
      // growth in every later child, copied at its first write while one
      // lived (test/selective-fork.test.ts). Nothing can be read there, so
      // the child loses nothing.
      bool reserveTail = lastExcluded && prev.end == m.start && m.anonymous && m.priv && m.inaccessible && !kept;
      if (reserveTail) {
        pushRun(m.start, m.end, true);
        prev = m;
        continue;  // lastExcluded stays true: an excluded mapping after it joins the run
      }
      if (exclude) {
        f.excluded++;
        f.excludedBytes += m.end - m.start;
        if (m.readable && m.end - m.start > probeBytes) {
          probeBytes = m.end - m.start;
          f.probe = m.start;
        }
        pushRun(m.start, m.end, lastExcluded);
      }
      if (m.brkHeap) {
        brkHeap.start = m.start;
        brkHeap.end = m.end;
        brkHeap.run = exclude ? int(runCount) - 1 : -1;
        brkHeap.tooSmall = candidate && !exclude;
      }
      lastExcluded = exclude;
      prev = m;
    }
    f.readNs = monotonicNs() - t0;
    cachedMappings = f.mappings;
    cachedExcluded = f.excluded;
    cachedExcludedBytes = f.excludedBytes;
    cachedProbe = f.probe;
    forksSinceRead = 0;
    cacheValid = apply;
  }
  f.ok = true;
  if (!apply) {
    runCount = 0;
    return f;
  }
  uint64_t t1 = monotonicNs();
  for (size_t i = 0; i < runCount; i++) {
    // ENOMEM: the run spans holes (or a mapping went since the read); every
    // mapped part is marked all the same, and restored with the run.
    madvise(reinterpret_cast<void*>(runs()[i].start), runs()[i].end - runs()[i].start, MADV_DONTFORK);
    f.calls++;
  }
  f.adviseNs = monotonicNs() - t1;
  return f;
}

uint64_t restoreForkExclusions(uint64_t forkNs /* CPU */) {
  uint64_t t0 = monotonicNs();
  bool failed = false;
  for (size_t i = 0; i < runCount; i++) {
    // EINVAL: a VM_IO mapping that appeared in a hole refuses DOFORK and
    // stops the call there; the rest of the run is restored below.
    if (madvise(reinterpret_cast<void*>(runs()[i].start), runs()[i].end - runs()[i].start, MADV_DOFORK) != 0 &&
        errno != ENOMEM)
      failed = true;
  }
  if (failed) restoreMappingByMapping();
  if (forksSinceRead++ == 0) forkNsAfterRead = forkNs;
  lastForkNs = forkNs;
  if (failed) cacheValid = false;
  return monotonicNs() - t0;
}

}  // namespace forkgc
