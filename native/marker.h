// The marker: one precise mark loop, run in the forked child (fork mode) and
// in-process (stw mode), so both modes mark identically (docs/design.md, invariant 5).
//
// It must stay async-signal-safe: it reads and writes only memory prepared
// before fork() and calls nothing but clock_gettime. No allocation, no
// recursion, no exceptions: the mark stack is a fixed region, and when it is
// full the object stays marked but unscanned and a flag asks for a rescan of
// the heap, as Boehm's collector does, so overflow loses no mark.
#pragma once
#include <cstdint>

namespace forkgc {

struct MarkInput {
  const uint8_t* arena;
  uint32_t topGranule;           // objects lie in granules [1, topGranule)
  const uint32_t* allocBits;     // object starts
  uint32_t* markBits;            // must be all zero on entry
  const uint32_t* descriptors;   // kDescriptorWords per typeId
  const uint32_t* roots;
  uint32_t rootCount;
  uint32_t* stack;
  uint32_t stackCapacity;        // >= 1
};

enum MarkStatus : uint32_t { kMarkOk = 0, kMarkCorrupt = 1 };

struct MarkResult {
  uint64_t objects = 0;
  uint64_t bytes = 0;
  uint64_t ns = 0;
  uint32_t stackHighWater = 0;
  uint32_t overflowRescans = 0;
  uint32_t status = kMarkOk;
  uint32_t badRef = 0;           // the reference that was not an object, if corrupt
};

void markHeap(const MarkInput& in, MarkResult& out);

// Size in bytes of the object at `granule` (header included), rounded up to
// whole granules; 0 when its header is not a valid object.
uint64_t objectBytes(const uint8_t* arena, const uint32_t* descriptors, uint32_t granule);

uint64_t monotonicNs();

}  // namespace forkgc
