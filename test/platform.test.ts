// Without Linux there is no fork with copy-on-write, madvise or prctl: the
// package says so when it is loaded, with a typed error, instead of failing
// somewhere deep.
import { afterEach, describe, expect, it, vi } from 'vitest';

const realPlatform = process.platform;
afterEach(() => {
  Object.defineProperty(process, 'platform', { value: realPlatform });
  vi.resetModules();
});

describe('unsupported platform', () => {
  it('new Heap() on a platform without fork() throws UnsupportedPlatformError (ERR_UNSUPPORTED_PLATFORM)', async () => {
    vi.resetModules();
    Object.defineProperty(process, 'platform', { value: 'darwin' });
    const { Heap, UnsupportedPlatformError } = await import('../src/index.js');
    let error: unknown;
    try {
      new Heap({ maxHeap: '64MiB' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UnsupportedPlatformError);
    expect((error as { code: string }).code).toBe('ERR_UNSUPPORTED_PLATFORM');
    expect((error as Error).message).toMatch(/needs Linux/);
  });
});
