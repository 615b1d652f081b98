import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The addon forks and maps memory: one process per test file, never threads.
    pool: 'forks',
    maxWorkers: 2,
    // Every wait on a child is bounded here too, so no test can hang CI.
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
