// The objects a program reads methods and accessors from on its hot paths
// (a struct type, its get/set/unchecked tables, the heap and its arrays,
// bytes, strings and maps, roots, registries, a map's iterator, and the
// addon's exports as the library holds them) must keep V8's fast
// properties. A struct type was once a frozen object literal with a
// getter (`unchecked`), which V8 makes dictionary-mode: every
// `Node.alloc()` in optimized code was then a LoadIC call (a generic
// lookup, 4-5 ns) before the inlined allocation, about a tenth of
// gcbench's main thread (src/api/type-registry.ts). Not a timing: V8's
// own answer (%HasFastProperties) for each object.
import { describe, expect, it } from 'vitest';
import { traceFixture } from './helpers/v8-trace.js';

describe('handle objects keep fast properties', () => {
  it('struct types, their accessor tables and the heap\'s namespaces are not dictionary-mode', () => {
    const lines = traceFixture('handle-shapes.mjs', '--allow-natives-syntax');
    const shapes = JSON.parse(lines.find((l) => l.startsWith('{'))!) as Record<string, boolean>;
    expect(Object.keys(shapes).length).toBe(30);
    expect(Object.entries(shapes).filter(([, fast]) => !fast).map(([name]) => name)).toEqual([]);
  }, 60_000);
});
