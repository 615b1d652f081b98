// A process that forbids code generation from strings
// (--disallow-code-generation-from-strings) still gets a working heap: the
// accessors, alloc(init) and the allocator's preparers are compiled only
// where that is allowed (src/platform/code-generation.ts), and the generic
// closures, with the same semantics, serve otherwise. Found in review: the
// preparers made `import 'forkgc'` throw EvalError there, and defineStruct
// did before them.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const FIXTURE = resolve(__dirname, 'fixtures/no-code-generation.mjs');

describe('without code generation from strings', () => {
  it.each(['fork', 'stw'])('%s: the heap loads, allocates, collects and checks with its generic code', async (mode) => {
    const { stdout } = await run(process.execPath, ['--disallow-code-generation-from-strings', FIXTURE, mode], { timeout: 60_000 });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out.codeGenerationAllowed, 'the flag took effect').toBe(false);
    expect(out.error).toBeUndefined();
    // 4 rounds x 2000 kept nodes; values 0, 10, ..., 19990 each round.
    expect(out.result).toEqual({
      count: 8000, sum: 4 * 19_990_000, zeros: 1000, make: [true, 7, 0.5, true, 'ERR_FIELD_VALUE'], stale: expect.stringMatching(/^ERR_/), string: 'String for key 12 in leaf node, a rope', map: true,
    });
  }, 90_000);
});
