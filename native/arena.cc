#include "arena.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <unordered_map>

#include "fork_exclusion.h"
#include "growth_prefault.h"
#include "huge_page_restore.h"
#include "layout.h"

namespace forkgc {

namespace {

std::mutex registryMutex;
std::unordered_map<int, HeapMemory*> registry;
int nextId = 1;

size_t roundUp(size_t n, size_t unit) { return (n + unit - 1) / unit * unit; }

// Reserves address space only: MAP_NORESERVE, and pages are committed by the
// kernel on first touch. `align` > page size over-reserves and trims so that
// huge pages can back the region.
bool reserve(Region& r, size_t bytes, size_t align) {
  bytes = roundUp(bytes, systemPageSize());
  size_t span = bytes + (align > systemPageSize() ? align : 0);
  void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return false;
  uint8_t* base = static_cast<uint8_t*>(p);
  if (span != bytes) {
    uint8_t* aligned = reinterpret_cast<uint8_t*>(roundUp(reinterpret_cast<uintptr_t>(base), align));
    if (aligned > base) munmap(base, aligned - base);
    uint8_t* end = aligned + bytes;
    uint8_t* spanEnd = base + span;
    if (spanEnd > end) munmap(end, spanEnd - end);
    base = aligned;
  }
  r.base = base;
  r.bytes = bytes;
  return true;
}

void unmap(Region& r) {
  if (r.base) munmap(r.base, r.bytes);
  r.base = nullptr;
  r.bytes = 0;
}

void unmapAll(HeapMemory* h) {
  unmap(h->arena);
  unmap(h->allocBits);
  unmap(h->markBits);
  unmap(h->markStack);
  unmap(h->descriptors);
  unmap(h->roots);
  unmap(h->spans);
  unmap(h->scratch);
}

}  // namespace

size_t systemPageSize() {
  static const size_t size = size_t(sysconf(_SC_PAGESIZE));
  return size;
}

void widenToCreatorCpus(const HeapMemory& h, pthread_t thread) {
  if (!h.creatorCpusKnown) return;
  cpu_set_t cpus;
  if (pthread_getaffinity_np(thread, sizeof(cpus), &cpus) != 0) return;
  CPU_OR(&cpus, &cpus, &h.creatorCpus);
  pthread_setaffinity_np(thread, sizeof(cpus), &cpus);
}

uint32_t HeapMemory::spanCount() const { return uint32_t(arena.bytes / kSpanBytes); }

HeapMemory* createHeapMemory(const HeapOptions& o) {
  // Not while another thread forks selectively: a span table mapped and
  // made DONTFORK inside its window, within one of its excluded runs, would
  // be made DOFORK again by its restore (found in review).
  ForkWindow window;
  forgetForkExclusions();
  HeapMemory* h = new HeapMemory();
  uint64_t arenaBytes = roundUp(o.arenaBytes, kSpanBytes);
  uint64_t granules = arenaBytes / kGranuleBytes;
  bool ok = reserve(h->arena, arenaBytes, o.hugePages ? kHugePageBytes : kSpanBytes) &&
            reserve(h->allocBits, granules / 8, 0) &&
            reserve(h->markBits, granules / 8, 0) &&
            reserve(h->markStack, size_t(o.markStackEntries) * 4, 0) &&
            reserve(h->descriptors, size_t(kMaxTypes) * kDescriptorWords * 4, 0) &&
            reserve(h->roots, size_t(o.maxRoots) * 4, 0) &&
            reserve(h->spans, size_t(arenaBytes / kSpanBytes) * kSpanWords * 4, 0) &&
            reserve(h->scratch, kScratchBytes, 0);
  if (!ok) {
    int saved = errno;
    unmapAll(h);
    delete h;
    errno = saved;
    return nullptr;
  }
  h->hugePages = o.hugePages && madvise(h->arena.base, h->arena.bytes, MADV_HUGEPAGE) == 0;
  // Asked for 4 KiB pages: a system with transparent huge pages "always"
  // would back the arena with huge pages all the same.
  if (!o.hugePages) madvise(h->arena.base, h->arena.bytes, MADV_NOHUGEPAGE);
  h->wipeOnFork = madvise(h->markBits.base, h->markBits.bytes, MADV_WIPEONFORK) == 0 &&
                  madvise(h->markStack.base, h->markStack.bytes, MADV_WIPEONFORK) == 0 &&
                  madvise(h->scratch.base, h->scratch.bytes, MADV_WIPEONFORK) == 0;
  // Not fatal if refused: the child then shares (and ignores) the span table.
  madvise(h->spans.base, h->spans.bytes, MADV_DONTFORK);
  h->creatorCpusKnown = sched_getaffinity(0, sizeof(h->creatorCpus), &h->creatorCpus) == 0;
  std::lock_guard<std::mutex> lock(registryMutex);
  h->id = nextId++;
  h->attachments = 1;
  registry[h->id] = h;
  return h;
}

HeapMemory* attachHeapMemory(int id) {
  std::lock_guard<std::mutex> lock(registryMutex);
  auto it = registry.find(id);
  if (it == registry.end() || it->second->destroyed) return nullptr;
  it->second->attachments++;
  return it->second;
}

void detachHeapMemory(HeapMemory* h) {
  std::lock_guard<std::mutex> lock(registryMutex);
  if (--h->attachments == 0) {
    registry.erase(h->id);
    unmapAll(h);
    forgetForkExclusions();
    delete h;
  }
}

void destroyHeapMemory(HeapMemory* h) {
  h->destroyed = true;
  stopHugePageRestore(h);
  stopGrowthPrefault(h);
  detachHeapMemory(h);
}

int releaseArenaRange(HeapMemory* h, uint64_t offset, uint64_t bytes) {
  // (Each bound on its own: offset + bytes may wrap.)
  if (offset % systemPageSize() || bytes % systemPageSize() || offset > h->arena.bytes || bytes > h->arena.bytes - offset)
    return EINVAL;
  return madvise(h->arena.base + offset, bytes, MADV_DONTNEED) == 0 ? 0 : errno;
}

}  // namespace forkgc

namespace forkgc {
HeapMemory* lookupHeapMemory(int id, bool includeDestroyed) {
  std::lock_guard<std::mutex> lock(registryMutex);
  auto it = registry.find(id);
  if (it == registry.end() || (it->second->destroyed && !includeDestroyed)) return nullptr;
  return it->second;
}

size_t listSpanTables(Region* out, size_t max) {
  std::lock_guard<std::mutex> lock(registryMutex);
  size_t n = 0;
  for (const auto& entry : registry) {
    if (n < max) out[n] = entry.second->spans;
    n++;
  }
  return n;
}
}  // namespace forkgc
