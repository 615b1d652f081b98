#include "marker.h"

#include <time.h>

#include "layout.h"

namespace forkgc {

uint64_t monotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

namespace {

inline uint64_t roundToGranules(uint64_t bytes) {
  return (bytes + kGranuleBytes - 1) & ~uint64_t(kGranuleBytes - 1);
}

// The object-size rule, the C++ side's only copy (TypeScript's is objectBytes
// in src/memory/header.ts; test/binding.test.ts checks they agree): bytes an
// object occupies, header included, rounded up to granules; 0 for a kind
// with no size.
inline uint64_t sizeByKind(uint32_t kind, const uint32_t* desc, uint32_t length) {
  switch (kind) {
    case kKindStruct: return desc[3];
    case kKindRefArray: return roundToGranules(kHeaderBytes + uint64_t(length) * 4);
    case kKindLeaf: return roundToGranules(kHeaderBytes + uint64_t(length));
    default: return 0;
  }
}


inline bool testBit(const uint32_t* bits, uint32_t g) { return (bits[g >> 5] >> (g & 31)) & 1; }

// References are queued as edges, unchecked and unmarked, and tested a few
// pops later: when an edge is popped, its mark-bit word, allocation-bit word
// and object header are prefetched, and it waits in a small FIFO until
// kPrefetchDepth more edges have been popped, by which time all three have
// (mostly) arrived; only then is it checked, marked and scanned. Testing the
// bits at push time (node enqueuing) left those two bitmap reads as cache
// misses of their own. Edge enqueuing with a FIFO prefetch buffer: Garner,
// Blackburn and Frampton, "Effective prefetch for mark-sweep garbage
// collection" (ISMM 2007); Cher, Hosking and Vijaykumar (ASPLOS 2004).
constexpr uint32_t kPrefetchDepth = 32;

class Marker {
 public:
  Marker(const MarkInput& in, MarkResult& out) : in_(in), out_(out) {}

  void run() {
    for (uint32_t i = 0; i < in_.rootCount && ok(); i++) visit(in_.roots[i]);
    drain();
    // Objects that did not fit on the stack are marked but unscanned: rescan
    // every marked object (children already marked are skipped) until a pass
    // overflows no more.
    while (overflowed_ && ok()) {
      overflowed_ = false;
      out_.overflowRescans++;
      rescan();
    }
  }

 private:
  bool ok() const { return out_.status == kMarkOk; }

  void corrupt(uint32_t ref) {
    if (ok()) {
      out_.status = kMarkCorrupt;
      out_.badRef = ref;
    }
  }

  // Marks `ref` if it is an object not yet marked; returns whether it was
  // newly marked. A reference that is no object makes the cycle corrupt.
  inline bool mark(uint32_t ref) {
    if (ref >= in_.topGranule || !testBit(in_.allocBits, ref)) {
      corrupt(ref);
      return false;
    }
    uint32_t& word = in_.markBits[ref >> 5];
    uint32_t mask = 1u << (ref & 31);
    if (word & mask) return false;
    word |= mask;
    out_.objects++;
    return true;
  }

  // Queues the edge to `ref` (tested when it is popped, drain()); when the
  // stack is full, marks the object now and asks for a rescan, which scans
  // it (its bytes are counted now, because the rescan's scan does not count).
  inline void visit(uint32_t ref) {
    if (ref == 0) return;
    if (depth_ < in_.stackCapacity) {
      in_.stack[depth_++] = ref;
      if (depth_ > out_.stackHighWater) out_.stackHighWater = depth_;
      return;
    }
    if (mark(ref)) {
      out_.bytes += objectBytes(in_.arena, in_.descriptors, ref);
      overflowed_ = true;
    }
  }

  void drain() {
    uint32_t ring[kPrefetchDepth];
    uint32_t head = 0, count = 0;
    while (ok()) {
      while (count < kPrefetchDepth && depth_ > 0) {
        uint32_t ref = in_.stack[--depth_];
        if (ref < in_.topGranule) {
          __builtin_prefetch(in_.markBits + (ref >> 5));
          __builtin_prefetch(in_.allocBits + (ref >> 5));
          __builtin_prefetch(in_.arena + uint64_t(ref) * kGranuleBytes);
        }
        ring[(head + count) % kPrefetchDepth] = ref;
        count++;
      }
      if (count == 0) return;
      uint32_t ref = ring[head];
      head = (head + 1) % kPrefetchDepth;
      count--;
      if (mark(ref)) scan(ref, true);
    }
  }

  void rescan() {
    const uint32_t words = (in_.topGranule + 31) >> 5;
    for (uint32_t w = 0; w < words && ok(); w++) {
      uint32_t live = in_.markBits[w] & in_.allocBits[w];
      while (live) {
        uint32_t bit = __builtin_ctz(live);
        live &= live - 1;
        scan((w << 5) + bit, false);
        drain();
      }
    }
  }

  inline void scan(uint32_t ref, bool count) {
    const uint8_t* object = in_.arena + uint64_t(ref) * kGranuleBytes;
    uint16_t type = *reinterpret_cast<const uint16_t*>(object);
    uint32_t length = *reinterpret_cast<const uint32_t*>(object + 4);
    const uint32_t* desc = in_.descriptors + uint64_t(type) * kDescriptorWords;
    const uint32_t* fields = reinterpret_cast<const uint32_t*>(object + kHeaderBytes);
    uint64_t bytes;
    uint32_t refs;
    uint32_t kind = type == kTypeFree ? kKindUndefined : desc[0];
    switch (kind) {
      case kKindStruct: refs = desc[1]; break;
      case kKindRefArray: refs = length; break;
      case kKindLeaf: refs = 0; break;
      default: return corrupt(ref);
    }
    bytes = sizeByKind(kind, desc, length);
    if (uint64_t(ref) * kGranuleBytes + bytes > uint64_t(in_.topGranule) * kGranuleBytes) return corrupt(ref);
    if (count) out_.bytes += bytes;
    for (uint32_t i = 0; i < refs; i++) visit(fields[i]);
  }

  const MarkInput& in_;
  MarkResult& out_;
  uint32_t depth_ = 0;
  bool overflowed_ = false;
};

}  // namespace

uint64_t objectBytes(const uint8_t* arena, const uint32_t* descriptors, uint32_t granule) {
  const uint8_t* object = arena + uint64_t(granule) * kGranuleBytes;
  uint16_t type = *reinterpret_cast<const uint16_t*>(object);
  uint32_t length = *reinterpret_cast<const uint32_t*>(object + 4);
  if (type == kTypeFree) return 0;
  const uint32_t* desc = descriptors + uint64_t(type) * kDescriptorWords;
  return sizeByKind(desc[0], desc, length);
}

void markHeap(const MarkInput& in, MarkResult& out) {
  uint64_t start = monotonicNs();
  Marker(in, out).run();
  out.ns = monotonicNs() - start;
}

}  // namespace forkgc
