// The wire format of the pipe from the GC child to the parent. Defined here
// once and mirrored once in src/collector/stream.ts; test/binding.test.ts
// binds them.
//
// A stream is a header, chunkCount chunks and a trailer, all little-endian:
//
// Header (40 bytes)
// | offset | bytes | field                                                |
// |--------|-------|------------------------------------------------------|
// |      0 |     4 | magic 'FKGC' (0x43474B46)                            |
// |      4 |     2 | version (1)                                          |
// |      6 |     2 | headerBytes (40)                                     |
// |      8 |     4 | cycleId                                              |
// |     12 |     4 | granuleBytes (16)                                    |
// |     16 |     4 | topGranule: the bitmap covers granules [0, top)      |
// |     20 |     4 | bitmapBytes = ceil(top / 32) * 4                     |
// |     24 |     4 | chunkBytes: payload of every chunk but the last      |
// |     28 |     4 | chunkCount                                           |
// |     32 |     4 | childPid                                             |
// |     36 |     4 | checksum of bytes 0..35 (seed kHeaderSeed)           |
//
// Chunk (16-byte head, then payloadBytes of mark bitmap)
// | offset | bytes | field                                                |
// |--------|-------|------------------------------------------------------|
// |      0 |     4 | magic 'CHNK' (0x4B4E4843)                            |
// |      4 |     4 | index (0, 1, ...)                                    |
// |      8 |     4 | payloadBytes (a multiple of 4)                       |
// |     12 |     4 | checksum of the payload, seed chunkSeed(cycle, index)|
//
// Trailer (64 bytes)
// | offset | bytes | field                                                |
// |--------|-------|------------------------------------------------------|
// |      0 |     4 | magic 'FKGE' (0x45474B46)                            |
// |      4 |     4 | status (0 = marked the whole snapshot)               |
// |      8 |     8 | objectsMarked                                        |
// |     16 |     8 | bytesMarked                                          |
// |     24 |     8 | markNs: marking time in the child                    |
// |     32 |     8 | childNs: fork to trailer, in the child               |
// |     40 |     8 | childMaxRssKb (getrusage, the child's own figure)    |
// |     48 |     4 | markStackHighWater                                   |
// |     52 |     4 | overflowRescans                                      |
// |     56 |     4 | cowPages: arena pages the parent copied meanwhile    |
// |     60 |     4 | checksum of bytes 0..59, seeded with the stream fold |
//
// cowPages is counted by the child just before its trailer: a page of the
// snapshot that the parent has written since the fork was copied for the
// parent, so the original is now mapped by the child alone; /proc/self/pagemap
// says so (bit 56, "exclusively mapped"). Measured there it cannot race with
// the child's exit, as a count taken by the parent would. 0xFFFFFFFF when
// pagemap could not be read.
//
// The stream fold starts at kStreamSeed and mixes in the header checksum and
// then every chunk checksum in order, so the trailer's checksum covers the
// whole stream: a dropped, repeated or reordered chunk fails it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace forkgc {
namespace wire {

constexpr uint32_t kHeaderMagic = 0x43474B46;   // "FKGC"
constexpr uint32_t kChunkMagic = 0x4B4E4843;    // "CHNK"
constexpr uint32_t kTrailerMagic = 0x45474B46;  // "FKGE"
constexpr uint16_t kVersion = 2;
constexpr uint32_t kHeaderBytes = 40;
constexpr uint32_t kChunkHeadBytes = 16;
constexpr uint32_t kTrailerBytes = 64;
// 64 KiB: the parent validates and stages a chunk in one go on its main
// thread, and Node reads a pipe 64 KiB at a time, so a bigger chunk made one
// read in four a stall of four reads' work (measured: 1.2-2.5 ms at 256 KiB).
constexpr uint32_t kChunkBytes = 64 * 1024;
constexpr uint32_t kHeaderSeed = 0x464B4743;
constexpr uint32_t kStreamSeed = 0x53545245;

// One step of the checksum: order-sensitive, and the added constant keeps an
// all-zero input (most of a sparse bitmap) from pinning the state at zero.
inline uint32_t mix(uint32_t h, uint32_t w) {
  uint32_t x = h ^ w;
  x = (x << 5) | (x >> 27);
  return x * 0x85EBCA6Bu + 0x6B43A9B5u;
}

inline uint32_t finish(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  return h;
}

// Four lanes, each a chain of mix(): the first count % 4 words go one each
// into lanes 0, 1, 2, then every group of four one into each lane, and the
// lanes are mixed together in order at the end. One chain waits for its
// multiply at every word (about 4 ms for the 8 MiB bitmap of a 1 GiB heap,
// on the parent's main thread and again in the child); four independent
// ones keep the multiplier busy (wire version 2; version 1 had one lane).
// Still order-sensitive: a word moved within its lane, or between lanes,
// changes the sum. (The odd words come first so that the JavaScript loop,
// src/collector/stream.ts, has nothing after it but its return.)
inline uint32_t checksumWords(const uint32_t* words, size_t count, uint32_t seed) {
  uint32_t h0 = seed, h1 = seed ^ 0x9E3779B9u, h2 = seed ^ 0x7F4A7C15u, h3 = seed ^ 0xF39CC060u;
  size_t i = 0;
  size_t head = count & 3;
  if (head > 0) h0 = mix(h0, words[i++]);
  if (head > 1) h1 = mix(h1, words[i++]);
  if (head > 2) h2 = mix(h2, words[i++]);
  for (; i < count; i += 4) {
    h0 = mix(h0, words[i]);
    h1 = mix(h1, words[i + 1]);
    h2 = mix(h2, words[i + 2]);
    h3 = mix(h3, words[i + 3]);
  }
  return finish(mix(mix(mix(h0, h1), h2), h3));
}

inline uint32_t chunkSeed(uint32_t cycleId, uint32_t index) {
  return cycleId * 0x9E3779B1u + index;
}

// Exit codes of the child, read by the parent from waitpid().
constexpr int kExitOk = 0;
constexpr int kExitOrphaned = 70;     // the parent was gone before PDEATHSIG was armed
constexpr int kExitHeapCorrupt = 71;  // the marker met a reference that is not an object
constexpr int kExitWriteFailed = 72;  // the pipe closed under the child
constexpr int kExitFault = 73;        // an injected fault (testing only)

// Marker status in the trailer.
constexpr uint32_t kStatusOk = 0;

}  // namespace wire
}  // namespace forkgc
