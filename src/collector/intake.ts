// The heap's ChunkSink (src/collector/stream.ts): each validated chunk of
// the child's bitmap is checked and staged by the addon
// (native/stage_marks.cc: 5-10x faster than the JavaScript reference, whose
// cost at the end of a big heap's marking was the longest wait on the
// collector an application saw). A chunk the addon refuses is run through
// the reference to throw its precise error.
import type { NativeAddon } from '../platform/native.js';
import {
  STAGE_BAD_CHECKSUM, STAGE_OUT_OF_RANGE, StreamError, stageMarks, type ChunkSink,
} from './stream.js';

export function nativeChunkSink(
  addon: NativeAddon, heapId: number, allocBits: Uint32Array, markBits: Uint32Array, staged: (marks: number) => void,
): ChunkSink {
  return (words, seed, sum, wordOffset) => {
    const n = addon.stageChunk(heapId, words, seed, sum, wordOffset);
    if (n >= 0) {
      staged(n);
      return true;
    }
    if (n === STAGE_BAD_CHECKSUM) return false;
    if (n === STAGE_OUT_OF_RANGE) {
      // The header's geometry check makes this unreachable from a stream.
      throw new StreamError('BAD_GEOMETRY', `a chunk at word ${wordOffset} runs past the heap's bitmaps`);
    }
    // STAGE_ZOMBIE: the reference finds the same mark and says which granule.
    stageMarks(allocBits, markBits, words, wordOffset);
    throw new StreamError('ZOMBIE_MARK', 'a mark on a granule that holds no object (found by the addon)');
  };
}
