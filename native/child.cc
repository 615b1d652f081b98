// fork() and the body of the GC child.
//
// Why _Fork() and not fork(): fork() runs the pthread_atfork handlers that
// libraries in this process registered (glibc's malloc takes its arena locks,
// others may run arbitrary code) on the main thread inside the pause, for a
// child that will never call malloc. glibc >= 2.34's _Fork() is the bare system
// call with glibc's own bookkeeping (like D's druntime, which clones directly
// for its forked GC); it is async-signal-safe by specification. Where it is
// missing (older glibc) the weak reference is null and we fall back to fork().
//
// In the child, from _Fork() to _exit(), only async-signal-safe calls run:
// prctl, getppid, setrlimit, close_range/close, madvise, clock_gettime,
// nanosleep, getrusage (a raw system call), open/pread/close of
// /proc/self/pagemap into a buffer mapped before the fork, write, kill, _exit. Nothing
// allocates, locks, throws, or touches V8, libuv or stdio: the process was
// multi-threaded and every other thread vanished at fork, holding whatever
// locks it held.
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

#include <cstring>

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
uint32_t countCopiedPages(const HeapMemory& h, uint64_t bytes, size_t page) {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0xFFFFFFFFu;
  const uint64_t pages = (bytes + page - 1) / page;
  const uint64_t first = reinterpret_cast<uintptr_t>(h.arena.base) / page;
  uint64_t* entries = reinterpret_cast<uint64_t*>(h.scratch.base);
  const uint64_t perRead = h.scratch.bytes / 8;
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

[[noreturn]] void childMain(const ForkRequest& req, int out, pid_t parent, uint64_t forkedAt) {
  // Die with the parent; the getppid() check closes the race in which the
  // parent died before the prctl took effect.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(wire::kExitOrphaned);
  // The child holds the whole application's memory: no core dump, and not
  // ptrace-attachable by other unprivileged processes.
  prctl(PR_SET_DUMPABLE, 0);
  struct rlimit noCore = {0, 0};
  setrlimit(RLIMIT_CORE, &noCore);
  closeInheritedDescriptors(out);
  // Signals stay blocked (the mask was set before fork): a SIGINT/SIGTERM to
  // the process group is the parent's business; the child dies with it.

  HeapMemory& h = *req.heap;
  if (req.fault == kFaultExitBeforeMark) _exit(wire::kExitFault);
  if (req.fault == kFaultHang) for (;;) pause();
  if (req.fault == kFaultDelayBeforeMark) sleepMs(req.faultArg);

  uint32_t* markBits = reinterpret_cast<uint32_t*>(h.markBits.base);
  const uint32_t bitmapWords = (req.topGranule + 31) / 32;
  const uint32_t bitmapBytes = bitmapWords * 4;
  if (!h.wipeOnFork) {
    // The kernel did not zero our copy: drop it (private anonymous pages read
    // back as zero) rather than write every page.
    size_t page = req.pageBytes;
    madvise(markBits, (bitmapBytes + page - 1) / page * page, MADV_DONTNEED);
    madvise(h.markStack.base, h.markStack.bytes, MADV_DONTNEED);
  }

  MarkInput in;
  in.arena = h.arena.base;
  in.topGranule = req.topGranule;
  in.allocBits = reinterpret_cast<const uint32_t*>(h.allocBits.base);
  in.markBits = markBits;
  in.descriptors = reinterpret_cast<const uint32_t*>(h.descriptors.base);
  in.roots = reinterpret_cast<const uint32_t*>(h.roots.base);
  in.rootCount = req.rootCount;
  in.stack = reinterpret_cast<uint32_t*>(h.markStack.base);
  in.stackCapacity = h.markStackEntries();
  MarkResult result;
  markHeap(in, result);
  if (result.status != kMarkOk) _exit(wire::kExitHeapCorrupt);

  if (req.fault == kFaultZombieMark) {
    // Find a granule that is not an object start and claim it is live.
    const uint32_t* alloc = in.allocBits;
    for (uint32_t g = kSpanGranules; g < req.topGranule; g++) {
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
  put32(header + 8, req.fault == kFaultWrongCycle ? req.cycleId + 1 : req.cycleId);
  put32(header + 12, kGranuleBytes);
  put32(header + 16, req.topGranule);
  put32(header + 20, bitmapBytes);
  put32(header + 24, wire::kChunkBytes);
  put32(header + 28, chunkCount);
  put32(header + 32, uint32_t(getpid()));
  uint32_t headerSum = wire::checksumWords(reinterpret_cast<const uint32_t*>(header), 9, wire::kHeaderSeed);
  put32(header + 36, headerSum);
  if (!writeAll(out, header, sizeof header)) _exit(wire::kExitWriteFailed);

  uint32_t fold = wire::mix(wire::kStreamSeed, headerSum);
  for (uint32_t i = 0; i < chunkCount; i++) {
    if (req.fault == kFaultTruncate && i == chunkCount / 2) _exit(0);
    if (req.fault == kFaultStallMidStream && i == chunkCount / 2) sleepMs(req.faultArg);
    uint32_t offset = i * wire::kChunkBytes;
    uint32_t bytes = bitmapBytes - offset < wire::kChunkBytes ? bitmapBytes - offset : wire::kChunkBytes;
    uint32_t* payload = markBits + offset / 4;
    uint32_t sum = wire::checksumWords(payload, bytes / 4, wire::chunkSeed(req.cycleId, i));
    fold = wire::mix(fold, sum);
    if (req.fault == kFaultCorruptChunk && i == chunkCount / 2) payload[0] ^= 0x10;
    uint8_t head[wire::kChunkHeadBytes];
    put32(head + 0, wire::kChunkMagic);
    put32(head + 4, i);
    put32(head + 8, bytes);
    put32(head + 12, sum);
    if (!writeAll(out, head, sizeof head) || !writeAll(out, payload, bytes)) _exit(wire::kExitWriteFailed);
  }
  if (req.fault == kFaultTruncate) _exit(0);  // a stream of < 2 chunks: drop the trailer

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
  put64(trailer + 32, monotonicNs() - forkedAt);
  put64(trailer + 40, uint64_t(usage.ru_maxrss));
  put32(trailer + 48, result.stackHighWater);
  put32(trailer + 52, result.overflowRescans);
  put32(trailer + 56, countCopiedPages(h, uint64_t(req.topGranule) * kGranuleBytes, req.pageBytes));
  uint32_t trailerSum = wire::checksumWords(reinterpret_cast<const uint32_t*>(trailer), 15, fold);
  if (req.fault == kFaultBadTrailer) trailerSum++;
  put32(trailer + 60, trailerSum);
  if (!writeAll(out, trailer, sizeof trailer)) _exit(wire::kExitWriteFailed);

  if (req.fault == kFaultExitNonZero) _exit(3);
  if (req.fault == kFaultSignalAfterStream) kill(getpid(), SIGKILL);
  _exit(wire::kExitOk);
}

}  // namespace

ForkResult startForkCycle(const ForkRequest& request) {
  ForkResult result;
  // Everything the child needs is computed here, before the fork: the child
  // calls nothing that might initialize state (sysconf, function statics).
  ForkRequest req = request;
  req.pageBytes = systemPageSize();
  if (req.fault == kFaultForkEagain || req.fault == kFaultForkEnomem) {
    result.error = req.fault == kFaultForkEagain ? EAGAIN : ENOMEM;
    return result;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    result.error = errno;
    return result;
  }
  fcntl(fds[1], F_SETPIPE_SZ, kPipeBytes);

  // Block every signal across fork(), so that no handler of the parent's can
  // run in the child before it has its own mask (it keeps this one).
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_t parent = getpid();
  uint64_t start = monotonicNs();
  pid_t pid = _Fork ? _Fork() : fork();
  if (pid == 0) childMain(req, fds[1], parent, start);
  uint64_t end = monotonicNs();
  int forkErrno = errno;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    result.error = forkErrno;
    return result;
  }
  result.pid = pid;
  result.readFd = fds[0];
  result.forkNs = end - start;
  return result;
}

}  // namespace forkgc
