// fork() and the body of the GC child.
//
// Why _Fork() and not fork(): fork() runs the pthread_atfork handlers that
// libraries in this process registered (glibc's malloc takes its arena locks,
// others may run arbitrary code) on the main thread inside the pause, for a
// child that will never call malloc. glibc >= 2.34's _Fork() is the bare system
// call with glibc's own bookkeeping (like D's druntime, which clones directly
// for its forked GC); it is async-signal-safe by specification. Where it is
// missing (older glibc) the weak reference is null and we fall back to fork()
// (and never fork selectively: fork()'s child handlers walk malloc arenas).
//
// In the child, from _Fork() to _exit(), only async-signal-safe calls run:
// prctl, sched_setaffinity (raw), getppid, setrlimit, close_range/close,
// open/write/close of /proc/self/oom_score_adj, madvise, clock_gettime, nanosleep, getrusage (a
// raw system call), open of /proc/self/pagemap (before the child makes itself
// non-dumpable, which would hand the file to root) and pread/close of it at
// the end into a buffer mapped before the fork, write, kill, _exit. Nothing allocates, locks,
// throws, or touches V8, libuv or stdio: the process was multi-threaded and
// every other thread vanished at fork, holding whatever locks it held. Nor
// does the child read malloc'd memory: with selective fork
// (fork_exclusion.h) it may not be there; everything it needs is in
// ChildArgs, on the forking thread's stack.
//
// A child that must not outlive its parent. The child's first instruction
// after _Fork() returns is a raw prctl(PR_SET_PDEATHSIG, SIGKILL) system
// call; then getppid() catches a parent that died before that; then
// close_range drops every inherited descriptor but the pipe. From then on a
// stopped child still dies with its parent (SIGKILL reaches stopped tasks).
// What remains, and cannot be closed from user space on Linux: between the
// kernel making the child (its pid is visible, it holds a copy of every
// descriptor and the whole address space) and its return to user mode, plus
// glibc's few instructions of _Fork bookkeeping in the child, a SIGSTOP (or a
// ptrace stop) queued by a process allowed to signal it stops it before that
// first instruction; if the parent then dies, the child stays stopped,
// re-parented, holding everything. Blocked signals do not help (SIGSTOP cannot
// be blocked), close-on-exec does not (there is no exec), there is no clone
// flag that sets a parent-death signal or drops descriptors at creation
// (CLONE_FILES would share, not drop, the table; Linux has no O_CLOFORK), and
// CLONE_CLEAR_SIGHAND only resets handlers, which never run here (every
// signal is blocked across the fork). While the parent lives, the watchdog
// kills such a child (it never writes).
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <sched.h>

#include <cstdio>
#include <cstring>
#include <mutex>

#include "fork_exclusion.h"
#include "growth_prefault.h"
#include "huge_page_restore.h"
#include "layout.h"
#include "marker.h"
#include "wire.h"

extern "C" pid_t _Fork(void) __attribute__((weak));

