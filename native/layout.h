// Memory layout of a forkgc heap, shared by the marker (native) and the
// allocator and sweeper (TypeScript). src/memory/layout.ts mirrors every
// constant here; test/binding.test.ts checks the two against each other
// through the addon's layoutConstants(), so a change on one side only fails a
// test.
//
// A heap is a handful of private anonymous mappings made once, at creation:
//
// | region      | unit            | who reads / writes                         | at fork()        |
// |-------------|-----------------|--------------------------------------------|------------------|
// | arena       | 16-byte granule | mutator (typed-array views), sweeper       | copy-on-write    |
// | allocBits   | 1 bit / granule | allocator, sweeper; marker on overflow     | copy-on-write    |
// | markBits    | 1 bit / granule | marker writes; parent stages child's bits  | WIPEONFORK       |
// | markStack   | u32 / entry     | marker only                                | WIPEONFORK       |
// | descriptors | 16 bytes / type | written when a type is defined             | copy-on-write    |
// | roots       | u32 / handle    | root handles; marker reads                 | copy-on-write    |
// | spans       | 16 bytes / span | allocator, sweeper (atomics)               | DONTFORK         |
// | scratch     | 64 KiB          | the child only (pagemap reads)             | WIPEONFORK       |
//
// WIPEONFORK gives the child zero pages for its bitmap and stack, so neither
// side pays a copy for them; DONTFORK keeps the span table, which the child
// never reads, out of the page tables fork() has to copy.
#pragma once
#include <cstdint>

namespace forkgc {

// References are 32-bit granule indices into the arena; 0 is null. With
// 16-byte granules, 2^28 granules cover the 4 GiB a Node 20 typed array can
// view. A program's Ref carries more above the granule index (the slot's
// generation's low bits, or checked mode's epoch tag: src/api/refs.ts); the
// child and the heap's fields hold the bare granule index.
constexpr uint32_t kGranuleBytes = 16;
constexpr uint32_t kGranuleShift = 4;
constexpr uint64_t kMaxArenaBytes = uint64_t(1) << 32;

// The arena is cut into spans. Span 0 is reserved so that no object sits at
// granule 0 (the null reference).
constexpr uint32_t kSpanBytes = 64 * 1024;
constexpr uint32_t kSpanGranules = kSpanBytes / kGranuleBytes;
constexpr uint32_t kSpanBitmapWords = kSpanGranules / 32;  // a span's words in each bitmap

// Object header, at the first granule of every object:
//
// | offset | bytes | field                                                  |
// |--------|-------|--------------------------------------------------------|
// |      0 |     2 | typeId: 0 = free slot, 1 RefArray, 2 Bytes, 3 String,  |
// |        |       | kFirstStructType.. = struct types                      |
// |      2 |     2 | generation of the slot: +1 each time it is handed out  |
// |        |       | (the marker ignores it; src/memory/header.ts)          |
// |      4 |     4 | length: elements (RefArray) or bytes (Bytes, String);  |
// |        |       | 0 for structs                                          |
// |      8 |     … | payload: a struct's reference fields come first        |
constexpr uint32_t kHeaderBytes = 8;
constexpr uint16_t kTypeFree = 0;
constexpr uint16_t kTypeRefArray = 1;
constexpr uint16_t kTypeBytes = 2;
constexpr uint16_t kTypeString = 3;
constexpr uint16_t kFirstStructType = 16;
constexpr uint32_t kMaxTypes = 65536;

// Type descriptor, one per typeId (4 x u32):
//
// | word | field                                                           |
// |------|-----------------------------------------------------------------|
// |    0 | kind: 0 undefined, 1 struct, 2 reference array, 3 no references |
// |    1 | strongRefs: traced reference fields at payload offsets 0, 4, .. |
// |    2 | weakRefs: untraced reference fields that follow the strong ones |
// |    3 | sizeBytes: object size including the header (structs)          |
constexpr uint32_t kDescriptorWords = 4;
constexpr uint32_t kKindUndefined = 0;
constexpr uint32_t kKindStruct = 1;
constexpr uint32_t kKindRefArray = 2;
constexpr uint32_t kKindLeaf = 3;

// Span table entry (4 x i32), read and written by TypeScript only (the
// native side defines it so the layout has one definition):
//
// | word | field                                                            |
// |------|------------------------------------------------------------------|
// |    0 | state (kSpan* below), changed with Atomics                       |
// |    1 | sizeClass index, or kLargeClass for a large object's first span  |
// |    2 | live objects in the span                                          |
// |    3 | large: span count of the run; tail: index of the run's first span|
constexpr uint32_t kSpanWords = 4;
constexpr int32_t kSpanFree = 0;       // not in use; pages may be returned
constexpr int32_t kSpanInUse = 1;      // swept (or new); the allocator may use it
constexpr int32_t kSpanUnswept = 2;    // awaiting this cycle's sweep
constexpr int32_t kSpanSweeping = 3;   // claimed by one sweeper
constexpr int32_t kSpanLargeTail = 4;  // continuation of a large object's run
constexpr int32_t kSpanReserved = 5;   // span 0
constexpr int32_t kSpanSwept = 6;      // a sweeper's: allocation bits final, marks being cleared

// Word indices in a span table entry.
constexpr uint32_t kSwState = 0;
constexpr uint32_t kSwClass = 1;
constexpr uint32_t kSwLive = 2;
constexpr uint32_t kSwAux = 3;

// kSwAux of a free span: what its pages hold.
constexpr int32_t kFreeClean = 0;     // zero, still resident (or never touched)
constexpr int32_t kFreeDirty = 1;     // a dead object's bytes: zero or release before reuse
constexpr int32_t kFreeReleased = 2;  // given back to the OS (reads as zero)

// kSwAux of a span in use: whether its free slots read as zero. The sweep
// frees slots without touching them (bitmaps only), so the allocator zeroes
// a slot it hands out from a kSpanNeedzero span (Go's needzero).
constexpr int32_t kSpanZeroed = 0;    // every free slot reads as zero
constexpr int32_t kSpanNeedzero = 1;  // free slots may hold old bytes

}  // namespace forkgc
