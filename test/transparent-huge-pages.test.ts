/**
 * A heap on a system whose transparent huge pages are `never`
 * (src/platform/transparent-huge-pages.ts). madvise(MADV_HUGEPAGE) succeeds
 * there and changes nothing, so the heap used to believe it had huge pages:
 * it gave memory back in 2 MiB groups and left its pages write-protected
 * after each cycle. Now it reads the setting and runs as a 4 KiB heap.
 *   - the setting's text read (the bracketed word is the one in force);
 *   - a heap made while the setting reads `never` (the reader replaced,
 *     the rest real) has no huge pages, opts out of them (VmFlags nh), and
 *     makes its pages writable again after a cycle;
 *   - under the machine's own setting, `hugePages: true` is what madvise
 *     says, as before.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const setting = vi.hoisted(() => ({ text: undefined as string | undefined, replaced: false }));
vi.mock('../src/platform/transparent-huge-pages.js', async (original) => {
  const real = await original<typeof import('../src/platform/transparent-huge-pages.js')>();
  return { ...real, readHugePageSetting: (p?: string) => (setting.replaced ? setting.text : real.readHugePageSetting(p)) };
});

const { hugePagesPossible, readHugePageSetting } = await import('../src/platform/transparent-huge-pages.js');
const { heapInternals } = await import('../src/internal.js');
const { closeHeapsAfterEach, makeHeap } = await import('./helpers/common.js');
const { vmFlagsAt } = await import('./helpers/smaps.js');

closeHeapsAfterEach();
afterEach(() => {
  setting.replaced = false;
});


describe('the system setting for transparent huge pages', () => {
  it('is read from its bracketed word: only `never` rules huge pages out', () => {
    expect(hugePagesPossible('always [madvise] never\n')).toBe(true);
    expect(hugePagesPossible('[always] madvise never\n')).toBe(true);
    expect(hugePagesPossible('always madvise [never]\n')).toBe(false);
    expect(hugePagesPossible(undefined)).toBe(true);  // no file: madvise decides
  });

  it('is read from the file, and a missing file reads as unknown', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'forkgc-thp-'));
    try {
      const file = path.join(dir, 'enabled');
      writeFileSync(file, 'always madvise [never]\n');
      expect(readHugePageSetting(file)).toBe('always madvise [never]\n');
      expect(readHugePageSetting(path.join(dir, 'missing'))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a heap made while it reads `never` runs on 4 KiB pages: opted out, made writable after a cycle', async () => {
    setting.replaced = true;
    setting.text = 'always madvise [never]\n';
    const heap = makeHeap({ maxHeap: '64MiB', mode: 'fork', auto: false });  // hugePages: true by default
    const core = heapInternals(heap);
    expect(core.regions.hugePages).toBe(false);
    expect(vmFlagsAt(core.regions.arenaAddress)).toContain('nh');
    const keep = heap.root(heap.bytes.alloc(1_000_000));
    await heap.collect();
    await new Promise((r) => setTimeout(r, 200));
    const s = await heap.collect();
    expect(s.bytesMadeWritable).toBeGreaterThan(0);
    keep.release();
  });

  it('under the machine\'s own setting, hugePages: true is what madvise says', () => {
    const heap = makeHeap({ maxHeap: '64MiB', mode: 'fork', auto: false });
    const core = heapInternals(heap);
    expect(core.regions.hugePages).toBe(hugePagesPossible(readHugePageSetting()));
    if (core.regions.hugePages) expect(vmFlagsAt(core.regions.arenaAddress)).toContain('hg');
  });
});