namespace forkgc {

namespace {

// Bigger pipe buffer: fewer wake-ups of the parent's event loop per cycle.
constexpr int kPipeBytes = 1 << 20;

void sleepMs(int ms) {
  struct timespec ts = {ms / 1000, long(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

bool writeAll(int fd, const void* data, size_t bytes) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (bytes > 0) {
    ssize_t n = write(fd, p, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    bytes -= size_t(n);
  }
  return true;
}

// A system call without a libc wrapper in between: the child's first
// instruction (prctl) must not wait for a function prologue.
inline long rawSyscall2(long number, long a, long b) {
#if defined(__x86_64__)
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(number), "D"(a), "S"(b) : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 asm("x8") = number;
  register long x0 asm("x0") = a;
  register long x1 asm("x1") = b;
  asm volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory");
  return x0;
#else
  return syscall(number, a, b);
#endif
}

inline long rawSyscall3(long number, long a, long b, long c) {
#if defined(__x86_64__)
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(number), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 asm("x8") = number;
  register long x0 asm("x0") = a;
  register long x1 asm("x1") = b;
  register long x2 asm("x2") = c;
  asm volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
  return x0;
#else
  return syscall(number, a, b, c);
#endif
}

// The CPUs the child may run on: the process's, less the one the forking
// thread is on. A new child is placed on its parent's CPU and preempts the
// parent there, and the scheduler moves one of them to an idle CPU only at
// a later balancing tick (4 ms on this VM): measured with a scheduler trace
// (bench/sched-waits.ts), the forking thread sat runnable for 3.6-4 ms
// right after fork() while the other CPU was idle, inside the pause. A child
// that takes itself off the parent's CPU as its second instruction gives
// the CPU straight back. "The process's" is the forking thread's own mask
// joined with the one the heap's creator had when it made the heap: a main
// thread pinned to one CPU after that (an application or a benchmark
// holding its mutator to one core) would otherwise keep the child on its
// own CPU, marking in the mutator's time. False (stay anywhere) with one
// CPU allowed, or if the kernel cannot say.
bool cpusAwayFromHere(const HeapMemory* heap, cpu_set_t* mask) {
  int cpu = sched_getcpu();
  if (cpu < 0 || sched_getaffinity(0, sizeof(*mask), mask) != 0) return false;
  if (heap->creatorCpusKnown) CPU_OR(mask, mask, &heap->creatorCpus);
  if (!CPU_ISSET(cpu, mask) || CPU_COUNT(mask) < 2) return false;
  CPU_CLR(cpu, mask);
  return true;
}

// The child is disposable and its copy-on-write copies are what push a
// memory-limited process over: the OOM killer must take it first. The child
// writes its own score first thing (before it makes itself non-dumpable,
// which hands its /proc files to root), and the parent writes it too, right
// after fork() returns (volunteerChild), for the time before the child runs.
// The parent used to raise its own score across fork() so that the child
// was born with it; a fork by any other thread in that window (a spawn)
// gave that process 1000 for life.
//
// Writes 1000 into the oom_score_adj file at `path` (open, write, close:
// async-signal-safe, so the child may call it); best effort.
void writeTopOomScore(const char* path) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n;
  do {
    n = write(fd, "1000", 4);
  } while (n < 0 && errno == EINTR);
  close(fd);
}

// The child's half. The path is a literal: nothing is built in the child.
void volunteerForOomKiller() { writeTopOomScore("/proc/self/oom_score_adj"); }

// The parent's half: the child's score set from outside (EACCES once the
// child has made itself non-dumpable: it has volunteered by then). One
// open/write/close in the pause.
void volunteerChild(pid_t pid) {
  char path[48];
  snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", int(pid));
  writeTopOomScore(path);
}

void put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
void put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

// Closes every inherited descriptor but `keep`: a socket the parent closes
// must not stay open in the child.
void closeInheritedDescriptors(int keep) {
  if (keep > 0 && syscall(SYS_close_range, 0u, unsigned(keep - 1), 0u) != 0) {
    for (int fd = 0; fd < keep; fd++) close(fd);
  }
  if (syscall(SYS_close_range, unsigned(keep + 1), ~0u, 0u) != 0) {
    struct rlimit lim;
    long max = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? long(lim.rlim_cur) : 65536;
    for (long fd = keep + 1; fd < max; fd++) close(int(fd));
  }
}

// Arena pages [0, bytes) of the snapshot that only this process still maps:
// the ones the parent copied by writing to them (see wire.h, cowPages).
// Everything the child reads, copied onto the forking thread's stack before
// the fork: the heap's HeapMemory is malloc'd, and with selective fork the
// child may not have the mapping it lives in.
struct ChildArgs {
  Region arena, allocBits, markBits, markStack, descriptors, roots, scratch;
  bool wipeOnFork;
  uint32_t cycleId;
  uint32_t topGranule;
  uint32_t rootCount;
  int32_t fault;
  int32_t faultArg;
  size_t pageBytes;
  int out;             // the pipe's write end
  pid_t parent;
  uint64_t forkedAt;
  uintptr_t probe;     // kFaultTouchExcluded: an address the fork excluded
  bool moveAway;       // awayCpus is set: leave the forking thread's CPU
  cpu_set_t awayCpus;  // cpusAwayFromHere()

  uint32_t markStackEntries() const { return uint32_t(markStack.bytes / 4); }
};

// `fd` is /proc/self/pagemap, opened before the child made itself
// non-dumpable: after that the file belongs to root, and an unprivileged
// child could no longer open it (the count would always read "unknown").
uint32_t countCopiedPages(const ChildArgs& a, int fd, uint64_t bytes, size_t page) {
  if (fd < 0) return 0xFFFFFFFFu;
  const uint64_t pages = (bytes + page - 1) / page;
  const uint64_t first = reinterpret_cast<uintptr_t>(a.arena.base) / page;
  uint64_t* entries = reinterpret_cast<uint64_t*>(a.scratch.base);
  const uint64_t perRead = a.scratch.bytes / 8;
  uint32_t copied = 0;
  for (uint64_t done = 0; done < pages;) {
    uint64_t n = pages - done < perRead ? pages - done : perRead;
    ssize_t got = pread(fd, entries, n * 8, off_t((first + done) * 8));
    if (got <= 0) {
      close(fd);
      return 0xFFFFFFFFu;
    }
    uint64_t count = uint64_t(got) / 8;
    for (uint64_t i = 0; i < count; i++) {
      const uint64_t present = uint64_t(1) << 63, exclusive = uint64_t(1) << 56;
      if ((entries[i] & (present | exclusive)) == (present | exclusive)) copied++;
    }
    done += count;
  }
  close(fd);
  return copied;
}

[[noreturn]] void childMain(const ChildArgs& a) {
  // (PR_SET_PDEATHSIG was the first instruction, in startForkCycle.) The
  // getppid() check closes the race in which the parent died before it.
  if (getppid() != a.parent) _exit(wire::kExitOrphaned);
  closeInheritedDescriptors(a.out);
  volunteerForOomKiller();
  const int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  // The child holds the whole application's memory: no core dump, and not
  // ptrace-attachable by other unprivileged processes.
  prctl(PR_SET_DUMPABLE, 0);
  struct rlimit noCore = {0, 0};
  setrlimit(RLIMIT_CORE, &noCore);
  // Signals stay blocked (the mask was set before fork): a SIGINT/SIGTERM to
  // the process group is the parent's business; the child dies with it.

  if (a.fault == kFaultExitBeforeMark) _exit(wire::kExitFault);
  if (a.fault == kFaultHang) for (;;) pause();
  if (a.fault == kFaultDelayBeforeMark) sleepMs(a.faultArg);
  if (a.fault == kFaultTouchExcluded && a.probe != 0) {
    // A page the parent excluded from the fork (V8's heap, say): the read
    // faults (SIGSEGV) when selective fork left it out, and reads whatever is
    // there when it did not.
    volatile const uint8_t* p = reinterpret_cast<volatile const uint8_t*>(a.probe);
    (void)*p;
  }

  uint32_t* markBits = reinterpret_cast<uint32_t*>(a.markBits.base);
  const uint32_t bitmapWords = (a.topGranule + 31) / 32;
  const uint32_t bitmapBytes = bitmapWords * 4;
  if (!a.wipeOnFork) {
    // The kernel did not zero our copy: drop it (private anonymous pages read
    // back as zero) rather than write every page.
    size_t page = a.pageBytes;
    madvise(markBits, (bitmapBytes + page - 1) / page * page, MADV_DONTNEED);
    madvise(a.markStack.base, a.markStack.bytes, MADV_DONTNEED);
  }

  MarkInput in;
  in.arena = a.arena.base;
  in.topGranule = a.topGranule;
  in.allocBits = reinterpret_cast<const uint32_t*>(a.allocBits.base);
  in.markBits = markBits;
  in.descriptors = reinterpret_cast<const uint32_t*>(a.descriptors.base);
  in.roots = reinterpret_cast<const uint32_t*>(a.roots.base);
  in.rootCount = a.rootCount;
  in.stack = reinterpret_cast<uint32_t*>(a.markStack.base);
  in.stackCapacity = a.markStackEntries();
  MarkResult result;
  markHeap(in, result);
  if (result.status != kMarkOk) _exit(wire::kExitHeapCorrupt);

  if (a.fault == kFaultZombieMark) {
    // Find a granule that is not an object start and claim it is live.
    const uint32_t* alloc = in.allocBits;
    for (uint32_t g = kSpanGranules; g < a.topGranule; g++) {
      if (!((alloc[g >> 5] >> (g & 31)) & 1)) {
        markBits[g >> 5] |= 1u << (g & 31);
        break;
      }
    }
  }

  const uint32_t chunkCount = (bitmapBytes + wire::kChunkBytes - 1) / wire::kChunkBytes;
  uint8_t header[wire::kHeaderBytes];
  memset(header, 0, sizeof header);
  put32(header + 0, wire::kHeaderMagic);
  uint16_t version = wire::kVersion, headerBytes = wire::kHeaderBytes;
  memcpy(header + 4, &version, 2);
  memcpy(header + 6, &headerBytes, 2);
  put32(header + 8, a.fault == kFaultWrongCycle ? a.cycleId + 1 : a.cycleId);
  put32(header + 12, kGranuleBytes);
  put32(header + 16, a.topGranule);
  put32(header + 20, bitmapBytes);
  put32(header + 24, wire::kChunkBytes);
  put32(header + 28, chunkCount);
  put32(header + 32, uint32_t(getpid()));
  uint32_t headerSum = wire::checksumWords(reinterpret_cast<const uint32_t*>(header), 9, wire::kHeaderSeed);
  put32(header + 36, headerSum);
  if (!writeAll(a.out, header, sizeof header)) _exit(wire::kExitWriteFailed);

  uint32_t fold = wire::mix(wire::kStreamSeed, headerSum);
  for (uint32_t i = 0; i < chunkCount; i++) {
    if (a.fault == kFaultTruncate && i == chunkCount / 2) _exit(0);
    if (a.fault == kFaultStallMidStream && i == chunkCount / 2) sleepMs(a.faultArg);
    if (a.fault == kFaultSlowStream && i > 0) sleepMs(a.faultArg);
    uint32_t offset = i * wire::kChunkBytes;
    uint32_t bytes = bitmapBytes - offset < wire::kChunkBytes ? bitmapBytes - offset : wire::kChunkBytes;
    uint32_t* payload = markBits + offset / 4;
    uint32_t sum = wire::checksumWords(payload, bytes / 4, wire::chunkSeed(a.cycleId, i));
    fold = wire::mix(fold, sum);
    if (a.fault == kFaultCorruptChunk && i == chunkCount / 2) payload[0] ^= 0x10;
    uint8_t head[wire::kChunkHeadBytes];
    put32(head + 0, wire::kChunkMagic);
    put32(head + 4, i);
    put32(head + 8, bytes);
    put32(head + 12, sum);
    if (!writeAll(a.out, head, sizeof head) || !writeAll(a.out, payload, bytes)) _exit(wire::kExitWriteFailed);
  }
  if (a.fault == kFaultTruncate) _exit(0);  // a stream of < 2 chunks: drop the trailer

  struct rusage usage;
  memset(&usage, 0, sizeof usage);
  syscall(SYS_getrusage, RUSAGE_SELF, &usage);
  uint8_t trailer[wire::kTrailerBytes];
  memset(trailer, 0, sizeof trailer);
  put32(trailer + 0, wire::kTrailerMagic);
  put32(trailer + 4, wire::kStatusOk);
  put64(trailer + 8, result.objects);
  put64(trailer + 16, result.bytes);
  put64(trailer + 24, result.ns);
  put64(trailer + 32, monotonicNs() - a.forkedAt);
  put64(trailer + 40, uint64_t(usage.ru_maxrss));
  put32(trailer + 48, result.stackHighWater);
  put32(trailer + 52, result.overflowRescans);
  put32(trailer + 56, countCopiedPages(a, pagemap, uint64_t(a.topGranule) * kGranuleBytes, a.pageBytes));
  uint32_t trailerSum = wire::checksumWords(reinterpret_cast<const uint32_t*>(trailer), 15, fold);
  if (a.fault == kFaultBadTrailer) trailerSum++;
  put32(trailer + 60, trailerSum);
  if (!writeAll(a.out, trailer, sizeof trailer)) _exit(wire::kExitWriteFailed);

  if (a.fault == kFaultExitNonZero) _exit(3);
  if (a.fault == kFaultSignalAfterStream) kill(getpid(), SIGKILL);
  // (The pipe stays open until _exit: a child tearing down a large address space.)
  if (a.fault == kFaultDelayBeforeExit) sleepMs(a.faultArg);
  _exit(wire::kExitOk);
}

}  // namespace

uint64_t threadCpuNs() {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

ForkResult startForkCycle(const ForkRequest& request) {
  ForkResult result;
  const uint64_t cpuStart = threadCpuNs();
  const ForkRequest& req = request;
  if (req.fault == kFaultForkEagain || req.fault == kFaultForkEnomem) {
    result.error = req.fault == kFaultForkEagain ? EAGAIN : ENOMEM;
    return result;
  }
  // One fork at a time in the whole process: another thread's exclusions
  // must never be in force while this one forks.
  ForkWindow window;

  // Everything the child needs is computed here, before the fork, and copied
  // onto this stack: the child calls nothing that might initialize state
  // (sysconf, function statics) and reads no malloc'd memory.
  const HeapMemory& h = *req.heap;
  ChildArgs a;
  a.arena = h.arena;
  a.allocBits = h.allocBits;
  a.markBits = h.markBits;
  a.markStack = h.markStack;
  a.descriptors = h.descriptors;
  a.roots = h.roots;
  a.scratch = h.scratch;
  a.wipeOnFork = h.wipeOnFork;
  a.cycleId = req.cycleId;
  a.topGranule = req.topGranule;
  a.rootCount = req.rootCount;
  a.fault = req.fault;
  a.faultArg = req.faultArg;
  a.pageBytes = systemPageSize();
  a.parent = getpid();
  a.probe = 0;

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    result.error = errno;
    return result;
  }
  fcntl(fds[1], F_SETPIPE_SZ, kPipeBytes);
  a.out = fds[1];

  // No huge-page merging while a child shares the arena (huge_page_restore.cc).
  holdHugePageRestore(req.heap);

  // Selective fork (fork_exclusion.h). Without _Fork, fork()'s child-side
  // atfork handlers walk malloc's arenas: never exclude anything then.
  const bool selective = req.selective && _Fork != nullptr;
  const bool plan = selective || req.fault == kFaultTouchExcluded;
  uint64_t prepareStart = monotonicNs();
  if (plan) {
    Region region[7] = {a.arena, a.allocBits, a.markBits, a.markStack, a.descriptors, a.roots, a.scratch};
    constexpr size_t kMaxSpanTables = 256;
    AddressRange keep[7 + kMaxSpanTables + 3];
    size_t keepCount = 0;
    for (const Region& r : region) {
      uintptr_t base = reinterpret_cast<uintptr_t>(r.base);
      keep[keepCount++] = AddressRange{base, base + r.bytes};
    }
    // Every heap's span table is DONTFORK for life: neither mark nor restore it.
    Region spans[kMaxSpanTables];
    size_t spanCount = listSpanTables(spans, kMaxSpanTables);
    for (size_t i = 0; i < spanCount && i < kMaxSpanTables; i++) {
      uintptr_t base = reinterpret_cast<uintptr_t>(spans[i].base);
      keep[keepCount++] = AddressRange{base, base + spans[i].bytes};
    }
    // This thread's stack below a local (the child's frames, ChildArgs
    // itself), its TCB (pthread_self() is its address in glibc) and its
    // static TLS block below it (errno lives there).
    const uintptr_t local = reinterpret_cast<uintptr_t>(&a);
    const uintptr_t tcb = reinterpret_cast<uintptr_t>(pthread_self());
    const uintptr_t tls = reinterpret_cast<uintptr_t>(&errno);
    keep[keepCount++] = AddressRange{local - (1u << 20), local + (64u << 10)};
    keep[keepCount++] = AddressRange{tcb - (64u << 10), tcb + (4u << 10)};
    keep[keepCount++] = AddressRange{tls - (4u << 10), tls + (4u << 10)};
    ExclusionFigures f = applyForkExclusions(keep, keepCount, selective && spanCount <= kMaxSpanTables);
    result.selective = selective && f.ok && spanCount <= kMaxSpanTables;
    result.readMapsNs = f.readNs;
    result.adviseNs = f.adviseNs;
    result.mappings = f.mappings;
    result.excludedMappings = result.selective ? f.excluded : 0;
    result.excludedBytes = result.selective ? f.excludedBytes : 0;
    result.madviseCalls = f.calls;
    result.mapsCached = f.fromCache;
    a.probe = f.probe;
  }

  // A child that excluded nothing shares every heap's arena: no heap's
  // restore thread may collapse until it is reaped (child_registry.cc).
  const bool sharesAll = !result.selective;
  if (sharesAll) holdEveryHugePageRestore();
  // No heap's prefault thread faults pages in across the fork (fork() waits
  // for a fault in flight in a mapping it copies; a chunk already taken is
  // waited for here), nor, for a child that shares every arena, until that
  // child is reaped (growth_prefault.cc).
  holdEveryGrowthPrefault();
  // Nor, after the fork, does this heap's thread fault in anything below the
  // top: where it had fallen behind the allocator it would write (an atomic
  // OR of 0) pages the child shares, each one copied (the likely cause of
  // 113-149 pages the child counted copied beyond the parent's own writes
  // in runs under load: the demo, cow-map; reproduced with a thread made
  // to fall behind, test/growth-prefault.test.ts).
  prefaultSkipBelow(req.heap, uint64_t(req.topGranule) * kGranuleBytes);
  // The arena above the top is the parent's alone: the child marks below it,
  // and pages faulted in there ahead of the allocator (growth_prefault.cc)
  // would otherwise be shared, and copied at the parent's first write. From
  // the first whole huge page up, so that no huge page is split. Only for a
  // heap with a prefault thread: without one the two calls buy nothing, and
  // they are in the pause. (The thread is made and stopped on this thread,
  // the heap's owner, so the pointer is read without the prefault lock.)
  Region tail;
  if (result.selective && h.growthPrefaulter != nullptr) {
    const size_t unit = h.hugePages ? kHugePageBytes : systemPageSize();
    const uint64_t top = (uint64_t(req.topGranule) * 16 + unit - 1) / unit * unit;
    if (top < h.arena.bytes && madvise(h.arena.base + top, h.arena.bytes - top, MADV_DONTFORK) == 0) {
      tail = Region{h.arena.base + top, size_t(h.arena.bytes - top)};
    }
  }

  // Block every signal across fork(), so that no handler of the parent's can
  // run in the child before it has its own mask (it keeps this one).
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  a.moveAway = cpusAwayFromHere(req.heap, &a.awayCpus);
  const uint64_t forkCpuStart = threadCpuNs();
  uint64_t start = monotonicNs();
  a.forkedAt = start;
  pid_t pid = _Fork ? _Fork() : fork();
  if (pid == 0) {
    // The child's first instruction (see the top of this file).
    rawSyscall2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
    if (a.moveAway) rawSyscall3(SYS_sched_setaffinity, 0, sizeof(a.awayCpus), reinterpret_cast<long>(&a.awayCpus));
    childMain(a);
  }
  uint64_t end = monotonicNs();
  int forkErrno = errno;
  if (pid > 0) volunteerChild(pid);
  if (plan) result.restoreNs = restoreForkExclusions(threadCpuNs() - forkCpuStart);
  if (tail.base) madvise(tail.base, tail.bytes, MADV_DOFORK);
  if (!sharesAll || pid < 0) releaseEveryGrowthPrefault();
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  close(fds[1]);
  result.prepareNs = plan ? start - prepareStart : 0;
  if (pid < 0) {
    close(fds[0]);
    if (sharesAll) releaseEveryHugePageRestore();
    result.error = forkErrno;
    return result;
  }
  result.pid = pid;
  result.readFd = fds[0];
  result.forkNs = end - start;
  result.cpuNs = threadCpuNs() - cpuStart;
  result.forkStartNs = start;
  return result;
}

}  // namespace forkgc
