/**
 * Runs test/fixtures/restore-thread-refused.mjs in a Node process where the
 * addon's pthread_create is refused (LD_PRELOAD of
 * test/fixtures/no-addon-threads.c, compiled here), and checks that the
 * heap asked for its restore thread, was refused, completed its cycles and
 * closed. `pages`: the fixture's heap on huge pages or 4 KiB ones.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export function expectRefusedRestoreThreadHarmless(pages: 'huge' | 'small'): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'forkgc-nothreads-'));
  try {
    const shim = path.join(dir, 'no-addon-threads.so');
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, fileURLToPath(new URL('../fixtures/no-addon-threads.c', import.meta.url)), '-ldl'], { encoding: 'utf8' });
    expect(cc.status, `cc: ${cc.stderr}`).toBe(0);
    const run = spawnSync(process.execPath, [fileURLToPath(new URL('../fixtures/restore-thread-refused.mjs', import.meta.url)), pages], {
      encoding: 'utf8', env: { ...process.env, LD_PRELOAD: shim }, timeout: 30_000,
    });
    expect(run.signal, run.stderr).toBe(null);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('cycle 3 freed 10000');
    expect(run.stdout).toContain('closed');
    const refused = /no-addon-threads: refused (\d+)/.exec(run.stderr);
    expect(Number(refused?.[1]), 'the heap asked for its restore thread and was refused').toBeGreaterThanOrEqual(1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
