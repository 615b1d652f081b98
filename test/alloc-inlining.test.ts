// A struct type's alloc() without init is the allocation fast path of every
// tree-building program, and it is only as fast as V8 makes it if TurboFan
// inlines it into the caller, together with the reference setters beside
// it. TurboFan inlines only functions of at most 460 bytes of bytecode, at
// most 920 bytes in all per optimized function (counting what each callee's
// own optimized code inlined, and reserving 1.2x a candidate's size), so the
// compiled alloc() keeps the init handling in a second function and pops
// the allocator's cached slot itself, and the accessors keep their
// constants short (src/api/accessors.ts, compileAlloc). This test reads
// V8's own inlining trace for a hot builder: not a timing, a property of
// the compiled code. (Before the split, V8 said "Cannot consider ... alloc
// for inlining (reason: 5)": bytecode over the limit; before the fast path
// moved into alloc(), a builder inlined its setters and then had no budget
// left for alloc(), which had inlined the heap's allocateSmall.)
import { describe, expect, it } from 'vitest';
import { traceFixture } from './helpers/v8-trace.js';

describe('alloc() is small enough for V8 to inline', () => {
  it('TurboFan inlines a struct type\'s alloc() and both reference setters into a hot tree builder', () => {
    const lines = traceFixture('alloc-inlining.mjs', '--trace-turbo-inlining');
    const inlinedTimes = (what: string, into: string) =>
      lines.filter((l) => l.startsWith('Inlining ') && l.includes(`<SharedFunctionInfo ${what}>} into`) &&
        l.endsWith(`<SharedFunctionInfo ${into}>}`)).length;
    expect(lines.filter((l) => /Cannot consider .*<SharedFunctionInfo alloc>/.test(l))).toEqual([]);
    // Both alloc() call sites (leaf and inner node) and both setters, in one optimization at least.
    expect(inlinedTimes('alloc', 'buildTree')).toBeGreaterThanOrEqual(2);
    expect(inlinedTimes('set_left', 'buildTree')).toBeGreaterThanOrEqual(1);
    expect(inlinedTimes('set_right', 'buildTree')).toBeGreaterThanOrEqual(1);
  }, 90_000);

  // make() checks every value before it allocates, so it is bigger than
  // alloc(): for a node of two references and an integer it was 490 bytes
  // (over the 460 limit: "reason: 5") until its failure calls took only
  // the field's index and the value (448 since).
  it('TurboFan inlines make() of a node with two references and an integer into a hot tree builder', () => {
    const lines = traceFixture('make-inlining.mjs', '--trace-turbo-inlining');
    expect(lines.filter((l) => /Cannot consider .*<SharedFunctionInfo make>/.test(l))).toEqual([]);
    expect(lines.filter((l) => l.startsWith('Inlining ') && l.includes('<SharedFunctionInfo make>} into') &&
      l.endsWith('<SharedFunctionInfo buildTree>}')).length).toBeGreaterThanOrEqual(1);
  }, 90_000);
});
