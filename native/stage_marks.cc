// The parent's intake of a bitmap chunk, in C++.
//
// Each 64 KiB chunk the child sends is checksummed and then ORed into the
// mark bitmap, every mark checked against the allocation bitmap (a mark on a
// granule where no object starts is a zombie: the cycle aborts). In
// JavaScript that took 0.2-0.4 ms a chunk on the main thread, and libuv
// hands a pipe up to 32 reads in one event-loop turn: at the end of a
// 800 MiB heap's marking the application stood still for 25-30 ms, longer
// than any other wait on the collector (measured: splay, 100k nodes, perf
// sched events of the main thread, on CPU the whole time). Here a chunk
// costs the checksum's dependency chain, a few cycles a word.
//
// The parent runs this on its main thread, not in the child: no
// restriction of "The child" applies.
#include "stage_marks.h"

#include "arena.h"
#include "wire.h"

namespace forkgc {

int64_t stageChunk(HeapMemory* h, const uint32_t* words, size_t count, uint32_t seed, uint32_t expectedSum,
                   size_t wordOffset) {
  size_t bitmapWords = h->allocBits.bytes / 4;
  if (h->markBits.bytes / 4 < bitmapWords) bitmapWords = h->markBits.bytes / 4;
  if (wordOffset > bitmapWords || count > bitmapWords - wordOffset) return kStageOutOfRange;
  if (wire::checksumWords(words, count, seed) != expectedSum) return kStageBadChecksum;
  const uint32_t* alloc = reinterpret_cast<const uint32_t*>(h->allocBits.base) + wordOffset;
  uint32_t* mark = reinterpret_cast<uint32_t*>(h->markBits.base) + wordOffset;
  int64_t staged = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t w = words[i];
    if (w == 0) continue;
    if (w & ~alloc[i]) return kStageZombie;
    mark[i] |= w;
    staged += __builtin_popcount(w);
  }
  return staged;
}

}  // namespace forkgc
