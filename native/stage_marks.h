// The parent's intake of one bitmap chunk from the child (stage_marks.cc says why native).
#pragma once
#include <cstddef>
#include <cstdint>

namespace forkgc {

struct HeapMemory;

// stageChunk's results below zero; 0 and up is the number of marks staged.
constexpr int64_t kStageBadChecksum = -1;  // the payload is not what the child summed: nothing staged
constexpr int64_t kStageZombie = -2;       // a mark on a granule with no object start (staged up to it)
constexpr int64_t kStageOutOfRange = -3;   // words past the heap's bitmaps: nothing staged

// Checks `count` payload words against `expectedSum` (wire::checksumWords
// with `seed`), then ORs them into the heap's mark bitmap at word
// `wordOffset`, refusing a mark whose allocation bit is clear. The same
// checks, in the same order, as src/collector/stream.ts (checksumWords, then
// stageMarks), which stays the reference and gives the precise error.
int64_t stageChunk(HeapMemory* heap, const uint32_t* words, size_t count, uint32_t seed, uint32_t expectedSum,
                   size_t wordOffset);

}  // namespace forkgc
