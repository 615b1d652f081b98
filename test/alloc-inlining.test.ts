// A struct type's alloc() without init is the allocation fast path of every
// tree-building program, and it is only as fast as V8 makes it if TurboFan
// inlines it into the caller (and the heap's allocateSmall/allocSmall into
// it). TurboFan inlines only functions of at most 460 bytes of bytecode, so
// the compiled alloc() keeps the init handling in a second function
// (src/api/accessors.ts, compileAlloc). This test reads V8's own inlining
// trace for a hot caller: not a timing, a property of the compiled code.
// (Before the split, V8 said "Cannot consider ... alloc for inlining
// (reason: 5)": bytecode over the limit.)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/alloc-inlining.mjs', import.meta.url));

describe('alloc() is small enough for V8 to inline', () => {
  it('TurboFan inlines a struct type\'s alloc() into a hot caller, and the heap\'s fast path into it', () => {
    const r = spawnSync(process.execPath, ['--trace-turbo-inlining', FIXTURE], {
      encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 2 ** 20,
    });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('done');
    const lines = r.stdout.split('\n');
    const inlined = (what: string, into: string) =>
      lines.some((l) => l.startsWith('Inlining ') && l.includes(`<SharedFunctionInfo ${what}>} into`) &&
        l.endsWith(`<SharedFunctionInfo ${into}>}`));
    expect(lines.filter((l) => /Cannot consider .*<SharedFunctionInfo alloc>/.test(l))).toEqual([]);
    expect(inlined('alloc', 'buildTree')).toBe(true);
    // The heap's allocation path, into alloc() or (once alloc is inlined) into buildTree itself.
    expect(inlined('allocateSmall', 'alloc') || inlined('allocateSmall', 'buildTree')).toBe(true);
  }, 90_000);
});
